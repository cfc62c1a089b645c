// One leased attempt as its handler sees it (JobContext), with the worker's bookkeeping
// beside it. The AbortController is made only when the handler reads `signal`: most handlers
// of a fast queue never do, and one per job is a measurable cost at tens of thousands of
// jobs a second.

import type { LeaseToken } from '../job-rules.ts';
import type { Ack, Lease, LeaseJob } from '../worker-messages.ts';
import type { KairosError } from './errors.ts';
import type { Answerer } from './messages.ts';

/** What a handler gets for one attempt. */
export interface JobContext {
  readonly payload: Uint8Array;
  /** The attempt number, from 1. */
  readonly attempt: number;
  readonly attemptsMax: number;
  /** Fences this attempt; use it as the idempotency key of the handler's own side effects. */
  readonly token: LeaseToken;
  readonly jobId: string;
  readonly queue: string;
  readonly job: LeaseJob;
  /** Aborts when the job is cancelled, the lease is lost (revoked, refused on a heartbeat, or
   * run out on this worker's clock), or the worker shuts down and returns the lease; the
   * reason is a `stale_lease` KairosError, or an AbortError at shutdown. The attempt's outcome
   * is then no longer wanted. */
  readonly signal: AbortSignal;
  /** Extends the lease now (it is also extended automatically every leaseMs/3). Rejects with
   * a `stale_lease` KairosError when the lease is lost. */
  extendLease(): Promise<void>;
  /** Extends the lease and records a progress note in the node's logs. */
  progress(note: string): Promise<void>;
}

/** What an attempt needs from its worker. */
export interface AttemptOwner {
  heartbeat(attempt: Attempt, progress: string | undefined): Promise<void>;
  outcomeAnswered(attempt: Attempt, outcome: Ack | Error, resent: boolean): void;
}

export type AttemptPhase = 'running' | 'reporting';

export class Attempt implements JobContext, Answerer<Ack> {
  readonly payload: Uint8Array;
  readonly attempt: number;
  readonly attemptsMax: number;
  readonly token: LeaseToken;
  readonly jobId: string;
  readonly queue: string;
  readonly job: LeaseJob;

  /** `running` while the handler runs; `reporting` while its outcome awaits the node's ack. */
  phase: AttemptPhase = 'running';
  /** On the worker's own clock, from receipt: the lease lasts `leaseMs` from then. */
  expiresAtMs: number;
  heartbeatDueMs: number;
  heartbeatsInFlight = 0;
  /** The node said the lease is gone (revoke, stale_lease): send nothing more under it. */
  lost = false;
  /** Why, when the handler's author should hear of it once the handler ends (a lease lost;
   * not a cancellation, which is the caller's own doing). */
  lossToReport: KairosError | null = null;
  /** Given back at shutdown; the handler's eventual outcome is ignored. */
  returned = false;
  private controller: AbortController | null = null;
  private abortReason: unknown = undefined;
  private aborted = false;

  constructor(
    private readonly owner: AttemptOwner,
    lease: Lease,
    nowMs: number,
  ) {
    this.payload = lease.payload;
    this.attempt = lease.token.attempt;
    this.attemptsMax = lease.attemptsMax;
    this.token = lease.token;
    this.jobId = lease.token.jobId;
    this.queue = lease.queue;
    this.job = lease.job;
    this.expiresAtMs = nowMs + lease.leaseMs;
    this.heartbeatDueMs = nowMs + lease.leaseMs / 3;
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  extendLease(): Promise<void> {
    return this.owner.heartbeat(this, undefined);
  }

  progress(note: string): Promise<void> {
    return this.owner.heartbeat(this, note);
  }

  /** The node's answer to this attempt's outcome (complete, fail). */
  answered(outcome: Ack | Error, resent: boolean): void {
    this.owner.outcomeAnswered(this, outcome, resent);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /** The lease now lasts `leaseMs` from `nowMs`. */
  extended(nowMs: number, leaseMs: number): void {
    this.expiresAtMs = nowMs + leaseMs;
    this.heartbeatDueMs = nowMs + leaseMs / 3;
  }
}
