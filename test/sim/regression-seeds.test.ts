// Seeds that once failed stay in the suite forever (test/seeds/regressions.txt).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { failureLine, runSeed } from './sim-support.ts';

const seeds = readFileSync(join(import.meta.dirname, '../seeds/regressions.txt'), 'utf8')
  .split('\n')
  .map((line) => line.replace(/#.*/, '').trim())
  .filter((line) => line !== '')
  .map(Number);

describe('regression seeds', () => {
  it('has seeds to rerun', () => expect(seeds.length).toBeGreaterThan(0));
  for (const seed of seeds) {
    it(`seed ${seed}`, async () => {
      const result = await runSeed(seed);
      expect(result.ok, failureLine(result)).toBe(true);
    }, 120_000);
  }
});
