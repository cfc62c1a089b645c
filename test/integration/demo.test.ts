// The README's first command: `npm start` runs `kairos demo` from the compiled bin. A short demo
// of two nodes on the test server, stopping by itself, must start its nodes, run jobs and stop
// cleanly. It once could not start a node at all: the compiled demo looked for bin/kairos.mjs
// one directory too high. With --cells 2 it runs two clusters, each on an embedded server of its
// own, and must run jobs in both.

import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
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

/** Runs `kairos demo` with `args` in a data dir of its own; resolves with its exit code and stderr. */
async function demo(args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'kairos-demo-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  // The postgres OS user (the embedded servers', when the tests run as root) must reach it.
  await chmod(dataDir, 0o755);
  const port = await freePort();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [KAIROS_BIN, 'demo', ...args, '--seconds', '6', '--rate', '50', '--port', String(port), '--data-dir', dataDir],
      { env: { ...process.env, ...env }, timeout: 90_000 },
      (error, _stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stderr }),
    );
  });
}

it('kairos demo starts its nodes, runs jobs and stops by itself', async () => {
  const db: TestDatabase = await createTestDatabase();
  cleanups.push(() => db.drop());
  const { code, stderr } = await demo(['--nodes', '2'], { DATABASE_URL: db.url });
  expect(stderr).toMatch(/kairos demo: node \S+ at ws:\/\//);
  const summary = /kairos demo: (\d+) succeeded/.exec(stderr);
  expect(summary, stderr).not.toBeNull();
  expect(Number(summary![1])).toBeGreaterThan(0);
  expect(code).toBe(0);
});

it('kairos demo --cells 2 runs jobs in both cells and stops by itself', async () => {
  // Each cell's embedded server takes the next port after the first's.
  const { code, stderr } = await demo(['--cells', '2'], { KAIROS_PG_PORT: String(await freePort()) });
  expect(stderr).toMatch(/kairos demo: node \S+ at ws:\/\/\S+ in cell-2 \(tenant dev-2/);
  const summary = /kairos demo: cell-1 \(tenant dev\) (\d+) succeeded, \d+ dead; cell-2 \(tenant dev-2\) (\d+) succeeded/.exec(stderr);
  expect(summary, stderr).not.toBeNull();
  expect(Number(summary![1])).toBeGreaterThan(0);
  expect(Number(summary![2])).toBeGreaterThan(0);
  expect(code).toBe(0);
}, 90_000);
