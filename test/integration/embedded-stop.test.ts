// Ctrl-C in a terminal signals the whole foreground process group. A node on the embedded
// PostgreSQL must then stop gracefully (owners commit what they hold, shards are released) and
// stop the server last: the server runs in a process group of its own, so the signal does not
// reach it first. When it shared the node's group it shut down at once, every owner failed on
// a terminated connection, and the node took 11 s to give up instead of about 1.

import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { freePort } from '../../node/store/embedded.ts';
import { KAIROS_BIN } from '../support/spawn-node.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('SIGINT to the process group of a node on the embedded PostgreSQL stops it gracefully, the server last', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kairos-embedded-stop-'));
  // Reachable by the postgres OS user when the tests run as root (CI).
  await chmod(dir, 0o755);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const { DATABASE_URL: _url, ...env } = process.env;
  const child = spawn(process.execPath, [KAIROS_BIN, 'start', '--data-dir', join(dir, 'node'), '--port', '0', '--pg-port', String(await freePort()), '--shards', '16'], {
    env: { ...env, KAIROS_LOG_LEVEL: 'warn' },
    detached: true, // a process group of its own, as a shell gives a foreground job
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
  });
  const deadline = Date.now() + 90_000;
  while (!output.stdout.includes('ready at') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(output.stdout, output.stderr).toContain('ready at');

  const t0 = Date.now();
  process.kill(-child.pid!, 'SIGINT');
  const code = await exited;
  const stopMs = Date.now() - t0;
  expect(code, output.stderr).toBe(0);
  expect(output.stdout).toContain('kairos: stopped');
  // No owner failed on a connection the server closed under it.
  expect(output.stderr).not.toMatch(/owner_exited.*"exit":"failed"|load_failed|administrator command/);
  expect(stopMs).toBeLessThan(8_000);
}, 120_000);
