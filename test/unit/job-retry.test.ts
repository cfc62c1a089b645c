import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from '../../protocol/job-rules.ts';
import { backoffDelayMs, retryPolicyProblem } from '../../protocol/job-rules.ts';
import { failureVerdict } from '../../node/core/job/retry.ts';
import { SeededRandom } from '../../node/core/random.ts';

const fixed = (value: number) => ({ next: () => value, int: (n: number) => Math.floor(value * n) });

describe('retry policy', () => {
  const policy: RetryPolicy = { attemptsMax: 5, backoffBaseMs: 100, backoffMaxMs: 1_000, jitter: 0.5 };

  it('doubles from the base, caps at the maximum', () => {
    const noJitter = { ...policy, jitter: 0 };
    expect([1, 2, 3, 4, 5, 10].map((n) => backoffDelayMs(noJitter, n, fixed(0)))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('jitter draws from the environment random source within [(1-j)·d, d]', () => {
    expect(backoffDelayMs(policy, 3, fixed(0))).toBe(200);
    expect(backoffDelayMs(policy, 3, fixed(0.999999))).toBe(400);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.integer(), (attempt, seed) => {
        const d = backoffDelayMs(policy, attempt, new SeededRandom(seed));
        const raw = Math.min(1_000, 100 * 2 ** (attempt - 1));
        expect(d).toBeGreaterThanOrEqual(Math.round(raw / 2) - 1);
        expect(d).toBeLessThanOrEqual(raw);
      }),
    );
  });

  it('retries until attempts are exhausted; non-retryable errors are dead at once', () => {
    const random = new SeededRandom(1);
    expect(failureVerdict(policy, 1, true, random).kind).toBe('retry');
    expect(failureVerdict(policy, 4, true, random).kind).toBe('retry');
    expect(failureVerdict(policy, 5, true, random)).toEqual({ kind: 'dead', reason: 'attempts_exhausted' });
    expect(failureVerdict(policy, 1, false, random)).toEqual({ kind: 'dead', reason: 'non_retryable' });
  });

  it('validates policies from the outside', () => {
    expect(retryPolicyProblem(DEFAULT_RETRY_POLICY)).toBeNull();
    expect(retryPolicyProblem({ ...policy, attemptsMax: 0 })).toMatch(/attemptsMax/);
    expect(retryPolicyProblem({ ...policy, attemptsMax: 1.5 })).toMatch(/attemptsMax/);
    expect(retryPolicyProblem({ ...policy, backoffMaxMs: 50 })).toMatch(/backoffMaxMs/);
    expect(retryPolicyProblem({ ...policy, jitter: 2 })).toMatch(/jitter/);
    expect(retryPolicyProblem({ ...policy, jitter: Number.NaN })).toMatch(/jitter/);
  });
});
