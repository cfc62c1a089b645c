// Recurring schedules: the record every component sees, where one lives, and which of its ticks
// are due. A schedule lives on the shard its (tenant, name) hashes to; that shard's owner fires
// its ticks. Tick T's job is submitted under the idempotency key tickKey(name, T), so however
// often T is fired (a retry, a second owner after a hand-off or a crash), it yields one job.

import type { RetryPolicy } from '../../../protocol/job-rules.ts';
import { fnv1a32 } from '../../../protocol/job-id.ts';
import type { MissedPolicy } from '../../../protocol/schedule-view.ts';

/** When the ticks fall: a cron expression in a time zone, or a fixed interval. */
export type ScheduleTiming =
  | { kind: 'cron'; cron: string; timezone: string }
  /** Ticks at every multiple of everyMs since the Unix epoch. */
  | { kind: 'every'; everyMs: number };

/** A tick reached later than this is missed (Quartz's misfire threshold has the same default). */
export const MISSED_AFTER_MS = 60_000;
export const MISSED_MAX_DEFAULT = 10;
/** Per tenant, across the cluster. */
export const SCHEDULES_PER_TENANT_MAX = 1_000;

export interface Schedule {
  tenant: string;
  /** Unique per tenant. */
  name: string;
  shard: number;
  timing: ScheduleTiming;
  queue: string;
  payload: Uint8Array;
  priority: number;
  retry: RetryPolicy;
  missed: MissedPolicy;
  missedMax: number;
  paused: boolean;
  /** The next tick to fire; null while paused, or when the timing has no tick left. */
  nextTickMs: number | null;
  /** Bumped by every write; writes are conditional on it, as jobs' are. */
  version: number;
  createdAtMs: number;
  updatedAtMs: number;
}

/** A fenced, conditional write of one schedule (Store.writeSchedule). `put` with
 * expectedVersion null creates the schedule (refused if the name is taken, or the tenant has
 * SCHEDULES_PER_TENANT_MAX); otherwise it replaces the stored schedule at that version.
 * `advance` moves a schedule on to its next tick and touches nothing else: a tick's write, which
 * must not rewrite the payload (up to 256 KiB) every second. */
export type ScheduleWrite =
  | { kind: 'put'; schedule: Schedule; expectedVersion: number | null }
  | { kind: 'advance'; tenant: string; name: string; nextTickMs: number | null; updatedAtMs: number; expectedVersion: number }
  | { kind: 'delete'; tenant: string; name: string; expectedVersion: number };

export type ScheduleWriteOutcome = 'ok' | 'conflict' | 'limit' | 'stale_epoch';

/** Cron arithmetic, a library's (node/adapters/calendar.ts): reached through the environment,
 * since core code imports no package. Pure: the same answers in production and the simulator. */
export interface Calendar {
  /** The first tick strictly after afterMs, or null when there is none. */
  nextTick(timing: ScheduleTiming, afterMs: number): number | null;
  /** Why the timing is unusable (a bad expression or time zone, or no tick after nowMs), or null. */
  timingProblem(timing: ScheduleTiming, nowMs: number): string | null;
}

/** The shard a schedule lives on. */
export function scheduleShard(tenant: string, name: string, shardCount: number): number {
  return fnv1a32(`${tenant}\u0000schedule\u0000${name}`) % shardCount;
}

/** The idempotency key of tick `tickMs`'s job: one key per tick, so one job per tick. */
export function tickKey(name: string, tickMs: number): string {
  return `schedule:${name}:${tickMs}`;
}

/** The ticks to fire at `nowMs` for a schedule whose next tick is `nextTickMs` (<= nowMs), and
 * the next tick after them. */
export function dueTicks(
  calendar: Calendar,
  schedule: Pick<Schedule, 'timing' | 'missed' | 'missedMax'>,
  nextTickMs: number,
  nowMs: number,
): { fire: number[]; next: number | null } {
  const missed: number[] = [];
  const onTime: number[] = [];
  let tick: number | null = nextTickMs;
  // Walk the due ticks; past missedMax + 1 missed ones the rest need not be listed: jump.
  while (tick !== null && tick <= nowMs) {
    if (nowMs - tick > MISSED_AFTER_MS) {
      if (missed.length >= schedule.missedMax) {
        tick = calendar.nextTick(schedule.timing, nowMs - MISSED_AFTER_MS - 1);
        continue;
      }
      missed.push(tick);
    } else {
      onTime.push(tick);
    }
    tick = calendar.nextTick(schedule.timing, tick);
  }
  const runMissed = schedule.missed === 'skip' ? 0 : schedule.missed === 'once' ? 1 : schedule.missedMax;
  return { fire: [...missed.slice(0, runMissed), ...onTime], next: tick };
}
