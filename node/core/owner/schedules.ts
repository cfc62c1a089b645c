// A shard owner's recurring schedules (schedule/schedule.ts): the shard's schedules in memory,
// one timer for the earliest due tick, and the clients' changes. A tick fires by submitting its
// job through the owner's own submission path, under the tick's idempotency key; only once
// every job of the tick is committed (or found to exist) does the schedule move on to its next
// tick, in a fenced, versioned write. So a crash, a failed commit or a second owner after a
// hand-off can at worst fire a tick again, and firing it again finds its job: one tick, one job.
//
// Writes of one schedule go one at a time (a tick and a client's change never race); each
// waits for the last to come back. Schedule writes do not go through the committer: they are
// rare, and each is a transaction of its own, fenced by the shard's epoch like a commit.

import type { ErrorBody } from '../../../protocol/errors.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { refusal } from '../refusal.ts';
import { planted } from '../test-hooks.ts';
import { dueTicks, SCHEDULES_PER_TENANT_MAX, tickKey, type Schedule, type ScheduleWrite, type ScheduleWriteOutcome } from '../schedule/schedule.ts';
import type { OwnerMsg, ScheduleOp, ScheduleOutcome, Submission, SubmitOutcome } from './owner-messages.ts';

/** A tick whose jobs could not all be committed is tried again this much later. */
const TICK_RETRY_MS = 1_000;
/** The timer looks at the wall clock at least this often: a timer runs on monotonic time, so a
 * tick waited for across a step of the wall clock (NTP) would fire as late as the step. */
const RECHECK_MS = 1_000;

/** What the schedules need of their owner. */
export interface ScheduleHost {
  readonly shard: number;
  readonly epoch: number;
  serving(): boolean;
  /** Submits a tick's job the way a client's submission is (keys, commit, ready queue). */
  submit(tenant: string, submission: Submission, reply: (outcome: SubmitOutcome) => void, ctx: ActorContext<OwnerMsg>): void;
  /** The store said the epoch moved on, or holds something memory does not: stop and reload. */
  fail(reason: 'deposed' | 'failed', ctx: ActorContext<OwnerMsg>): void;
  unavailable(): ErrorBody;
}

export type SchedulesMsg =
  | { kind: 'tick' }
  | { kind: 'written'; key: string; outcome: ScheduleWriteOutcome | 'unknown' };

interface Entry {
  /** Null while its creation is in flight, or once deleted. */
  schedule: Schedule | null;
  /** A write of it is in flight; what comes next waits in `waiting`. */
  busy: ((outcome: ScheduleWriteOutcome | 'unknown') => void) | null;
  waiting: Array<() => void>;
  /** A tick that failed is not tried again before this wall-clock instant. */
  retryAtMs: number;
}

export class ShardSchedules {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly host: ScheduleHost) {}

  /** Nothing in flight: a draining owner may stop. */
  get idle(): boolean {
    for (const entry of this.entries.values()) if (entry.busy !== null) return false;
    return true;
  }

  loaded(schedules: Schedule[], ctx: ActorContext<OwnerMsg>): void {
    for (const schedule of schedules) this.entries.set(keyOf(schedule.tenant, schedule.name), { schedule, busy: null, waiting: [], retryAtMs: 0 });
    this.arm(ctx);
  }

  handle(msg: SchedulesMsg, ctx: ActorContext<OwnerMsg>): void {
    switch (msg.kind) {
      case 'tick':
        return this.fireDue(ctx);
      case 'written': {
        const entry = this.entries.get(msg.key);
        const done = entry?.busy;
        if (entry === undefined || done === null || done === undefined) return;
        entry.busy = null;
        done(msg.outcome);
        this.runWaiting(msg.key, entry);
        return this.arm(ctx);
      }
    }
  }

  /** A client's change. Answered once committed. */
  change(tenant: string, op: ScheduleOp, reply: (outcome: ScheduleOutcome) => void, ctx: ActorContext<OwnerMsg>): void {
    if (!this.host.serving()) return reply({ ok: false, error: this.host.unavailable() });
    const key = keyOf(tenant, op.kind === 'upsert' ? op.schedule.name : op.name);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = { schedule: null, busy: null, waiting: [], retryAtMs: 0 };
      this.entries.set(key, entry);
    }
    if (entry.busy !== null) return void entry.waiting.push(() => this.change(tenant, op, reply, ctx));
    const current = entry.schedule;
    const nowMs = ctx.env.clock.wallMs();
    if (op.kind !== 'upsert' && current === null) {
      this.forgetIfEmpty(key, entry);
      return reply({ ok: false, error: refusal('not_found', `no schedule ${op.name}`) });
    }
    let write: ScheduleWrite;
    if (op.kind === 'delete') {
      write = { kind: 'delete', tenant, name: op.name, expectedVersion: current!.version };
    } else {
      const base = op.kind === 'upsert' ? { ...op.schedule, tenant, shard: this.host.shard } : current!;
      const paused = op.kind === 'upsert' ? op.schedule.paused : op.paused;
      const timingKept = op.kind === 'pause' && !op.paused && !current!.paused;
      const next: Schedule = {
        ...base,
        paused,
        // Resuming, or a new timing, starts at the first tick after now: ticks that fell while
        // paused are not run. Resuming what is not paused changes nothing.
        nextTickMs: paused ? null : timingKept ? current!.nextTickMs : ctx.env.calendar.nextTick(base.timing, nowMs),
        version: current?.version ?? 0,
        createdAtMs: current?.createdAtMs ?? nowMs,
        updatedAtMs: nowMs,
      };
      write = { kind: 'put', schedule: next, expectedVersion: current?.version ?? null };
    }
    this.write(key, entry, write, ctx, (outcome) => {
      if (outcome === 'ok') {
        entry.schedule = write.kind === 'put' ? { ...write.schedule, version: (write.expectedVersion ?? 0) + 1 } : null;
        entry.retryAtMs = 0;
        return reply({ ok: true, schedule: entry.schedule });
      }
      reply({ ok: false, error: this.refusalOf(outcome) });
    });
  }

  // ---- Ticks -------------------------------------------------------------------------------

  private fireDue(ctx: ActorContext<OwnerMsg>): void {
    if (!this.host.serving()) return;
    const nowMs = ctx.env.clock.wallMs();
    for (const [key, entry] of this.entries) {
      const s = entry.schedule;
      if (s === null || entry.busy !== null || s.paused || s.nextTickMs === null) continue;
      if (s.nextTickMs > nowMs || entry.retryAtMs > nowMs) continue;
      this.fire(key, entry, s, s.nextTickMs, nowMs, ctx);
    }
    this.arm(ctx);
  }

  /** Submits the jobs of the due ticks; once all are in the store, moves the schedule on. */
  private fire(key: string, entry: Entry, s: Schedule, nextTickMs: number, nowMs: number, ctx: ActorContext<OwnerMsg>): void {
    const due = dueTicks(ctx.env.calendar, s, nextTickMs, nowMs);
    const { next } = due;
    const fire = planted(ctx.env.testHooks, 'drop_late_ticks') ? due.fire.filter((tick) => nowMs - tick <= 1_000) : due.fire;
    // Held busy while its jobs commit, so that no change slips in between them and the move on.
    const moveOn = () => {
      entry.busy = null;
      const updatedAtMs = ctx.env.clock.wallMs();
      this.write(key, entry, { kind: 'advance', tenant: s.tenant, name: s.name, nextTickMs: next, updatedAtMs, expectedVersion: s.version }, ctx, (outcome) => {
        if (outcome === 'ok') entry.schedule = { ...s, nextTickMs: next, updatedAtMs, version: s.version + 1 };
      });
    };
    if (fire.length === 0) return moveOn();
    entry.busy = () => {};
    let left = fire.length;
    let failed = false;
    for (const tickMs of fire) {
      const submission = submissionOf(s, tickMs);
      if (planted(ctx.env.testHooks, 'tick_key_per_owner')) submission.idempotencyKey = `${submission.idempotencyKey}:${this.host.epoch}`;
      this.host.submit(s.tenant, submission, (outcome) => {
        if (!outcome.ok) failed = true;
        if (--left > 0) return;
        if (!failed) return moveOn();
        // Fired again later; the jobs that did commit are found by their keys then.
        entry.busy = null;
        entry.retryAtMs = ctx.env.clock.wallMs() + TICK_RETRY_MS;
        this.runWaiting(key, entry);
        this.arm(ctx);
      }, ctx);
    }
  }

  /** One timer, for the earliest tick due among the schedules that are free to fire. */
  private arm(ctx: ActorContext<OwnerMsg>): void {
    let earliest = Infinity;
    for (const entry of this.entries.values()) {
      const s = entry.schedule;
      if (s === null || entry.busy !== null || s.paused || s.nextTickMs === null) continue;
      earliest = Math.min(earliest, Math.max(s.nextTickMs, entry.retryAtMs));
    }
    if (earliest === Infinity || !this.host.serving()) return ctx.cancelTimer('schedule_tick');
    ctx.startTimer('schedule_tick', Math.min(RECHECK_MS, earliest - ctx.env.clock.wallMs()), { kind: 'schedules', msg: { kind: 'tick' } });
  }

  // ---- Writes ------------------------------------------------------------------------------

  private write(key: string, entry: Entry, write: ScheduleWrite, ctx: ActorContext<OwnerMsg>, done: (outcome: ScheduleWriteOutcome | 'unknown') => void): void {
    entry.busy = (outcome) => {
      if (outcome === 'stale_epoch') this.host.fail('deposed', ctx);
      // Whether the write landed is unknown: memory may now disagree with the store, so the
      // owner reloads, as it does when a commit's outcome is unknown.
      if (outcome === 'unknown') this.host.fail('failed', ctx);
      if (outcome === 'conflict') {
        // Every write of this schedule goes through this owner: memory disagrees with the store.
        ctx.env.logger.log('error', 'owner.schedule_conflict', { shard: this.host.shard, schedule: key });
        this.host.fail('failed', ctx);
      }
      done(outcome);
      this.forgetIfEmpty(key, entry);
    };
    const lease = { shard: this.host.shard, epoch: this.host.epoch };
    ctx.pipe(
      () => ctx.env.store.writeSchedule(lease, write),
      (outcome): OwnerMsg => ({ kind: 'schedules', msg: { kind: 'written', key, outcome } }),
      (): OwnerMsg => ({ kind: 'schedules', msg: { kind: 'written', key, outcome: 'unknown' } }),
    );
  }

  private runWaiting(key: string, entry: Entry): void {
    while (entry.busy === null && entry.waiting.length > 0) entry.waiting.shift()!();
    this.forgetIfEmpty(key, entry);
  }

  private forgetIfEmpty(key: string, entry: Entry): void {
    if (entry.schedule === null && entry.busy === null && entry.waiting.length === 0) this.entries.delete(key);
  }

  private refusalOf(outcome: Exclude<ScheduleWriteOutcome, 'ok'> | 'unknown'): ErrorBody {
    switch (outcome) {
      case 'limit':
        // Not `overloaded`: waiting does not help, and clients retry what is overloaded.
        return refusal('illegal_state', `this tenant has ${SCHEDULES_PER_TENANT_MAX} schedules, as many as it may have: delete one first`);
      case 'unknown':
        return refusal('internal', `the store did not confirm the change on shard ${this.host.shard}: it may or may not have happened; send it again`);
      case 'conflict':
      case 'stale_epoch':
        return this.host.unavailable();
    }
  }
}

function keyOf(tenant: string, name: string): string {
  return `${tenant}\u0000${name}`;
}

/** Tick `tickMs`'s job: due at the tick, under the tick's key. */
function submissionOf(s: Schedule, tickMs: number): Submission {
  return {
    queue: s.queue,
    payload: s.payload,
    priority: s.priority,
    runAtMs: tickMs,
    delayMs: 0,
    idempotencyKey: tickKey(s.name, tickMs),
    retry: s.retry,
  };
}
