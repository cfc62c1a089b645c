// What other actors say to a shard owner, and what it answers. In-process messages: replies
// are callbacks that the asker builds to turn the answer into a message of its own.

import type { ErrorBody } from '../../../protocol/errors.ts';
import type { Job } from '../job/job.ts';
import type { LeaseToken, RetryPolicy } from '../../../protocol/job-rules.ts';
import type { CommitReply } from '../commit/committer.ts';
import type { Schedule } from '../schedule/schedule.ts';
import type { SchedulesMsg } from './schedules.ts';
import type { BreakerOp, BreakerOutcome, BreakersMsg } from './breakers.ts';
import type { Breaker } from '../breaker/breaker.ts';

/** A submission after validation: every default filled in. */
export interface Submission {
  queue: string;
  payload: Uint8Array;
  priority: number;
  /** Absolute wall-clock instant, or null for "now" (resolved by the owner's clock). */
  runAtMs: number | null;
  delayMs: number;
  idempotencyKey: string | null;
  retry: RetryPolicy;
}

export type SubmitOutcome = { ok: true; jobId: string; duplicate: boolean } | { ok: false; error: ErrorBody };
export type JobOutcome = { ok: true; job: Job } | { ok: false; error: ErrorBody };
export type AckOutcome = { ok: true } | { ok: false; error: ErrorBody };
/** A heartbeat's answer: how long the lease lasts from now. */
export type HeartbeatOutcome = { ok: true; leaseMs: number } | { ok: false; error: ErrorBody };

/** A schedule as a client asks for it: what the owner fills in (its tenant and shard, its next
 * tick, version and instants) left out. */
export type ScheduleDraft = Omit<Schedule, 'tenant' | 'shard' | 'nextTickMs' | 'version' | 'createdAtMs' | 'updatedAtMs'>;
export type ScheduleOp =
  | { kind: 'upsert'; schedule: ScheduleDraft }
  | { kind: 'pause'; name: string; paused: boolean }
  | { kind: 'delete'; name: string };
/** The schedule as committed; null once deleted. */
export type ScheduleOutcome = { ok: true; schedule: Schedule | null } | { ok: false; error: ErrorBody };

/** Where leases and revocations for one worker go: a client connection on this node, or a
 * relay to the node the worker is attached to. */
export interface WorkerLink {
  readonly id: string;
  lease(job: Job, token: LeaseToken, leaseMs: number): void;
  revoke(token: LeaseToken, reason: 'cancelled' | 'lease_lost'): void;
}

/** Who speaks for a lease: the tenant and the worker connection (`<node>/<connection>`) of the
 * request. Only the connection a lease was granted to may heartbeat, settle or return it. */
export interface LeaseHolder {
  tenant: string;
  worker: string;
}

/** A party watching one job's state changes. */
export interface Subscriber {
  readonly id: string;
  changed(job: Job): void;
  /** The owner stopped serving the shard (a hand-off, a shutdown, a recovery) before the job
   * finished: subscribe again at the shard's next owner to keep following it. */
  moved(): void;
}

export type OwnerMsg =
  /** From the shard manager, first: load the shard from the store and start serving. */
  | { kind: 'start' }
  | { kind: 'submit'; tenant: string; submission: Submission; reply: (outcome: SubmitOutcome) => void }
  | { kind: 'cancel'; tenant: string; jobId: string; reply: (outcome: JobOutcome) => void }
  | { kind: 'requeue'; tenant: string; jobId: string; attemptsMore: number; reply: (outcome: JobOutcome) => void }
  | { kind: 'subscribe'; tenant: string; jobId: string; subscriber: Subscriber; reply: (outcome: JobOutcome) => void }
  | { kind: 'unsubscribe'; jobId: string; subscriberId: string }
  /** A client's change of a schedule that lives on this shard. */
  | { kind: 'schedule'; tenant: string; op: ScheduleOp; reply: (outcome: ScheduleOutcome) => void }
  /** A client's change or read of a circuit breaker that lives on this shard. */
  | { kind: 'breaker'; tenant: string; op: BreakerOp; reply: (outcome: BreakerOutcome) => void }
  /** From the dispatcher: lease up to `slots` ready jobs of `lane` (a tenant's queue) to
   * `worker`. */
  | { kind: 'grant'; lane: string; worker: WorkerLink; slots: number }
  | { kind: 'heartbeat'; token: LeaseToken; holder: LeaseHolder; reply: (outcome: HeartbeatOutcome) => void }
  | { kind: 'complete'; token: LeaseToken; holder: LeaseHolder; result: Uint8Array | null; reply: (outcome: AckOutcome) => void }
  /** `downstream`: whether the failure counts towards the lane's circuit breaker (null: when
   * retryable). */
  | { kind: 'fail'; token: LeaseToken; holder: LeaseHolder; error: string; retryable: boolean; downstream: boolean | null; reply: (outcome: AckOutcome) => void }
  /** The worker gives the lease back without a verdict (shutdown): the job runs again at once. */
  | { kind: 'return'; token: LeaseToken; holder: LeaseHolder; reply: (outcome: AckOutcome) => void }
  /** From the dispatcher: a worker's connection closed. Its leases here end now, each as a
   * failed attempt, and their jobs are ready again at once. */
  | { kind: 'worker_gone'; workerId: string }
  /** Hand-off or shutdown: stop taking work, let in-flight commits land, then call `done`. */
  | { kind: 'stop'; done: () => void }
  // Continuations of the owner's own effects.
  | { kind: 'load_done'; running: Job[]; pending: Job[]; pendingMore: boolean; schedules: Schedule[]; breakers: Breaker[] }
  | { kind: 'load_failed'; error: unknown }
  | { kind: 'page_in_done'; pending: Job[]; pendingMore: boolean; mark: number }
  | { kind: 'page_in_failed'; error: unknown; mark: number }
  | { kind: 'fetch_done'; jobId: string; job: Job | null; mark: number }
  | { kind: 'fetch_failed'; jobId: string; error: unknown; mark: number }
  | { kind: 'commit_done'; batch: number; reply: CommitReply }
  | { kind: 'flush' }
  | { kind: 'wake' }
  | { kind: 'lease_check' }
  | { kind: 'lease_write' }
  | { kind: 'schedules'; msg: SchedulesMsg }
  | { kind: 'breakers'; msg: BreakersMsg };
