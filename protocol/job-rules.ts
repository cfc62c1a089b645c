// The rules of a job that both sides of the wire share: its states, its retry policy (with the
// backoff every retry waits, which the SDK shows too) and the limits on what it carries, and the
// lease token that fences an attempt. The job record itself is the node's
// (node/core/job/job.ts); the protocol imports nothing of the node.

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

/** Delay before the attempt after `attemptsDone` failed attempts (attemptsDone ≥ 1).
 * Exponential from backoffBaseMs, capped at backoffMaxMs, then the `jitter` fraction of it is
 * drawn uniformly from `random` (the node's is the environment's), so retries of many jobs that failed
 * together spread out instead of stampeding. */
export function backoffDelayMs(policy: RetryPolicy, attemptsDone: number, random: { next(): number }): number {
  const exponent = Math.min(Math.max(attemptsDone - 1, 0), 52);
  const raw = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** exponent);
  const jittered = raw * (1 - policy.jitter) + raw * policy.jitter * random.next();
  return Math.round(jittered);
}

/** Problems with a policy from the outside, or null when it is usable. */
export function retryPolicyProblem(policy: RetryPolicy): string | null {
  const { attemptsMax, backoffBaseMs, backoffMaxMs, jitter } = policy;
  if (!Number.isInteger(attemptsMax) || attemptsMax < 1 || attemptsMax > ATTEMPTS_MAX_LIMIT) {
    return `attemptsMax must be an integer in [1, ${ATTEMPTS_MAX_LIMIT}]`;
  }
  if (!Number.isInteger(backoffBaseMs) || backoffBaseMs < 0 || backoffBaseMs > 86_400_000) {
    return 'backoffBaseMs must be an integer in [0, 86400000]';
  }
  if (!Number.isInteger(backoffMaxMs) || backoffMaxMs < backoffBaseMs || backoffMaxMs > 7 * 86_400_000) {
    return 'backoffMaxMs must be an integer in [backoffBaseMs, 604800000]';
  }
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) return 'jitter must be in [0, 1]';
  return null;
}
