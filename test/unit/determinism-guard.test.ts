// The determinism guard: actor code under node/core/ may not read the system clock, draw
// ambient randomness, start timers, or import I/O. The simulator's replay depends on it.

import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanSource, stripComments } from '../support/determinism-scan.ts';

const root = resolve(import.meta.dirname, '../..');
const core = join(root, 'node/core');
const allowedRoots = [core, join(root, 'protocol')];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('determinism guard', () => {
  it('finds no ambient clock, randomness, timer or I/O in node/core', () => {
    const files = sourceFiles(core);
    expect(files.length).toBeGreaterThan(5);
    const violations = files.flatMap((file) => scanSource(file, readFileSync(file, 'utf8'), allowedRoots));
    expect(violations).toEqual([]);
  });

  it('bites: reports every planted violation in the fixture', () => {
    const fixture = readFileSync(join(root, 'test/fixtures/determinism/violations.txt'), 'utf8');
    const planted = fixture.split('\n').filter((line) => line.includes(' # '));
    expect(planted.length).toBeGreaterThanOrEqual(20);
    for (const line of planted) {
      const [code, rule] = line.split(' # ') as [string, string];
      const found = scanSource(join(core, 'fixture.ts'), code, allowedRoots);
      expect(found.map((v) => v.rule).join(' | '), code).toContain(rule);
    }
  });

  it('allows the environment and the core to be imported, and ignores comments', () => {
    const clean = [
      "import type { Env } from '../env.ts';",
      "import { transition } from './job/transition.ts';",
      '// Date.now() would break replay, so we read env.clock instead.',
      '/* setTimeout is banned: use ctx.startTimer */ const x = 1;',
    ].join('\n');
    expect(scanSource(join(core, 'actor/x.ts'), clean, allowedRoots)).toEqual([]);
    expect(stripComments('a // Date\nb')).toBe('a \nb');
  });
});
