// The shard owner: one actor per shard this node holds, at one epoch. It accepts submissions,
// keeps the shard's ready queues in memory, hands leases to workers by credit, and turns every
// worker verdict, expiry and cancellation into a fenced write. Nothing is acknowledged before
// it is committed; nothing in memory runs ahead of the store (a write's effects are applied
// when its commit returns). One thing runs ahead on purpose: a granted lease goes to its worker
// at once and is written only leaseWriteDelayMs later, so that a job finished before then is
// written once, lease and verdict together (see grant()).
//
// Recovery is one path for every kind of trouble: when the store says the epoch moved on
// (deposed) or cannot say whether a commit landed (unavailable), the owner drains what is in
// flight, answers everyone, and stops; the shard manager acquires the shard again at a new
// epoch, which fences anything the old incarnation still had in the air, and a fresh owner
// loads the truth from the store.
//
// Beside it: write-path.ts batches the writes and routes their outcomes back; paging.ts decides
// which pending jobs memory holds and pages the rest in from the store (with stale-reads.ts
// keeping those reads from bringing back jobs that moved on). This file is the state machine
// (loading, serving, draining, stopped) and what it does with jobs: submissions and their
// idempotency keys, leases and their holders, verdicts, expiry, cancellation.

import type { ErrorBody } from '../../../protocol/errors.ts';
import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { CommitReply, CommitterMsg } from '../commit/committer.ts';
import type { DispatcherMsg } from '../dispatch/dispatcher-messages.ts';
import { type Job, leaseTokenOf } from '../job/job.ts';
import { type LeaseToken, isTerminal } from '../../../protocol/job-rules.ts';
import { jobLane } from '../job/lane.ts';
import { newJob } from '../job/new-job.ts';
import { failureVerdict } from '../job/retry.ts';
import { transition, type JobEvent } from '../job/transition.ts';
import type { JobWrite, WriteOutcome } from '../store.ts';
import type { AckOutcome, JobOutcome, LeaseHolder, OwnerMsg, Submission, SubmitOutcome, Subscriber, WorkerLink } from './owner-messages.ts';
import { ReadyQueues, type Queued } from './ready-queue.ts';
import { refusal } from '../refusal.ts';
import { Paging, type Fetched } from './paging.ts';
import { WritePath, type Aborted } from './write-path.ts';
import { ShardSchedules } from './schedules.ts';
import { ShardBreakers } from './breakers.ts';
import type { BreakerTally } from '../breaker/breaker-tally.ts';
import type { Breaker } from '../breaker/breaker.ts';
import type { BreakerConfig } from '../../../protocol/breaker-view.ts';
import type { BreakerSignal } from '../../../protocol/peer-messages.ts';
import type { Schedule } from '../schedule/schedule.ts';
import { buggify, planted } from '../test-hooks.ts';

export interface OwnerConfig {
  /** Worker lease time-to-live; heartbeats extend it. */
  leaseMs: number;
  /** Ready (due) jobs held in memory; the rest stay in the store and are paged in. */
  memoryJobsMax: number;
  /** Delayed (future) jobs held in memory, the earliest ones; the rest stay in the store and
   * are paged in once due. Defaults to memoryJobsMax. Apart from the ready bound, so that
   * jobs due later never keep ready ones out of memory. */
  delayedJobsMax?: number;
  /** Writes staged or in flight past which submissions are refused as overloaded. */
  uncommittedMax: number;
  /** How often running leases are checked for expiry. */
  leaseCheckMs: number;
  /** Idempotency keys of finished jobs remembered in memory (the store remembers them all). */
  recentKeysMax: number;
  /** How long a granted lease waits before it is written. A verdict that comes sooner is
   * written with it, one write instead of two; a node that crashes meanwhile loses the lease
   * (its job runs again, at-least-once, under the same attempt number). */
  leaseWriteDelayMs: number;
}

export const DEFAULT_OWNER_CONFIG: OwnerConfig = {
  leaseMs: 30_000,
  memoryJobsMax: 5_000,
  uncommittedMax: 20_000,
  leaseCheckMs: 1_000,
  recentKeysMax: 10_000,
  leaseWriteDelayMs: 50,
};

/** Why an owner stopped, told to the shard manager. */
export type OwnerExit = 'stopped' | 'deposed' | 'failed';

export interface OwnerDeps {
  shard: number;
  epoch: number;
  config: OwnerConfig;
  committer: ActorRef<CommitterMsg>;
  dispatcher: ActorRef<DispatcherMsg>;
  /** Takes one idle worker slot of a lane from the dispatcher, at once (see Dispatcher). */
  takeIdleWorker: (lane: string) => WorkerLink | null;
  /** Whether a lease holder is known to be gone: a worker of this node whose connection has
   * closed. (Of a worker attached elsewhere nothing is known here: false.) */
  workerGone: (workerId: string) => boolean;
  /** Whether the shard's lease is still good by this node's own clock (the shard manager's
   * view). Asked before a lease is granted or extended: a node waking from a pause past its
   * lease must grant nothing before it learns whether it was deposed. */
  mayServe: () => boolean;
  exited: (exit: OwnerExit) => void;
  /** Where attempt outcomes are counted for the lanes' circuit breakers (breaker-tally.ts). */
  tally: BreakerTally;
  /** The node's default breaker for lanes without settings of their own, or null. */
  breakerDefault: BreakerConfig | null;
  /** The breakers of this shard the cluster should hear of (owner/breakers.ts). */
  breakerSignals: (signals: BreakerSignal[]) => void;
}

interface Entry extends Queued {
  /** A write of this job is in flight; later operations on it wait in `waiting`. */
  busy: boolean;
  waiting: Array<() => void>;
  worker: WorkerLink | null;
  /** Monotonic instant after which the running lease counts as lost. */
  leaseDeadlineMs: number;
  subscribers: Map<string, Subscriber> | null;
  /** Its insert failed: operations that waited for it find no job. */
  neverInserted: boolean;
  /** The job as stored, while `job` holds a lease not written yet (see grant()); else null. */
  stored: Job | null;
}

const RETRY_SOON_MS = 250;

export class ShardOwner implements Actor<OwnerMsg> {
  private phase: 'loading' | 'serving' | 'draining' | 'stopped' = 'loading';
  private drainReason: OwnerExit = 'stopped';
  private drainDone: Array<() => void> = [];
  /** Messages that arrived while loading, handled once loaded. */
  private early: OwnerMsg[] = [];

  private readonly entries = new Map<string, Entry>();
  private readonly queues = new ReadyQueues<Entry>();
  private readonly running = new Set<Entry>();
  /** Entries whose lease is granted but not written, with the monotonic instant of the grant,
   * oldest first. */
  private readonly unwrittenLeases = new Map<Entry, number>();
  /** Entries whose lease the store does not have yet (unwritten, or its write in flight). */
  private leasesNotStored = 0;
  /** The jobs each worker connection holds a lease of, written or not yet: what ends when the
   * connection closes. */
  private readonly held = new Map<string, Set<Entry>>();
  /** `tenant\0key` → job id, or the replies waiting for an insert of that key in flight. */
  private readonly keys = new Map<string, string | Array<(outcome: SubmitOutcome) => void>>();
  /** Lanes whose ready count changed this turn: told to the dispatcher after the message. */
  private readonly backlogDirty = new Set<string>();

  private readonly writes: WritePath;
  /** Which pending jobs memory holds, and paging the rest in (paging.ts). */
  private readonly paging: Paging<Entry>;
  /** The shard's recurring schedules (schedules.ts). */
  private readonly schedules: ShardSchedules;
  /** The circuit breakers that live on this shard (breakers.ts). */
  private readonly breakers: ShardBreakers;
  private jobSeq = 0;

  constructor(private readonly deps: OwnerDeps) {
    this.writes = new WritePath(deps.shard, deps.epoch, deps.committer);
    this.paging = new Paging<Entry>({
      shard: deps.shard,
      memoryJobsMax: deps.config.memoryJobsMax,
      delayedJobsMax: deps.config.delayedJobsMax ?? deps.config.memoryJobsMax,
      entries: this.entries,
      queues: this.queues,
      backlogDirty: this.backlogDirty,
      track: (job) => this.track(job),
      serving: () => this.phase === 'serving',
      leasesNotStored: () => this.leasesNotStored,
    });
    this.schedules = new ShardSchedules({
      shard: deps.shard,
      epoch: deps.epoch,
      serving: () => this.phase === 'serving',
      submit: (tenant, submission, reply, ctx) => this.submit(tenant, submission, reply, ctx),
      fail: (reason, ctx) => this.drain(reason, ctx),
      unavailable: () => this.unavailable(),
    });
    this.breakers = new ShardBreakers({
      shard: deps.shard,
      epoch: deps.epoch,
      defaultConfig: deps.breakerDefault,
      serving: () => this.phase === 'serving',
      fail: (reason, ctx) => this.drain(reason, ctx),
      unavailable: () => this.unavailable(),
      signal: deps.breakerSignals,
    });
  }

  get shard(): number {
    return this.deps.shard;
  }

  /** Adds the jobs this owner holds in memory to `counts`, per lane: ready, delayed, running.
   * For the node's gauges, read when it is scraped: a synchronous call, like the dispatcher's
   * takeIdleWorker (every actor of a node runs on its one thread). */
  countJobs(counts: Map<string, [ready: number, delayed: number, running: number]>): void {
    const of = (lane: string) => {
      let c = counts.get(lane);
      if (c === undefined) counts.set(lane, (c = [0, 0, 0]));
      return c;
    };
    for (const [lane, ready, delayed] of this.queues.laneCounts()) {
      const c = of(lane);
      c[0] += ready;
      c[1] += delayed;
    }
    for (const entry of this.running) of(jobLane(entry.job))[2]++;
  }

  receive(msg: OwnerMsg, ctx: ActorContext<OwnerMsg>): void {
    if (this.phase === 'loading' && !isContinuation(msg) && msg.kind !== 'stop') {
      this.early.push(msg);
      return;
    }
    this.handle(msg, ctx);
    this.afterMessage(ctx);
  }

  /** Whoever asked a stopped owner gets "unavailable" (and will find the shard's next owner);
   * a grant goes back to the dispatcher. */
  deadLetter(msg: OwnerMsg): void {
    const error = this.unavailable();
    switch (msg.kind) {
      case 'submit':
      case 'cancel':
      case 'requeue':
      case 'subscribe':
      case 'schedule':
      case 'breaker':
      case 'heartbeat':
      case 'complete':
      case 'fail':
      case 'return':
        return msg.reply({ ok: false, error });
      case 'grant':
        return this.deps.dispatcher.tell({ kind: 'credit_returned', workerId: msg.worker.id, lane: msg.lane, slots: msg.slots });
      case 'stop':
        return msg.done();
      default:
        return; // the owner's own continuations: nobody waits for them
    }
  }

  invariants(): void {
    this.writes.invariants();
    for (const entry of this.unwrittenLeases.keys()) {
      if (entry.stored === null || entry.busy || entry.job.state !== 'running') throw new Error('owner: an unwritten lease without its stored job, or busy, or not running');
    }
    if (this.phase === 'draining' && this.drainReason !== 'stopped' && this.writes.stagedCount > 0) {
      throw new Error('owner: staged writes while failing');
    }
  }

  private start(ctx: ActorContext<OwnerMsg>): void {
    const { shard } = this.deps;
    const limit = this.deps.config.memoryJobsMax;
    ctx.pipe(
      async () => {
        const running: Job[] = [];
        for (let page = await ctx.env.store.loadShardJobs(shard, 'running', null, limit); ; ) {
          running.push(...page);
          const last = page.at(-1);
          if (page.length < limit || last === undefined) break;
          page = await ctx.env.store.loadShardJobs(shard, 'running', { runAtMs: last.runAtMs, id: last.id }, limit);
        }
        const pending = await ctx.env.store.loadShardJobs(shard, 'pending', null, limit);
        const schedules = await ctx.env.store.loadShardSchedules(shard);
        const breakers = await ctx.env.store.loadShardBreakers(shard);
        return { running, pending, schedules, breakers };
      },
      ({ running, pending, schedules, breakers }) => ({ kind: 'load_done', running, pending, pendingMore: pending.length >= limit, schedules, breakers }),
      (error) => ({ kind: 'load_failed', error }),
    );
  }

  private handle(msg: OwnerMsg, ctx: ActorContext<OwnerMsg>): void {
    switch (msg.kind) {
      case 'start':
        return this.start(ctx);
      case 'load_done':
        return this.loaded(msg.running, msg.pending, msg.pendingMore, msg.schedules, msg.breakers, ctx);
      case 'load_failed':
        ctx.env.logger.log('warn', 'owner.load_failed', { shard: this.shard, error: String(msg.error) });
        return this.drain('failed', ctx);
      case 'submit':
        return this.submit(msg.tenant, msg.submission, msg.reply, ctx);
      case 'cancel':
        return this.withJob(msg.jobId, msg.tenant, msg.reply, ctx, (entry) => this.cancel(entry, msg.reply, ctx));
      case 'requeue':
        return this.withJob(msg.jobId, msg.tenant, msg.reply, ctx, (entry) => this.requeue(entry, msg.attemptsMore, msg.reply, ctx));
      case 'subscribe':
        return this.withJob(msg.jobId, msg.tenant, msg.reply, ctx, (entry) => this.subscribe(entry, msg.subscriber, msg.reply));
      case 'unsubscribe':
        this.entries.get(msg.jobId)?.subscribers?.delete(msg.subscriberId);
        return;
      case 'schedule':
        return this.schedules.change(msg.tenant, msg.op, msg.reply, ctx);
      case 'schedules':
        this.schedules.handle(msg.msg, ctx);
        return this.finishDrainIfIdle(ctx);
      case 'breaker':
        return this.breakers.change(msg.tenant, msg.op, msg.reply, ctx);
      case 'breakers':
        this.breakers.handle(msg.msg, ctx);
        return this.finishDrainIfIdle(ctx);
      case 'grant':
        return this.grant(msg.lane, msg.worker, msg.slots, ctx);
      case 'heartbeat':
        return this.withLease(msg.token, msg.holder, msg.reply, ctx, (entry) => {
          if (!this.deps.mayServe()) return msg.reply({ ok: false, error: this.unavailable() });
          entry.leaseDeadlineMs = ctx.env.clock.monotonicMs() + this.deps.config.leaseMs;
          msg.reply({ ok: true, leaseMs: this.deps.config.leaseMs });
        });
      case 'complete':
        return this.withLease(msg.token, msg.holder, msg.reply, ctx, (entry, token) => {
          this.deps.tally.record(jobLane(entry.job), 'succeeded');
          this.apply(entry, { kind: 'complete', token, result: msg.result }, token, ctx, () => msg.reply({ ok: true }), msg.reply);
        });
      case 'fail':
        return this.withLease(msg.token, msg.holder, msg.reply, ctx, (entry, token) => {
          // The downstream's failure unless the worker says it was the job's own.
          if (msg.downstream ?? msg.retryable) this.deps.tally.record(jobLane(entry.job), 'failed');
          this.failAttempt(entry, token, msg.error, msg.retryable, ctx, msg.reply);
        });
      case 'return':
        return this.withLease(msg.token, msg.holder, msg.reply, ctx, (entry, token) => {
          this.deps.tally.record(jobLane(entry.job), 'abandoned');
          this.apply(entry, { kind: 'release', token, runAtMs: ctx.env.clock.wallMs() }, token, ctx, () => msg.reply({ ok: true }), msg.reply);
        });
      case 'worker_gone':
        if (planted(ctx.env.testHooks, 'keep_lost_worker_leases')) return;
        for (const entry of this.held.get(msg.workerId) ?? []) this.workerLost(entry, msg.workerId, ctx);
        return;
      case 'stop':
        this.drainDone.push(msg.done);
        return this.drain('stopped', ctx);
      case 'page_in_done':
        return this.paging.pagedIn(msg.pending, msg.pendingMore, msg.mark, ctx);
      case 'page_in_failed':
        return this.paging.pageInFailed(msg.error, msg.mark, ctx);
      case 'fetch_done':
        return this.paging.fetched(msg.jobId, msg.job, msg.mark, ctx);
      case 'fetch_failed':
        return this.paging.fetched(msg.jobId, undefined, msg.mark, ctx);
      case 'commit_done':
        return this.committed(msg.batch, msg.reply, ctx);
      case 'flush':
        this.writes.flushArrived();
        return this.writes.flush(ctx, this.phase === 'serving');
      case 'wake':
        return this.paging.wake(ctx);
      case 'lease_check':
        return this.expireLeases(ctx);
      case 'lease_write':
        return this.writeDueLeases(ctx);
    }
  }

  // ---- Loading -----------------------------------------------------------------------------

  private loaded(running: Job[], pending: Job[], pendingMore: boolean, schedules: Schedule[], breakers: Breaker[], ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'loading') return;
    const now = ctx.env.clock.monotonicMs();
    for (const job of running) {
      // A lease granted before this owner took over stays valid while its token matches:
      // its worker gets a full TTL from now to heartbeat or finish.
      const entry = this.track(job);
      entry.leaseDeadlineMs = now + this.deps.config.leaseMs;
      this.running.add(entry);
      if (job.leaseWorker !== null) this.hold(entry, job.leaseWorker);
    }
    this.paging.loaded(pending, pendingMore, ctx);
    this.phase = 'serving';
    this.schedules.loaded(schedules, ctx);
    this.breakers.loaded(breakers, ctx);
    ctx.env.logger.log('debug', 'owner.serving', { shard: this.shard, epoch: this.deps.epoch, running: running.length, pending: pending.length });
    // A worker whose connection closed while no owner here served the shard (between two
    // owners) was never told to this one: its leases end now, not when they run out.
    for (const [worker, entries] of [...this.held]) {
      if (this.deps.workerGone(worker)) for (const entry of entries) this.workerLost(entry, worker, ctx);
    }
    const early = this.early;
    this.early = [];
    for (const msg of early) this.handle(msg, ctx);
  }

  // ---- Submissions -------------------------------------------------------------------------

  private submit(tenant: string, submission: Submission, reply: (o: SubmitOutcome) => void, ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'serving') return reply({ ok: false, error: this.unavailable() });
    if (this.writes.uncommitted >= this.deps.config.uncommittedMax) {
      return reply({ ok: false, error: refusal('overloaded', `shard ${this.shard} has too much uncommitted work`, RETRY_SOON_MS) });
    }
    if (planted(ctx.env.testHooks, 'forget_idempotency_key')) submission = { ...submission, idempotencyKey: null };
    const key = submission.idempotencyKey === null ? null : `${tenant}\u0000${submission.idempotencyKey}`;
    if (key !== null) {
      const known = this.keys.get(key);
      if (typeof known === 'string') return reply({ ok: true, jobId: known, duplicate: true });
      if (known !== undefined) return void known.push(reply);
      this.keys.set(key, []);
    }
    const nowMs = ctx.env.clock.wallMs();
    const created = newJob({
      shard: this.shard,
      epoch: this.deps.epoch,
      seq: ++this.jobSeq,
      tenant,
      queue: submission.queue,
      payload: submission.payload,
      priority: submission.priority,
      runAtMs: submission.runAtMs ?? nowMs + submission.delayMs,
      retry: submission.retry,
      idempotencyKey: submission.idempotencyKey,
      nowMs,
    });
    // A job that can start now, with a worker waiting and nothing ahead of it in its queue, is
    // inserted already leased: one write instead of two, and one commit less before it runs.
    const worker = this.idleWorkerFor(created, nowMs);
    const leased = worker === null ? null : transition(created, this.leaseEvent(nowMs, worker.id), nowMs);
    const job = leased?.ok ? leased.job : created;
    const token = leaseTokenOf(job);
    const entry = this.track(job);
    entry.busy = true;
    if (worker !== null && token !== null) this.hold(entry, worker.id);
    if (planted(ctx.env.testHooks, 'ack_before_commit')) {
      reply({ ok: true, jobId: job.id, duplicate: false });
      reply = () => {};
    }
    this.stage({ kind: 'insert', job }, ctx, (outcome) => {
      const waiters = key === null ? [] : this.keys.get(key);
      const answerAll = (o: SubmitOutcome) => {
        reply(o);
        if (Array.isArray(waiters)) for (const w of waiters) w(o.ok ? { ...o, duplicate: true } : o);
      };
      if (outcome.ok) {
        if (key !== null) this.rememberKey(key, job.id);
        entry.busy = false;
        answerAll({ ok: true, jobId: job.id, duplicate: false });
        this.counted(job, ctx);
        if (worker !== null && token !== null) {
          // Unlike a grant's, this lease waits for its write: no handler may start on a job
          // that might never exist (a refused or failed submission).
          entry.worker = worker;
          entry.leaseDeadlineMs = ctx.env.clock.monotonicMs() + this.deps.config.leaseMs;
          this.running.add(entry);
          worker.lease(job, token, this.deps.config.leaseMs);
          ctx.env.metrics.inc('leases_granted_total', {});
        }
        this.paging.enqueue(entry, ctx);
        this.notify(entry);
        this.runWaiting(entry);
        return;
      }
      this.entries.delete(job.id);
      entry.neverInserted = true;
      if (worker !== null) this.unhold(entry, worker.id);
      // Not inserted (a duplicate key, or the write failed): the slot goes back unused.
      if (worker !== null) this.deps.dispatcher.tell({ kind: 'credit_returned', workerId: worker.id, lane: jobLane(job), slots: 1 });
      if (outcome.reason === 'duplicate') {
        if (key !== null) this.rememberKey(key, outcome.existingJobId);
        answerAll({ ok: true, jobId: outcome.existingJobId, duplicate: true });
      } else {
        if (key !== null) this.keys.delete(key);
        answerAll({ ok: false, error: this.notWritten(outcome) });
      }
      entry.busy = false;
      this.runWaiting(entry);
    });
  }

  private rememberKey(key: string, jobId: string): void {
    this.keys.delete(key);
    this.keys.set(key, jobId);
    // Map iteration order is insertion order: the first keys are the oldest.
    while (this.keys.size > this.deps.config.recentKeysMax) {
      const [oldest, value] = this.keys.entries().next().value!;
      if (Array.isArray(value)) break;
      this.keys.delete(oldest);
    }
  }

  // ---- Operations on one job ---------------------------------------------------------------

  /** Runs `op` on the job once no write of it is in flight, fetching it from the store when it
   * is not in memory (spilled, or finished). Another tenant's job is "not found". */
  private withJob(
    jobId: string,
    tenant: string,
    reply: (o: JobOutcome) => void,
    ctx: ActorContext<OwnerMsg>,
    op: (entry: Entry) => void,
  ): void {
    if (this.phase !== 'serving') return reply({ ok: false, error: this.unavailable() });
    const run: Fetched<Entry> = (entry) => {
      if (entry === 'unavailable' || this.phase !== 'serving') return reply({ ok: false, error: this.unavailable() });
      // An entry whose insert failed meanwhile is no job at all.
      if (entry === null || entry.neverInserted || entry.job.tenant !== tenant) return reply({ ok: false, error: refusal('not_found', `no job ${jobId}`) });
      if (entry.busy) return void entry.waiting.push(() => run(entry));
      op(entry);
    };
    const entry = this.entries.get(jobId);
    if (entry !== undefined) return run(entry);
    this.paging.fetch(jobId, run, ctx);
  }

  private cancel(entry: Entry, reply: (o: JobOutcome) => void, ctx: ActorContext<OwnerMsg>): void {
    const { state } = entry.job;
    if (state !== 'pending' && state !== 'running') {
      return reply({ ok: false, error: refusal('illegal_state', `job ${entry.job.id} is ${state}`) });
    }
    const token = leaseTokenOf(entry.job);
    const worker = entry.worker;
    this.apply(entry, { kind: 'cancel' }, state === 'running' ? token : null, ctx, () => {
      if (token !== null) worker?.revoke(token, 'cancelled');
      reply({ ok: true, job: entry.job });
    }, reply);
  }

  private requeue(entry: Entry, attemptsMore: number, reply: (o: JobOutcome) => void, ctx: ActorContext<OwnerMsg>): void {
    if (entry.job.state !== 'dead') {
      return reply({ ok: false, error: refusal('illegal_state', `job ${entry.job.id} is ${entry.job.state}, not dead`) });
    }
    const event: JobEvent = { kind: 'requeue', runAtMs: ctx.env.clock.wallMs(), attemptsMore };
    this.apply(entry, event, null, ctx, () => reply({ ok: true, job: entry.job }), reply);
  }

  private subscribe(entry: Entry, subscriber: Subscriber, reply: (o: JobOutcome) => void): void {
    if (!isTerminal(entry.job.state)) {
      entry.subscribers ??= new Map();
      entry.subscribers.set(subscriber.id, subscriber);
    }
    reply({ ok: true, job: entry.job });
  }

  // ---- Leases ------------------------------------------------------------------------------

  private grant(lane: string, worker: WorkerLink, slots: number, ctx: ActorContext<OwnerMsg>): void {
    let used = 0;
    if (this.phase === 'serving' && this.deps.mayServe()) {
      const wallMs = ctx.env.clock.wallMs();
      for (; used < slots; used++) {
        const entry = this.queues.take(lane);
        if (entry === undefined) break;
        this.backlogDirty.add(lane);
        const leased = transition(entry.job, this.leaseEvent(wallMs, worker.id), wallMs);
        if (!leased.ok) throw new Error(`owner: job ${entry.job.id} in a ready queue cannot be leased (${entry.job.state})`);
        // The lease goes to the worker now and to the store leaseWriteDelayMs later
        // (writeDueLeases), or with the verdict if that comes first: most jobs finish sooner,
        // and are then written once. Memory runs ahead of the store here, and that is safe
        // because nothing the worker says counts before a write that includes its lease
        // commits: the verdict's write carries the lease (apply()), is fenced by the stored
        // version and the shard epoch, and is refused if either moved. A crash before the
        // write loses the lease: the next owner finds the job pending and runs it again.
        this.setStored(entry, entry.job);
        entry.job = leased.job;
        entry.worker = worker;
        entry.leaseDeadlineMs = ctx.env.clock.monotonicMs() + this.deps.config.leaseMs;
        this.running.add(entry);
        this.hold(entry, worker.id);
        this.unwrittenLeases.set(entry, ctx.env.clock.monotonicMs());
        if (!ctx.hasTimer('lease_write')) ctx.startTimer('lease_write', this.deps.config.leaseWriteDelayMs, { kind: 'lease_write' });
        worker.lease(leased.job, leaseTokenOf(leased.job)!, this.deps.config.leaseMs);
        ctx.env.metrics.inc('leases_granted_total', {});
        this.counted(leased.job, ctx);
      }
    }
    if (used < slots) this.deps.dispatcher.tell({ kind: 'credit_returned', workerId: worker.id, lane, slots: slots - used });
  }

  /** Writes the leases granted leaseWriteDelayMs ago or more whose verdict has not come. */
  private writeDueLeases(ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'serving') return;
    const now = ctx.env.clock.monotonicMs();
    for (const [entry, grantedMs] of this.unwrittenLeases) {
      const dueMs = grantedMs + this.deps.config.leaseWriteDelayMs;
      if (dueMs > now) return ctx.startTimer('lease_write', dueMs - now, { kind: 'lease_write' });
      this.writeLease(entry, ctx);
    }
  }

  /** Writes `entry`'s lease on its own: the job stays running, its verdict still to come. */
  private writeLease(entry: Entry, ctx: ActorContext<OwnerMsg>): void {
    this.unwrittenLeases.delete(entry);
    const stored = entry.stored!;
    entry.busy = true;
    this.stage({ kind: 'update', next: entry.job, expectedVersion: stored.version, token: null }, ctx, (outcome) => {
      entry.busy = false;
      if (outcome.ok) {
        this.setStored(entry, null);
        this.notify(entry);
      } else {
        this.writeFailed(entry, outcome, 'lease', ctx);
      }
      this.runWaiting(entry);
    });
  }

  /** A lease that no commit will carry: memory goes back to the job as stored, and the worker
   * is told the lease is lost (it credits the slot again when it stops the attempt). */
  private dropUnwrittenLease(entry: Entry): void {
    this.unwrittenLeases.delete(entry);
    const token = leaseTokenOf(entry.job)!;
    const worker = entry.worker;
    if (entry.job.leaseWorker !== null) this.unhold(entry, entry.job.leaseWorker);
    this.running.delete(entry);
    entry.worker = null;
    entry.job = entry.stored!;
    this.setStored(entry, null);
    worker?.revoke(token, 'lease_lost');
  }

  /** Sets `entry.stored`, counting the jobs memory holds as running that the store still has
   * as pending. */
  private setStored(entry: Entry, stored: Job | null): void {
    this.leasesNotStored += Number(stored !== null) - Number(entry.stored !== null);
    entry.stored = stored;
  }

  private leaseEvent(wallMs: number, worker: string): JobEvent {
    return { kind: 'lease', epoch: this.deps.epoch, expiresAtMs: wallMs + this.deps.config.leaseMs, worker };
  }

  private hold(entry: Entry, worker: string): void {
    let entries = this.held.get(worker);
    if (entries === undefined) this.held.set(worker, (entries = new Set()));
    entries.add(entry);
  }

  private unhold(entry: Entry, worker: string): void {
    const entries = this.held.get(worker);
    if (entries?.delete(entry) === true && entries.size === 0) this.held.delete(worker);
  }

  /** The connection of the worker holding `entry`'s lease closed: the attempt counts as failed
   * (a job that kills its worker must reach the dead-letter queue), and the job is ready again
   * at once, not after a backoff: nothing says its downstream is in trouble. */
  private workerLost(entry: Entry, worker: string, ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'serving') return;
    if (entry.busy) return void entry.waiting.push(() => this.workerLost(entry, worker, ctx));
    const token = leaseTokenOf(entry.job);
    if (token === null || entry.job.leaseWorker !== worker) return;
    const error = 'the worker connection holding the lease closed';
    const verdict = failureVerdict(entry.job.retry, entry.job.attempts, true, ctx.env.random);
    const event: JobEvent = verdict.kind === 'retry' ? { kind: 'retry', token, runAtMs: ctx.env.clock.wallMs(), error } : { kind: 'bury', token, error };
    ctx.env.logger.log('info', 'owner.worker_lost', { shard: this.shard, jobId: entry.job.id, attempt: token.attempt, worker });
    // Nothing said about its downstream either way.
    this.deps.tally.record(jobLane(entry.job), 'abandoned');
    this.apply(entry, event, token, ctx, () => {});
  }

  /** A worker with a free slot for a new job, when the job may start at once and no job of
   * its lane is waiting here (a new job must not overtake them). */
  private idleWorkerFor(job: Job, nowMs: number): WorkerLink | null {
    if (job.runAtMs > nowMs || this.queues.readyOf(jobLane(job)) > 0 || !this.deps.mayServe()) return null;
    return this.deps.takeIdleWorker(jobLane(job));
  }

  /** Runs `op` if the token names the job's current lease and `holder` is the connection it was
   * granted to. Anything else (no such job, another tenant's, another connection's, an older
   * attempt) gets one answer, so that a refusal tells nothing about jobs the caller does not
   * hold. */
  private withLease(
    token: LeaseToken,
    holder: LeaseHolder,
    reply: (o: { ok: false; error: ErrorBody }) => void,
    ctx: ActorContext<OwnerMsg>,
    op: (entry: Entry, token: LeaseToken) => void,
  ): void {
    if (this.phase !== 'serving') return reply({ ok: false, error: this.unavailable() });
    const notHeld = () => reply({ ok: false, error: refusal('stale_lease', `lease ${token.jobId}/${token.attempt}/${token.epoch} is not held by this connection`) });
    const run = (entry: Entry) => {
      if (this.phase !== 'serving') return reply({ ok: false, error: this.unavailable() });
      if (entry.busy) return void entry.waiting.push(() => run(entry));
      // An entry whose insert failed meanwhile holds no lease at all.
      const current = entry.neverInserted ? null : leaseTokenOf(entry.job);
      const mine = planted(ctx.env.testHooks, 'ignore_lease_holder') || (entry.job.tenant === holder.tenant && entry.job.leaseWorker === holder.worker);
      if (current === null || current.attempt !== token.attempt || current.epoch !== token.epoch || !mine) {
        // The planted bug acts for the zombie under the current lease instead of refusing it.
        if (current !== null && planted(ctx.env.testHooks, 'accept_stale_lease')) return op(entry, current);
        return notHeld();
      }
      op(entry, token);
    };
    const entry = this.entries.get(token.jobId);
    // Every running job of the shard is in memory, so an unknown job holds no lease.
    if (entry === undefined) return notHeld();
    run(entry);
  }

  private failAttempt(
    entry: Entry,
    token: LeaseToken,
    error: string,
    retryable: boolean,
    ctx: ActorContext<OwnerMsg>,
    reply: (o: AckOutcome) => void,
  ): void {
    const verdict = failureVerdict(entry.job.retry, entry.job.attempts, retryable, ctx.env.random);
    const event: JobEvent =
      verdict.kind === 'retry'
        ? { kind: 'retry', token, runAtMs: ctx.env.clock.wallMs() + verdict.delayMs, error }
        : { kind: 'bury', token, error };
    this.apply(entry, event, token, ctx, () => reply({ ok: true }), reply);
  }

  private expireLeases(ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'serving') return;
    const now = ctx.env.clock.monotonicMs();
    for (const entry of this.running) {
      if (entry.busy || entry.leaseDeadlineMs > now) continue;
      const token = leaseTokenOf(entry.job);
      if (token === null) continue;
      const worker = entry.worker;
      ctx.env.logger.log('info', 'owner.lease_expired', { shard: this.shard, jobId: entry.job.id, attempt: token.attempt });
      // A handler that never answered is most often one stuck on its downstream.
      this.deps.tally.record(jobLane(entry.job), 'failed');
      ctx.env.metrics.inc('leases_expired_total', {});
      this.failAttempt(entry, token, 'lease expired', true, ctx, (outcome) => {
        if (outcome.ok) worker?.revoke(token, 'lease_lost');
      });
    }
  }

  // ---- The write path ----------------------------------------------------------------------

  /** Applies `event` to the job through the store: the entry changes only once the write has
   * committed, then `onCommitted` runs. `onRefused` answers a caller whose event is illegal
   * or whose write was aborted. Returns the job as it will be once committed, or null when the
   * event was refused at once. */
  private apply(
    entry: Entry,
    event: JobEvent,
    token: LeaseToken | null,
    ctx: ActorContext<OwnerMsg>,
    onCommitted: () => void,
    onRefused?: (o: { ok: false; error: ErrorBody }) => void,
  ): Job | null {
    const result = transition(entry.job, event, ctx.env.clock.wallMs());
    if (!result.ok) {
      const code = result.reason === 'stale_token' ? 'stale_lease' : 'illegal_state';
      onRefused?.({ ok: false, error: refusal(code, `cannot ${event.kind} job ${entry.job.id} in state ${entry.job.state}`) });
      return null;
    }
    // A job whose lease is not written yet is written once, from its stored version to the
    // lease's outcome: the write includes the lease, and the version alone fences it (the
    // lease's token is in no stored row to compare with).
    const stored = entry.stored;
    const expectedVersion = (stored ?? entry.job).version;
    const next = stored === null ? result.job : { ...result.job, version: stored.version + 1 };
    const write: JobWrite = stored === null ? { kind: 'update', next, expectedVersion, token } : { kind: 'update', next, expectedVersion, token: null, viaLease: true };
    this.unwrittenLeases.delete(entry);
    const wasQueued = entry.place !== 'none';
    if (wasQueued) {
      this.backlogDirty.add(jobLane(entry.job));
      this.queues.remove(entry);
    }
    entry.busy = true;
    this.stage(write, ctx, (outcome) => {
      entry.busy = false;
      if (!outcome.ok) {
        this.writeFailed(entry, outcome, event.kind, ctx);
        onRefused?.({ ok: false, error: this.notWritten(outcome) });
        this.runWaiting(entry);
        return;
      }
      this.setStored(entry, null);
      const before = entry.job.state;
      entry.job = next;
      if (before === 'running' && next.state !== 'running') {
        this.running.delete(entry);
        entry.worker = null;
        if (next.leaseWorker !== null) this.unhold(entry, next.leaseWorker);
      }
      if (next.state !== before) this.counted(next, ctx);
      onCommitted();
      this.notify(entry);
      if (next.state === 'pending') this.paging.enqueue(entry, ctx);
      if (isTerminal(next.state)) this.paging.evict(entry);
      this.runWaiting(entry);
    });
    return next;
  }

  /** A write of `entry` did not commit. */
  private writeFailed(entry: Entry, outcome: Exclude<WriteOutcome, { ok: true }> | Aborted, what: string, ctx: ActorContext<OwnerMsg>): void {
    if (outcome.reason === 'conflict') {
      // Memory disagrees with the store: only a reload can fix that.
      ctx.env.logger.log('error', 'owner.write_conflict', { shard: this.shard, jobId: entry.job.id, event: what });
      this.drain('failed', ctx);
    }
    if (entry.stored !== null) this.dropUnwrittenLease(entry);
  }

  private stage(write: JobWrite, ctx: ActorContext<OwnerMsg>, done: (outcome: WriteOutcome | Aborted) => void): void {
    this.writes.stage(write, ctx, done);
  }

  private committed(batch: number, reply: CommitReply, ctx: ActorContext<OwnerMsg>): void {
    this.writes.committed(batch, reply, (status) => {
      ctx.env.logger.log('warn', 'owner.commit_refused', { shard: this.shard, epoch: this.deps.epoch, status });
      this.drain(status === 'stale_epoch' ? 'deposed' : 'failed', ctx);
    });
    this.finishDrainIfIdle(ctx);
  }

  // ---- Bookkeeping -------------------------------------------------------------------------

  /** Counts a change of `job`'s state: as it commits, or for a lease, as it is granted (its
   * write comes later, or with its outcome). */
  private counted(job: Job, ctx: ActorContext<OwnerMsg>): void {
    ctx.env.metrics.inc('job_transitions_total', { tenant: job.tenant, queue: job.queue, to: job.state });
  }

  private track(job: Job): Entry {
    const entry: Entry = {
      job,
      place: 'none',
      queueGen: 0,
      busy: false,
      waiting: [],
      worker: null,
      leaseDeadlineMs: 0,
      subscribers: null,
      neverInserted: false,
      stored: null,
    };
    this.entries.set(job.id, entry);
    return entry;
  }

  private notify(entry: Entry): void {
    if (entry.subscribers === null) return;
    for (const subscriber of entry.subscribers.values()) subscriber.changed(entry.job);
    if (isTerminal(entry.job.state)) entry.subscribers = null;
  }

  private runWaiting(entry: Entry): void {
    while (!entry.busy && entry.waiting.length > 0) entry.waiting.shift()!();
    if (isTerminal(entry.job.state) && !entry.busy && this.entries.get(entry.job.id) === entry) this.paging.evict(entry);
  }

  /** The answer to a caller whose write did not commit, or may not have. */
  private notWritten(outcome: WriteOutcome | Aborted): ErrorBody {
    if (outcome.ok === false && outcome.reason === 'aborted' && outcome.unknown) {
      return refusal('internal', `the store did not confirm the write on shard ${this.shard}: it may or may not have happened; retry with the same idempotency key`);
    }
    return this.unavailable();
  }

  private unavailable(): ErrorBody {
    return refusal('unavailable', `shard ${this.shard} is moving or recovering`, RETRY_SOON_MS);
  }

  // ---- Stopping ----------------------------------------------------------------------------

  /** Stops taking work. A graceful stop still commits what it holds; a deposed or failed owner
   * aborts its staged writes (they would be refused, or might double up). Either way the owner
   * stops once nothing is in flight. */
  private drain(reason: OwnerExit, ctx: ActorContext<OwnerMsg>): void {
    if (this.phase === 'draining') {
      if (reason !== 'stopped') this.drainReason = reason;
    } else {
      this.phase = 'draining';
      this.drainReason = reason;
    }
    // A hand-off writes the leases it granted, so that the next owner lets their workers finish;
    // an owner that failed or was deposed can write nothing, and its leases end.
    for (const entry of [...this.unwrittenLeases.keys()]) {
      if (this.drainReason === 'stopped') this.writeLease(entry, ctx);
      else this.dropUnwrittenLease(entry);
    }
    if (this.drainReason === 'stopped') this.writes.flush(ctx, false);
    else this.writes.abortStaged();
    // Everything waiting for a job answers now: the phase makes them refuse.
    for (const entry of this.entries.values()) this.runWaiting(entry);
    this.finishDrainIfIdle(ctx);
  }

  private finishDrainIfIdle(ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'draining' || !this.writes.idle || !this.schedules.idle || !this.breakers.idle) return;
    this.phase = 'stopped';
    this.breakers.stopped();
    // Subscribers of unfinished jobs follow them to the shard's next owner.
    for (const entry of this.entries.values()) for (const subscriber of entry.subscribers?.values() ?? []) subscriber.moved();
    // The dispatcher must stop granting for this shard before the actor goes.
    this.deps.dispatcher.tell({ kind: 'owner_gone', shard: this.shard });
    for (const done of this.drainDone) done();
    this.drainDone = [];
    const early = this.early;
    this.early = [];
    for (const msg of early) this.handle(msg, ctx);
    ctx.stop();
    this.deps.exited(this.drainReason);
  }

  private afterMessage(ctx: ActorContext<OwnerMsg>): void {
    if (this.phase !== 'serving') return;
    this.paging.armWake(ctx);
    if (this.running.size > 0 && !ctx.hasTimer('lease_check')) {
      const everyMs = buggify(ctx.env.testHooks, 'owner.short_lease_check') ? 1 : this.deps.config.leaseCheckMs;
      ctx.startTimer('lease_check', everyMs, { kind: 'lease_check' });
    }
    this.paging.pageInIfRoom(ctx);
    if (this.backlogDirty.size > 0) {
      const counts: Array<[string, number, number]> = [...this.backlogDirty].map((queue) => [
        queue,
        this.queues.readyOf(queue),
        this.queues.topPriority(queue) ?? 0,
      ]);
      this.backlogDirty.clear();
      this.deps.dispatcher.tell({ kind: 'backlog', shard: this.shard, owner: ctx.self, counts });
    }
  }
}

function isContinuation(msg: OwnerMsg): boolean {
  return msg.kind === 'start' || msg.kind === 'load_done' || msg.kind === 'load_failed';
}

