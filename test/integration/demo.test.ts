// The README's first command: `npm start` runs `kairos demo` from the compiled bin. A short demo
// of two nodes on the test server, stopping by itself, must start its nodes, run jobs and stop
// cleanly. It once could not start a node at all: the compiled demo looked for bin/kairos.mjs
// one directory too high.

import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { freePort } from '../../node/store/embedded.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { KAIROS_BIN } from '../support/spawn-node.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('kairos demo starts its nodes, runs jobs and stops by itself', async () => {
  const db: TestDatabase = await createTestDatabase();
  cleanups.push(() => db.drop());
  const dataDir = await mkdtemp(join(tmpdir(), 'kairos-demo-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [KAIROS_BIN, 'demo', '--nodes', '2', '--seconds', '6', '--rate', '50', '--port', String(port), '--data-dir', dataDir],
      { env: { ...process.env, DATABASE_URL: db.url }, timeout: 90_000 },
      (error, _stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stderr }),
    );
  });
  expect(stderr).toMatch(/kairos demo: node \S+ at ws:\/\//);
  const summary = /kairos demo: (\d+) succeeded/.exec(stderr);
  expect(summary, stderr).not.toBeNull();
  expect(Number(summary![1])).toBeGreaterThan(0);
  expect(code).toBe(0);
});
