// What a shard owner holds of its shard in memory, and how the rest comes back from the store.
//
// An owner holds at most memoryJobsMax ready (due) jobs and, apart from them, the earliest
// delayedJobsMax delayed (future) jobs, so that jobs due later never keep ready ones out; every
// other pending job stays in the store ("spilled"). This file decides which pending jobs are
// held (enqueue: the two bounds, a later delayed job making room for an earlier one), remembers
// the earliest run_at it left in the store, pages due jobs in once the ready queues have
// drained to half, arms the one wake timer for the next held delayed job or spilled job coming
// due, and fetches single jobs that memory does not hold (for a cancel, requeue or
// subscription). Both kinds of read race with the owner's own writes; stale-reads.ts says how
// their rows are checked, and every job leaving memory (spilled, or evicted once finished) is
// noted there.
//
// It lives apart from shard-owner.ts so that the owner reads as the state machine it is
// (loading, serving, draining; leases and writes), while residency in memory is one concern
// here. The owner keeps the map of entries and the queues; this file changes them only by
// these rules.

import type { ActorContext } from '../actor/runtime.ts';
import { type Job } from '../job/job.ts';
import { isTerminal } from '../../../protocol/job-rules.ts';
import { jobLane } from '../job/lane.ts';
import type { OwnerMsg } from './owner-messages.ts';
import type { Queued, ReadyQueues } from './ready-queue.ts';
import { StaleReads, type ReadMark } from './stale-reads.ts';
import { buggify } from '../test-hooks.ts';

/** The longest the wake timer sleeps: it is armed on the wall clock of the moment, and a clock
 * that was behind and is then stepped forward would otherwise keep due jobs waiting as long as
 * the step. An owner that is told of nothing meanwhile checks again this often. */
const WAKE_CHECK_MAX_MS = 5_000;
/** How often a due spilled job is paged in while the ready queues have room but have not
 * drained to half. Ready jobs of lanes that no worker takes keep the queues from draining, and
 * must not keep the other lanes' spilled jobs in the store for ever; a page-in at most this
 * often bounds what that costs the store. */
const PAGE_IN_WITH_ROOM_EVERY_MS = 1_000;

/** What paging needs of an owner's entry. */
export interface PagedEntry extends Queued {
  busy: boolean;
  waiting: readonly unknown[];
  subscribers: ReadonlyMap<string, unknown> | null;
}

export interface PagingDeps<E extends PagedEntry> {
  shard: number;
  memoryJobsMax: number;
  delayedJobsMax: number;
  /** The owner's jobs in memory, by id. */
  entries: Map<string, E>;
  queues: ReadyQueues<E>;
  /** Lanes whose ready count changed, for the owner to tell the dispatcher. */
  backlogDirty: Set<string>;
  /** Makes an entry of a job read from the store and adds it to `entries`. */
  track: (job: Job) => E;
  /** Whether the owner still serves (reads that answer later are dropped otherwise). */
  serving: () => boolean;
  /** Jobs memory holds as running whose lease the store does not have yet: the store still
   * lists them as pending, first by run_at, so a page of pending jobs must reach past them. */
  leasesNotStored: () => number;
}

/** Runs an operation once a fetch has answered: the entry, null when there is no such job of
 * this shard, or 'unavailable' when the read failed. */
export type Fetched<E> = (entry: E | null | 'unavailable') => void;

export class Paging<E extends PagedEntry> {
  /** No pending job that memory does not hold is due before this instant (wall clock):
   * +Infinity when memory holds them all. A page-in runs once it has come (and the ready queues
   * have room), and the wake timer is armed for it. */
  private spilledFromMs = Number.POSITIVE_INFINITY;
  /** The same bound, for the jobs spilled while the page-in in flight ran. */
  private spilledDuringPageMs = Number.POSITIVE_INFINITY;
  private pagingIn = false;
  /** When the wake timer fires, on the monotonic clock: job due times are wall-clock times, but
   * a timer runs on monotonic time, so a wall clock stepped forward must bring the wake-up
   * forward too (compared on the wall clock, a wake-up armed while the clock was behind kept its
   * old delay, and due jobs waited as long as the step). */
  private wakeFiresAtMs: number | null = null;
  /** When the last page-in started, on the monotonic clock. */
  private pageInStartedMs = Number.NEGATIVE_INFINITY;
  private readonly fetching = new Map<string, Array<Fetched<E>>>();
  /** Jobs that left memory while a read of the store was in flight (see stale-reads.ts). */
  private readonly staleReads: StaleReads;

  constructor(private readonly deps: PagingDeps<E>) {
    this.staleReads = new StaleReads(Math.max(1_024, 4 * deps.memoryJobsMax));
  }

  /** The owner's first load: the first page of pending jobs, `pendingMore` when it was full. */
  loaded(pending: Job[], pendingMore: boolean, ctx: ActorContext<OwnerMsg>): void {
    // Before queueing: a job that does not fit spills and lowers the bound again.
    this.spilledFromMs = pendingMore ? pending.at(-1)!.runAtMs : Number.POSITIVE_INFINITY;
    for (const job of pending) this.enqueue(this.deps.track(job), ctx);
  }

  /** Queues a pending job, or leaves it to the store when its bound is full: ready (due) jobs
   * up to memoryJobsMax, and apart from them the earliest delayedJobsMax delayed ones (a later
   * one makes room for an earlier one). A job someone waits on or watches is always held. */
  enqueue(entry: E, ctx: ActorContext<OwnerMsg>): void {
    if (entry.job.state !== 'pending' || entry.place !== 'none') return;
    const { queues } = this.deps;
    const nowMs = ctx.env.clock.wallMs();
    if (!pinned(entry)) {
      const forced = buggify(ctx.env.testHooks, 'owner.spill');
      if (entry.job.runAtMs <= nowMs) {
        if (forced || (queues.readySize >= this.deps.memoryJobsMax && !this.makeRoomFor(entry))) return this.spill(entry);
      } else if (forced || queues.delayedSize >= this.deps.delayedJobsMax) {
        const latest = queues.latestDelayed();
        if (forced || latest === undefined || pinned(latest) || !dueBefore(entry.job, latest.job)) return this.spill(entry);
        queues.remove(latest);
        this.spill(latest);
      }
    }
    if (queues.add(entry, nowMs) === 'ready') this.deps.backlogDirty.add(jobLane(entry.job));
  }

  /** A finished job leaves memory, unless an operation still waits on it. */
  evict(entry: E): void {
    if (entry.waiting.length > 0) return;
    this.deps.entries.delete(entry.job.id);
    this.staleReads.jobLeft(entry.job.id, entry.job.version);
    entry.subscribers = null;
  }

  /** The wake timer fired: due delayed jobs become ready, as far as the ready bound allows; the
   * rest go back to the store as due jobs, to be paged in. */
  wake(ctx: ActorContext<OwnerMsg>): void {
    this.wakeFiresAtMs = null;
    for (const entry of this.deps.queues.takeDue(ctx.env.clock.wallMs())) this.enqueue(entry, ctx);
  }

  /** Arms the wake timer for the earliest held delayed job or spilled job coming due. */
  armWake(ctx: ActorContext<OwnerMsg>): void {
    const heldDue = this.deps.queues.nextDueMs();
    const wallMs = ctx.env.clock.wallMs();
    const nowMs = ctx.env.clock.monotonicMs();
    // A spilled job coming due needs a page-in; one already due waits for room, or for the
    // next page-in with room (pageInIfRoom).
    const spilledDue = this.spilledFromMs > wallMs && Number.isFinite(this.spilledFromMs) ? this.spilledFromMs : null;
    const withRoom = this.mayPageInWithRoom(wallMs) ? wallMs + Math.max(0, this.pageInStartedMs + PAGE_IN_WITH_ROOM_EVERY_MS - nowMs) : null;
    const next = [heldDue, spilledDue, withRoom].reduce<number | null>((a, b) => (a === null ? b : b === null ? a : Math.min(a, b)), null);
    if (next === null) return;
    const firesAtMs = nowMs + Math.min(WAKE_CHECK_MAX_MS, Math.max(0, next - wallMs));
    if (this.wakeFiresAtMs !== null && this.wakeFiresAtMs <= firesAtMs) return;
    this.wakeFiresAtMs = firesAtMs;
    ctx.startTimer('wake', firesAtMs - nowMs, { kind: 'wake' });
  }

  /** Starts a page-in when a spilled job is due and the ready queues have drained to half, or
   * have room and the last page-in is PAGE_IN_WITH_ROOM_EVERY_MS old. */
  pageInIfRoom(ctx: ActorContext<OwnerMsg>): void {
    const limit = this.deps.memoryJobsMax;
    const nowMs = ctx.env.clock.monotonicMs();
    const drained = this.deps.queues.readySize <= limit / 2;
    const withRoom = this.mayPageInWithRoom(ctx.env.clock.wallMs()) && nowMs >= this.pageInStartedMs + PAGE_IN_WITH_ROOM_EVERY_MS;
    if (this.pagingIn || !this.deps.serving() || this.spilledFromMs > ctx.env.clock.wallMs() || !(drained || withRoom)) return;
    // The store returns pending jobs by run_at: due ones first, then the earliest future ones.
    this.pagingIn = true;
    this.pageInStartedMs = nowMs;
    this.spilledDuringPageMs = Number.POSITIVE_INFINITY;
    const mark = this.staleReads.begin();
    const size = limit + this.deps.leasesNotStored();
    ctx.pipe(
      () => ctx.env.store.loadShardJobs(this.deps.shard, 'pending', null, size),
      (pending) => ({ kind: 'page_in_done', pending, pendingMore: pending.length >= size, mark }),
      (error) => ({ kind: 'page_in_failed', error, mark }),
    );
  }

  /** A spilled job is due, no page-in runs, and the ready queues have room. */
  private mayPageInWithRoom(wallMs: number): boolean {
    return !this.pagingIn && this.spilledFromMs <= wallMs && this.deps.queues.readySize < this.deps.memoryJobsMax;
  }

  pagedIn(pending: Job[], pendingMore: boolean, mark: ReadMark, ctx: ActorContext<OwnerMsg>): void {
    this.pagingIn = false;
    this.takePage(pending, pendingMore, mark, ctx);
    this.staleReads.end(mark);
  }

  pageInFailed(error: unknown, mark: ReadMark, ctx: ActorContext<OwnerMsg>): void {
    this.pagingIn = false;
    this.staleReads.end(mark);
    ctx.env.logger.log('warn', 'owner.page_in_failed', { shard: this.deps.shard, error: String(error) });
  }

  private takePage(pending: Job[], pendingMore: boolean, mark: ReadMark, ctx: ActorContext<OwnerMsg>): void {
    // A page that can no longer tell stale rows is dropped; the bound stays, so another comes.
    if (!this.deps.serving() || this.staleReads.isBlind(mark)) return;
    // What the page proves: a pending job it did not return lies past its last row (a full
    // page) or does not exist, unless it spilled while the page was read. Rows that do not fit
    // spill again below and lower the bound.
    const last = pending.at(-1);
    this.spilledFromMs = Math.min(this.spilledDuringPageMs, pendingMore && last !== undefined ? last.runAtMs : Number.POSITIVE_INFINITY);
    for (const job of pending) {
      // A job in memory is newer than its row. One that left memory since the read began (it
      // finished, or spilled again) must not come back at the version read: a job that left
      // pending is marked spilled and found by a later page-in.
      if (this.deps.entries.has(job.id) || this.staleReads.isStale(mark, job.id, job.version)) continue;
      this.enqueue(this.deps.track(job), ctx);
    }
  }

  /** Runs `run` with a job memory does not hold (spilled, or finished), once read from the
   * store; one read serves everyone asking for the same job meanwhile. */
  fetch(jobId: string, run: Fetched<E>, ctx: ActorContext<OwnerMsg>): void {
    const waiting = this.fetching.get(jobId);
    if (waiting !== undefined) return void waiting.push(run);
    this.fetching.set(jobId, [run]);
    this.read(jobId, ctx);
  }

  /** `job` undefined: the fetch failed. */
  fetched(jobId: string, job: Job | null | undefined, mark: ReadMark, ctx: ActorContext<OwnerMsg>): void {
    this.answerFetch(jobId, job, mark, ctx);
    this.staleReads.end(mark);
  }

  private read(jobId: string, ctx: ActorContext<OwnerMsg>): void {
    const mark = this.staleReads.begin();
    ctx.pipe(
      () => ctx.env.store.getJob(jobId),
      (job) => ({ kind: 'fetch_done', jobId, job, mark }),
      (error) => ({ kind: 'fetch_failed', jobId, error, mark }),
    );
  }

  private answerFetch(jobId: string, job: Job | null | undefined, mark: ReadMark, ctx: ActorContext<OwnerMsg>): void {
    const waiting = this.fetching.get(jobId) ?? [];
    if (job === undefined) {
      this.fetching.delete(jobId);
      for (const run of waiting) run('unavailable');
      return;
    }
    let entry = this.deps.entries.get(jobId) ?? null;
    // The job was in memory and left it while the read ran (see stale-reads.ts): the row may
    // be older than the store, so read it again, for the same waiters. (A row of no job: the
    // job never existed, or a retention that dropped a finished one; either way, not stale.)
    if (entry === null && this.deps.serving() && (this.staleReads.isBlind(mark) || (job !== null && this.staleReads.isStale(mark, jobId, job.version)))) {
      return this.read(jobId, ctx);
    }
    this.fetching.delete(jobId);
    if (entry === null && job !== null && job.shard === this.deps.shard) {
      // A job in the store that memory does not hold: a spilled pending job, or a finished
      // one. It is tracked while operated on; a pending one joins the queues.
      entry = this.deps.track(job);
      if (job.state === 'pending') this.enqueue(entry, ctx);
    }
    for (const run of waiting) run(entry);
    if (entry !== null && isTerminal(entry.job.state) && !entry.busy) this.evict(entry);
  }

  /** Leaves a pending job to the store: a page-in finds it once due. */
  /** Full ready queues make room for a due job whose lane holds fewer ready jobs than the
   * largest lane, by sending the largest lane's last job back to the store. Without it, ready
   * jobs of a lane no worker takes, once they fill memory, kept every other lane's jobs out as
   * they arrived (docs/DESIGN.md, "Paging by lane", says what is still left). */
  private makeRoomFor(entry: E): boolean {
    const { queues } = this.deps;
    const largest = queues.largestLane();
    if (largest === undefined || queues.readyOf(largest) <= queues.readyOf(jobLane(entry.job)) + 1) return false;
    const last = queues.takeLast(largest, (e) => !pinned(e));
    if (last === undefined) return false;
    this.deps.backlogDirty.add(largest);
    this.spill(last);
    return true;
  }

  private spill(entry: E): void {
    this.spilledFromMs = Math.min(this.spilledFromMs, entry.job.runAtMs);
    if (this.pagingIn) this.spilledDuringPageMs = Math.min(this.spilledDuringPageMs, entry.job.runAtMs);
    this.deps.entries.delete(entry.job.id);
    this.staleReads.jobLeft(entry.job.id, entry.job.version);
  }
}

function pinned(entry: PagedEntry): boolean {
  return entry.subscribers !== null || entry.waiting.length > 0;
}

function dueBefore(a: Job, b: Job): boolean {
  return a.runAtMs < b.runAtMs || (a.runAtMs === b.runAtMs && a.id < b.id);
}
