// The job record as every component sees it. The store persists exactly these fields; the
// protocol exposes a view of them (protocol/job-view.ts).

export const JOB_STATES = ['pending', 'running', 'succeeded', 'dead', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'dead', 'cancelled']);
/** States in which a job still needs work: retention must never drop a partition holding one. */
export const LIVE_STATES: readonly JobState[] = ['pending', 'running'];

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

/** Per-job retry policy. Delay before attempt n+1 is min(backoffMaxMs, backoffBaseMs * 2^(n-1)),
 * then jittered down by up to `jitter` of itself ("equal jitter" when 0.5). */
export interface RetryPolicy {
  attemptsMax: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Fraction in [0, 1] of the delay that is randomised. */
  jitter: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  attemptsMax: 5,
  backoffBaseMs: 1_000,
  backoffMaxMs: 5 * 60_000,
  jitter: 0.5,
};

/** Limits on what a job may carry. The protocol codec enforces the frame size separately. */
export const PAYLOAD_BYTES_MAX = 256 * 1024;
export const RESULT_BYTES_MAX = 256 * 1024;
export const ERROR_CHARS_MAX = 4 * 1024;
export const NAME_CHARS_MAX = 128; // tenant, queue
export const IDEMPOTENCY_KEY_CHARS_MAX = 256;
export const PRIORITY_MIN = -1_000;
export const PRIORITY_MAX = 1_000;
export const ATTEMPTS_MAX_LIMIT = 1_000;

/** A lease token fences every write of one attempt: the attempt number and the shard epoch
 * under which the lease was granted. A write carrying a token the store no longer holds is
 * refused. */
export interface LeaseToken {
  jobId: string;
  attempt: number;
  epoch: number;
}

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
