// Recurring schedules in the simulator. Every run starts with a few schedules in the store, one
// per missed-tick policy, on the workload's tenants and queues, so that the workers run their
// jobs (one on the downstream's queue, so that its breaker always has jobs to probe with:
// breaker-checker.ts). The checker attributes every job the store accepts to its schedule's tick by the job's
// payload and run_at (not by its idempotency key, which is the mechanism under test), and
// reports:
// - a tick that produced two jobs, at any time;
// - after healing, a tick that produced none: from the moment everything is healed, every tick
//   must run (late at worst, while a shard finds its owner again), and exactly once.

import { DEFAULT_RETRY_POLICY } from '../protocol/job-rules.ts';
import { scheduleShard, type Calendar, type Schedule, type ScheduleTiming } from '../node/core/schedule/schedule.ts';
import { type MissedPolicy } from '../protocol/schedule-view.ts';
import type { CommitBatch, Store, WriteOutcome } from '../node/core/store.ts';
import { DOWNSTREAM_QUEUE, DOWNSTREAM_TENANT } from './breaker-checker.ts';

/** Payload byte 0: no behaviour the workers know, so they succeed; byte 1: which schedule. */
const SCHEDULE_MARK = 255;

interface SimSchedule {
  tenant: string;
  name: string;
  queue: string;
  timing: ScheduleTiming;
  missed: MissedPolicy;
}

const SCHEDULES: readonly SimSchedule[] = [
  { tenant: 't1', name: 'every-second', queue: 'q0', timing: { kind: 'every', everyMs: 1_000 }, missed: 'each' },
  { tenant: 't2', name: 'every-2.5s', queue: 'q1', timing: { kind: 'every', everyMs: 2_500 }, missed: 'skip' },
  { tenant: 't1', name: 'cron-3s', queue: 'q1', timing: { kind: 'cron', cron: '*/3 * * * * *', timezone: 'Europe/Berlin' }, missed: 'once' },
  { tenant: DOWNSTREAM_TENANT, name: 'downstream-every-1.5s', queue: DOWNSTREAM_QUEUE, timing: { kind: 'every', everyMs: 1_500 }, missed: 'each' },
];

export class ScheduleChecker {
  /** `schedule index/tick` → jobs accepted. */
  private readonly jobs = new Map<string, number>();

  constructor(
    private readonly calendar: Calendar,
    private readonly report: (invariant: string, detail: string) => void,
  ) {}

  /** Puts the schedules in the store, before any node starts. */
  async seed(store: Store, shardCount: number, epochOf: (shard: number) => number, nowMs: number): Promise<void> {
    for (const [index, s] of SCHEDULES.entries()) {
      const shard = scheduleShard(s.tenant, s.name, shardCount);
      const schedule: Schedule = {
        ...s,
        shard,
        payload: new Uint8Array([SCHEDULE_MARK, index]),
        priority: 0,
        retry: DEFAULT_RETRY_POLICY,
        missedMax: 5,
        paused: false,
        nextTickMs: this.calendar.nextTick(s.timing, nowMs),
        version: 0,
        createdAtMs: nowMs,
        updatedAtMs: nowMs,
      };
      const outcome = await store.writeSchedule({ shard, epoch: epochOf(shard) }, { kind: 'put', schedule, expectedVersion: null });
      if (outcome !== 'ok') throw new Error(`sim: seeding schedule ${s.name}: ${outcome}`);
    }
  }

  /** What the store accepted (the backing's observer). */
  committed(batch: CommitBatch, outcomes: WriteOutcome[]): void {
    batch.writes.forEach((write, i) => {
      if (write.kind !== 'insert' || !outcomes[i]!.ok || write.job.payload[0] !== SCHEDULE_MARK) return;
      const key = `${write.job.payload[1]}/${write.job.runAtMs}`;
      const count = (this.jobs.get(key) ?? 0) + 1;
      this.jobs.set(key, count);
      if (count > 1) this.report('one job per tick', `schedule ${SCHEDULES[write.job.payload[1]!]?.name} tick ${write.job.runAtMs} has ${count} jobs (the last ${write.job.id})`);
    });
  }

  /** Every tick in [fromMs, toMs] ran. */
  checkRan(fromMs: number, toMs: number): void {
    for (const [index, s] of SCHEDULES.entries()) {
      for (let tick = this.calendar.nextTick(s.timing, fromMs - 1); tick !== null && tick <= toMs; tick = this.calendar.nextTick(s.timing, tick)) {
        if (!this.jobs.has(`${index}/${tick}`)) {
          return this.report('every tick runs after healing', `schedule ${s.name} (${s.tenant}) made no job for its tick at ${tick} (checked from ${fromMs} to ${toMs})`);
        }
      }
    }
  }
}
