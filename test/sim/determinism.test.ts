// Same seed, same run: the trace hash of a seed does not change from one run to the next.
import { describe, expect, it } from 'vitest';
import { runSeed } from './sim-support.ts';

describe('simulator determinism', () => {
  it('replays every seed to the same trace hash', async () => {
    for (const seed of [3, 17, 42, 99, 123]) {
      const first = await runSeed(seed);
      const second = await runSeed(seed);
      expect(second.trace, `seed ${seed}`).toBe(first.trace);
      expect(second.events).toBe(first.events);
    }
  }, 300_000);

  it('different seeds take different paths', async () => {
    const hashes = new Set<string>();
    for (const seed of [1, 2, 3, 4]) hashes.add((await runSeed(seed)).trace);
    expect(hashes.size).toBe(4);
  }, 120_000);
});
