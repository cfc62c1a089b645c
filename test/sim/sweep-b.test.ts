// The CI sweep, second half: seeds 101..200 with every fault the seed's plan picks.
import { describe, expect, it } from 'vitest';
import { failureLine, runSeed } from './sim-support.ts';

describe('simulator sweep, seeds 101..200', () => {
  it('holds every invariant on every seed', async () => {
    const failures: string[] = [];
    for (let seed = 101; seed <= 200; seed++) {
      const result = await runSeed(seed);
      if (!result.ok) failures.push(failureLine(result));
    }
    expect(failures).toEqual([]);
  }, 600_000);
});
