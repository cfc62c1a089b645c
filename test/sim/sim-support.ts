// Shared by the simulator's tests: run a seed with the defaults and describe a failure the way
// `npm run sim` would, so a failing test names the command that reproduces it.

import { DEFAULT_SIM_OPTIONS, runSimulation, type SimOptions, type SimResult } from '../../sim/simulation.ts';

export async function runSeed(seed: number, options: Partial<SimOptions> = {}): Promise<SimResult> {
  return runSimulation({ ...DEFAULT_SIM_OPTIONS, ...options, seed });
}

export function failureLine(result: SimResult): string {
  return `seed=${result.seed} FAIL ${result.violation?.message} (faults: ${result.plan}); reproduce: npm run sim -- --seed ${result.seed} --trace`;
}
