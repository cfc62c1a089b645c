// The checkers bite: each planted bug is caught, with a reproducible seed, within a bounded
// number of seeds. A simulator whose checkers could not see these bugs would pass anything.
import { describe, expect, it } from 'vitest';
import { PLANTED_BUGS, type PlantedBug } from '../../node/core/test-hooks.ts';
import { MODEL_BUGS, type ModelBug } from '../../sim/locking-store.ts';
import type { SimOptions } from '../../sim/simulation.ts';
import { runSeed } from './sim-support.ts';

const SEEDS_MAX = 60;

/** Bugs that one checker is there to catch: it must be the one that does. */
const CAUGHT_BY: Partial<Record<PlantedBug | ModelBug, readonly string[]>> = {
  ignore_lease_holder: ['only its lease holder settles a lease', 'no hostile request changes a job'],
  keep_lost_worker_leases: ["a closed worker connection's leases end at once"],
  // The pre-0003 renewal: it stalls commits behind it, and deadlocks with them.
  renewal_locks_shards: ['commits never wait for shard lease renewal', 'no deadlocks between store transactions'],
  tick_key_per_owner: ['one job per tick'],
  drop_late_ticks: ['every tick runs after healing'],
  breaker_ignore_gate: ['no lease of a queue with an open breaker except its probes', 'attempts are not spent while a breaker is open'],
  breaker_never_probe: ['every breaker closes after the downstream heals'],
};

/** Runs seeds until one fails; checks that the same seed fails the same way again. */
async function firstCaught(options: Partial<SimOptions>): Promise<{ seed: number; invariant: string } | null> {
  for (let seed = 1; seed <= SEEDS_MAX; seed++) {
    const result = await runSeed(seed, options);
    if (result.ok) continue;
    const invariant = result.violation!.invariant;
    const again = await runSeed(seed, options);
    expect(again.violation?.invariant).toBe(invariant);
    return { seed, invariant };
  }
  return null;
}

describe('planted bugs are caught', () => {
  for (const bug of [...PLANTED_BUGS, ...MODEL_BUGS]) {
    it(`${bug} within ${SEEDS_MAX} seeds, reproducibly`, async () => {
      const caught = await firstCaught({ planted: [bug] });
      expect(caught, `${bug} was never caught`).not.toBeNull();
      const by = CAUGHT_BY[bug];
      if (by !== undefined) expect(by).toContain(caught!.invariant);
    }, 300_000);
  }

  it(`a node that keeps silent connections open past the hello deadline, within ${SEEDS_MAX} seeds`, async () => {
    const caught = await firstCaught({ nodeHelloDeadlineMs: 3_600_000 });
    expect(caught?.invariant).toBe('silent connections are closed by the hello deadline');
  }, 300_000);
});
