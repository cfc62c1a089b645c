// Retry policy: when a failed attempt runs again, or whether it runs again at all (the backoff
// and the policy's checks are the protocol's: protocol/job-rules.ts).

import type { Random } from '../env.ts';
import { backoffDelayMs, type RetryPolicy } from '../../../protocol/job-rules.ts';

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
