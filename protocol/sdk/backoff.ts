// Exponential backoff with "equal jitter": the n-th wait is drawn from [d/2, d] where
// d = min(maxMs, initialMs * 2^n). Half the wait is fixed, so a retry never comes at once;
// the other half is random, so clients that failed together do not retry together.

export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: { next(): number }): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random.next() * (ceiling / 2);
}
