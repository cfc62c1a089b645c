// The determinism guard's scanner. Actor code (node/core/) must reach the world only through
// the environment, or the simulator cannot replay it. This finds the ways it could cheat:
// ambient clocks, randomness, timers, and imports of I/O modules or of code outside the
// deterministic core.

import { dirname, relative, resolve } from 'node:path';

export interface Violation {
  file: string;
  line: number;
  rule: string;
  text: string;
}

const BANNED_GLOBALS: Array<[rule: string, pattern: RegExp]> = [
  ['Date', /\bDate\b/],
  ['Math.random', /\bMath\s*\.\s*random\b/],
  ['setTimeout', /\bsetTimeout\b/],
  ['setInterval', /\bsetInterval\b/],
  ['setImmediate', /\bsetImmediate\b/],
  ['queueMicrotask', /\bqueueMicrotask\b/],
  ['performance', /\bperformance\b/],
  ['crypto', /\bcrypto\b/],
  ['process', /\bprocess\s*\./],
  ['require', /\brequire\s*\(/],
];

const IMPORT_PATTERN = /(?:\bimport\b[^'"`;]*?\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\bexport\b[^'"`;]*?\bfrom\s*)['"`]([^'"`]+)['"`]/g;

/** Removes comments (which may name banned APIs to explain why they are banned) while keeping
 * line numbers. String contents stay: a banned name in a string is suspicious enough. */
export function stripComments(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, (block) => block.replace(/[^\n]/g, ' '))
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, (_match, before: string) => before);
}

/**
 * @param file path of the file (used to resolve relative imports)
 * @param allowedRoots absolute directories that relative imports may resolve into
 */
export function scanSource(file: string, source: string, allowedRoots: string[]): Violation[] {
  const violations: Violation[] = [];
  const lines = stripComments(source).split('\n');
  lines.forEach((text, index) => {
    for (const [rule, pattern] of BANNED_GLOBALS) {
      if (pattern.test(text)) violations.push({ file, line: index + 1, rule, text: text.trim() });
    }
    for (const match of text.matchAll(IMPORT_PATTERN)) {
      const specifier = match[1]!;
      const problem = importProblem(file, specifier, allowedRoots);
      if (problem !== null) violations.push({ file, line: index + 1, rule: problem, text: text.trim() });
    }
  });
  return violations;
}

function importProblem(file: string, specifier: string, allowedRoots: string[]): string | null {
  if (!specifier.startsWith('.')) return `import of '${specifier}' (only relative imports of the core and protocol)`;
  const target = resolve(dirname(file), specifier);
  const inside = allowedRoots.some((root) => !relative(root, target).startsWith('..'));
  return inside ? null : `import of '${specifier}' outside the deterministic core`;
}
