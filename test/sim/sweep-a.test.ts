// The CI sweep, first half: seeds 1..100 with every fault the seed's plan picks.
import { describe, expect, it } from 'vitest';
import { failureLine, runSeed } from './sim-support.ts';

describe('simulator sweep, seeds 1..100', () => {
  it('holds every invariant on every seed', async () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= 100; seed++) {
      const result = await runSeed(seed);
      if (!result.ok) failures.push(failureLine(result));
    }
    expect(failures).toEqual([]);
  }, 600_000);
});
