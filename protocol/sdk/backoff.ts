// Exponential backoff with "equal jitter" for the SDK's reconnects and retries: the n-th wait
// is drawn from [d/2, d] where d = min(maxMs, initialMs * 2^n). Half the wait is fixed, so a
// retry never comes at once; the other half is random, so clients that failed together do not
// retry together. The same formula as a job's retry backoff, so it is that one.

import { backoffDelayMs as retryBackoffMs } from '../job-rules.ts';

export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: { next(): number }): number {
  const asRetry = { attemptsMax: 1, backoffBaseMs: policy.initialDelayMs, backoffMaxMs: policy.maxDelayMs, jitter: 0.5 };
  return retryBackoffMs(asRetry, attempt + 1, random);
}
