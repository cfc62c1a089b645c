// Shared by the simulator's tests: run a seed with the defaults and describe a failure the way
// `npm run sim` would, so a failing test names the command that reproduces it.

import { describe, expect, it } from 'vitest';
import { DEFAULT_SIM_OPTIONS, runSimulation, type SimOptions, type SimResult } from '../../sim/simulation.ts';

export async function runSeed(seed: number, options: Partial<SimOptions> = {}): Promise<SimResult> {
  return runSimulation({ ...DEFAULT_SIM_OPTIONS, ...options, seed });
}

export function failureLine(result: SimResult): string {
  return `seed=${result.seed} FAIL ${result.violation?.message} (faults: ${result.plan}); reproduce: npm run sim -- --seed ${result.seed} --trace`;
}

/** A test that runs seeds `first..last` with every fault their plans pick, and lists every
 * failing seed with the command that reproduces it. */
export function describeSweep(first: number, last: number): void {
  describe(`simulator sweep, seeds ${first}..${last}`, () => {
    it('holds every invariant on every seed', async () => {
      const failures: string[] = [];
      for (let seed = first; seed <= last; seed++) {
        const result = await runSeed(seed);
        if (!result.ok) failures.push(failureLine(result));
      }
      expect(failures).toEqual([]);
    }, 600_000);
  });
}
