// Retry policy: when a failed attempt runs again, or whether it runs again at all.

import type { Random } from '../env.ts';
import { ATTEMPTS_MAX_LIMIT, type RetryPolicy } from './job.ts';

/** Delay before the attempt after `attemptsDone` failed attempts (attemptsDone ≥ 1).
 * Exponential from backoffBaseMs, capped at backoffMaxMs, then the `jitter` fraction of it is
 * drawn uniformly from the environment's random source, so retries of many jobs that failed
 * together spread out instead of stampeding. */
export function backoffDelayMs(policy: RetryPolicy, attemptsDone: number, random: Pick<Random, 'next'>): number {
  const exponent = Math.min(Math.max(attemptsDone - 1, 0), 52);
  const raw = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** exponent);
  const jittered = raw * (1 - policy.jitter) + raw * policy.jitter * random.next();
  return Math.round(jittered);
}

export type FailureVerdict = { kind: 'retry'; delayMs: number } | { kind: 'dead'; reason: DeadReason };
export type DeadReason = 'attempts_exhausted' | 'non_retryable';

/** What to do after attempt `attempt` failed. */
export function failureVerdict(
  policy: RetryPolicy,
  attempt: number,
  retryable: boolean,
  random: Random,
): FailureVerdict {
  if (!retryable) return { kind: 'dead', reason: 'non_retryable' };
  if (attempt >= policy.attemptsMax) return { kind: 'dead', reason: 'attempts_exhausted' };
  return { kind: 'retry', delayMs: backoffDelayMs(policy, attempt, random) };
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
