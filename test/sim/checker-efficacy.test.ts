// The checkers bite: each planted bug is caught, with a reproducible seed, within a bounded
// number of seeds. A simulator whose checkers could not see these bugs would pass anything.
import { describe, expect, it } from 'vitest';
import { PLANTED_BUGS } from '../../node/core/test-hooks.ts';
import { runSeed } from './sim-support.ts';

const SEEDS_MAX = 60;

describe('planted bugs are caught', () => {
  for (const bug of PLANTED_BUGS) {
    it(`${bug} within ${SEEDS_MAX} seeds, reproducibly`, async () => {
      let caught: number | null = null;
      let invariant = '';
      for (let seed = 1; seed <= SEEDS_MAX && caught === null; seed++) {
        const result = await runSeed(seed, { planted: [bug] });
        if (!result.ok) {
          caught = seed;
          invariant = result.violation!.invariant;
        }
      }
      expect(caught, `${bug} was never caught`).not.toBeNull();
      const again = await runSeed(caught!, { planted: [bug] });
      expect(again.violation?.invariant).toBe(invariant);
    }, 300_000);
  }
});
