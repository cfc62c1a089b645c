// The job record as every component sees it. The store persists exactly these fields; the
// protocol exposes a view of them (protocol/job-view.ts), and the rules both share (states,
// retry policy, limits, lease tokens) are the protocol's (protocol/job-rules.ts).

import type { JobState, LeaseToken, RetryPolicy } from '../../../protocol/job-rules.ts';

export interface Job {
  id: string;
  shard: number;
  tenant: string;
  queue: string;
  payload: Uint8Array;
  /** Higher runs first. */
  priority: number;
  /** Not before this wall-clock instant. */
  runAtMs: number;
  /** When the job was accepted; the partition key, encoded in the id. */
  scheduledAtMs: number;
  state: JobState;
  /** Attempts started so far; the running attempt's number while running. */
  attempts: number;
  retry: RetryPolicy;
  idempotencyKey: string | null;
  /** Epoch of the shard owner that granted the current (or last) lease; null before any. */
  leaseEpoch: number | null;
  /** The worker connection the current (or last) lease was granted to (`<node>/<connection>`):
   * only it may heartbeat, settle or return the lease. The token is a fence, not a credential:
   * anyone who sees a job id can work it out. */
  leaseWorker: string | null;
  /** Wall-clock expiry recorded when the lease was granted; heartbeats extend it in the
   * owner's memory only. */
  leaseExpiresAtMs: number | null;
  /** Bumped by every committed write: the optimistic-lock condition of the next one. */
  version: number;
  lastError: string | null;
  result: Uint8Array | null;
  createdAtMs: number;
  updatedAtMs: number;
  finishedAtMs: number | null;
}

export function leaseTokenOf(job: Job): LeaseToken | null {
  if (job.state !== 'running' || job.leaseEpoch === null) return null;
  return { jobId: job.id, attempt: job.attempts, epoch: job.leaseEpoch };
}

export function sameToken(a: LeaseToken, b: LeaseToken): boolean {
  return a.jobId === b.jobId && a.attempt === b.attempt && a.epoch === b.epoch;
}
