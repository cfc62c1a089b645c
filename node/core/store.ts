// The store: domain operations on the source of truth, batch-first. Implementations:
// node/store/pg-store.ts (PostgreSQL) and, later, the simulator's in-memory store. Both must
// pass test/conformance/store-conformance.ts, which is the executable form of this contract.
//
// Safety rests on two conditions every implementation enforces inside one transaction:
// 1. shard fencing: a commit names the epoch it writes under for each shard; the shard row is
//    locked against a concurrent acquisition and its epoch compared; a mismatch aborts the
//    whole commit and nothing of it is written;
// 2. job fencing: every job write is conditional on the job's version (and, for writes of a
//    leased attempt, on its lease token), so a write based on a stale read is refused.
//
// Expected refusals come back as values. Infrastructure failures (connection lost, timeout)
// reject with StoreUnavailableError; the outcome of such a commit is unknown to the caller,
// which must be safe to retry (it is: every write is conditional).

import type { Job } from './job/job.ts';
import type { JobState, LeaseToken } from '../../protocol/job-rules.ts';
import type { Schedule, ScheduleWrite, ScheduleWriteOutcome } from './schedule/schedule.ts';
import type { Breaker, BreakerWrite, BreakerWriteOutcome } from './breaker/breaker.ts';

export interface ShardLease {
  shard: number;
  epoch: number;
}

export interface ShardRow {
  shard: number;
  owner: string | null;
  epoch: number;
  /** The store's own clock (Postgres `now()`), in ms since the Unix epoch; null when released. */
  leaseUntilMs: number | null;
}

/** One write in a commit. Every update names the version it expects the job to be at; the
 * store bumps the version by one when it applies the write. */
export type JobWrite =
  /** A new job, in state pending, or running when a waiting worker takes it at once (so it is
   * not written twice). Carries the idempotency key, if any, which the store records in the
   * same transaction. */
  | { kind: 'insert'; job: Job }
  /** Apply `next` (a job produced by the transition function from a job at `expectedVersion`).
   * For lease-bound transitions (complete, retry, bury, and cancel of a running job) `token` is
   * the lease it acts under: the stored job must still be running, at that attempt and lease
   * epoch.
   * `viaLease`: the stored job is pending, and `next` is the outcome of a lease granted since
   * and never written (the owner writes a lease late, and a verdict that comes first with it).
   * Such a write has no token, the lease being in no stored row: the version fences it. */
  | { kind: 'update'; next: Job; expectedVersion: number; token: LeaseToken | null; viaLease?: true };

export interface CommitBatch {
  /** The epoch the writer holds for every shard it writes in this batch. */
  shards: ShardLease[];
  writes: JobWrite[];
}

export type WriteOutcome =
  | { ok: true }
  /** The job's version or lease token no longer matched (or the job is gone): nothing written. */
  | { ok: false; reason: 'conflict' }
  /** An insert whose (tenant, idempotency key) already names a job: nothing written. */
  | { ok: false; reason: 'duplicate'; existingJobId: string };

export type CommitResult =
  /** Committed; `outcomes[i]` belongs to `writes[i]`. */
  | { status: 'committed'; outcomes: WriteOutcome[] }
  /** At least one shard's epoch is no longer the writer's: nothing at all was written. */
  | { status: 'stale_epoch'; staleShards: number[] };

export interface JobCursor {
  runAtMs: number;
  id: string;
}

export interface Page<T> {
  items: T[];
  /** Opaque continuation for the next page; null when this was the last. */
  next: string | null;
}

export interface ListFilter {
  state?: JobState;
  queue?: string;
  limit: number;
  /** A `next` from a previous page. */
  after?: string | null;
}

export interface RetentionOptions {
  /** Daily partitions to have ready from today onwards (today included). */
  daysAhead: number;
  /** Partitions whose whole day ended more than this many days ago may be dropped. */
  keepDays: number;
}

export interface RetentionReport {
  created: string[];
  dropped: string[];
  /** Expired partitions that still hold live (pending or running) jobs and so were kept. */
  keptLive: string[];
  /** False when another node holds the retention lock and this call did nothing. */
  ran: boolean;
}

export interface Store {
  /** Acquire shards for `owner`, each only if free, already the owner's, its lease has lapsed
   * by the store's clock, or its owner is one of `deadOwners` (nodes the caller's membership
   * declared dead: the epoch, not the lease, fences their writes, so taking over at once costs
   * at worst duplicate execution if one was only paused, never a stale commit). Every
   * acquisition bumps the epoch. Returns the ones won. */
  acquireShards(owner: string, shards: number[], leaseMs: number, deadOwners?: readonly string[]): Promise<ShardLease[]>;
  /** Extend the leases the owner still holds at these epochs, in one statement. Returns the
   * shards renewed; a missing one was lost and must stop being served. */
  renewShards(owner: string, leases: ShardLease[], leaseMs: number): Promise<number[]>;
  /** Give shards up (hand-off, shutdown): owner cleared, lease ended, epoch kept. */
  releaseShards(owner: string, leases: ShardLease[]): Promise<void>;
  listShards(): Promise<ShardRow[]>;

  /** The one fenced write path. */
  commit(batch: CommitBatch): Promise<CommitResult>;

  /** A page of a shard's jobs in one live state, ordered by (run_at, id), after `after`. */
  loadShardJobs(shard: number, state: 'pending' | 'running', after: JobCursor | null, limit: number): Promise<Job[]>;
  /** One job. With `listJobs`, what clients read: an implementation serves these apart from
   * the write path and shard leases, so that no flood of reads can delay them. */
  getJob(id: string): Promise<Job | null>;
  /** The job an idempotency key names, if any. */
  findByIdempotencyKey(tenant: string, key: string): Promise<string | null>;
  /** A tenant's jobs, newest first. */
  listJobs(tenant: string, filter: ListFilter): Promise<Page<Job>>;

  /** Recurring schedules (schedule/schedule.ts). A schedule write is fenced like a commit (the
   * shard's epoch, else 'stale_epoch' and nothing written) and conditional on the schedule's
   * version ('conflict'); a put that creates bumps nothing and counts against the tenant's
   * SCHEDULES_PER_TENANT_MAX ('limit'). The store sets version to expectedVersion + 1 (1 when
   * created), whatever `schedule.version` says. */
  writeSchedule(lease: ShardLease, write: ScheduleWrite): Promise<ScheduleWriteOutcome>;
  /** Every schedule of a shard, for its owner at start. */
  loadShardSchedules(shard: number): Promise<Schedule[]>;
  /** One schedule, as committed (a read, served apart from the write path like getJob). */
  getSchedule(tenant: string, name: string): Promise<Schedule | null>;
  /** A tenant's schedules by name, `limit` at most, after the `next` of a previous page. */
  listSchedules(tenant: string, limit: number, after: string | null): Promise<Page<Schedule>>;

  /** Circuit breakers (breaker/breaker.ts). A breaker write is fenced like a schedule write
   * (the shard's epoch, else 'stale_epoch'), conditional on the breaker's version ('conflict'),
   * and a creation counts against the tenant's BREAKERS_PER_TENANT_MAX ('limit'). The store
   * sets version to expectedVersion + 1 (1 when created). Rows are never deleted. */
  writeBreaker(lease: ShardLease, write: BreakerWrite): Promise<BreakerWriteOutcome>;
  /** Every breaker of a shard, for its owner at start. */
  loadShardBreakers(shard: number): Promise<Breaker[]>;
  /** One breaker, as committed (a read, served apart from the write path like getJob). */
  getBreaker(tenant: string, queue: string): Promise<Breaker | null>;
  /** A tenant's breakers by queue (byte order), `limit` at most, after the `next` of a
   * previous page. */
  listBreakers(tenant: string, limit: number, after: string | null): Promise<Page<Breaker>>;

  /** Create partitions ahead; drop expired ones only when nothing in them is live. One node at
   * a time (the store serialises callers). Days are counted by the store's clock (PostgreSQL's
   * now()), never a node's, so that nodes whose clocks disagree agree on what has expired and
   * a node whose clock runs days ahead cannot drop a day early. `asOfMs` runs the pass as of
   * another instant: tests and the benchmark's preload, which work on days of their choosing. */
  retention(options: RetentionOptions, asOfMs?: number): Promise<RetentionReport>;

  close(): Promise<void>;
}

/** An infrastructure failure of the store: the operation's outcome is unknown. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
