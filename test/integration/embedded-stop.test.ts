// A node on the embedded PostgreSQL, stopped the ways a terminal and a crash stop it.
// - Ctrl-C signals the whole foreground process group. The node must stop gracefully (owners
//   commit what they hold, shards are released) and stop the server last: the server runs in a
//   process group of its own, so the signal does not reach it first. When it shared the node's
//   group it shut down at once, every owner failed on a terminated connection, and the node
//   took 11 s to give up instead of about 1.
// - A signal during start-up stops the node once started, and leaves no server behind.
// - After a kill -9 the server is left running (nothing signals it); the next start on the same
//   data dir stops it and starts afresh, instead of failing on its lock file.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

interface Started {
  child: ChildProcess;
  output: { stdout: string; stderr: string };
  exited: Promise<number | null>;
}

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kairos-embedded-stop-'));
  // Reachable by the postgres OS user when the tests run as root (CI).
  await chmod(dir, 0o755);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'node');
}

/** `kairos start` on the embedded server, in a process group of its own, as a shell runs a job. */
function start(dir: string, pgPort: number): Started {
  const { DATABASE_URL: _url, ...env } = process.env;
  const child = spawn(process.execPath, [KAIROS_BIN, 'start', '--data-dir', dir, '--port', '0', '--pg-port', String(pgPort), '--shards', '16'], {
    env: { ...env, KAIROS_LOG_LEVEL: 'warn' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
  });
  return { child, output, exited };
}

async function until(what: string, started: Started, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (!done() && started.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(done(), `${what}:\n${started.output.stderr}`).toBe(true);
}

/** Whether a server runs in `dir` (its lock file names a live process). */
function serverRuns(dir: string): boolean {
  try {
    process.kill(Number(readFileSync(join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]), 0);
    return true;
  } catch {
    return false;
  }
}

it('SIGINT to the process group of a node on the embedded PostgreSQL stops it gracefully, the server last', async () => {
  const node = start(await dataDir(), await freePort());
  await until('ready', node, () => node.output.stdout.includes('ready at'));
  const t0 = Date.now();
  process.kill(-node.child.pid!, 'SIGINT');
  const code = await node.exited;
  const stopMs = Date.now() - t0;
  expect(code, node.output.stderr).toBe(0);
  expect(node.output.stdout).toContain('kairos: stopped');
  // No owner failed on a connection the server closed under it.
  expect(node.output.stderr).not.toMatch(/owner_exited.*"exit":"failed"|load_failed|administrator command/);
  expect(stopMs).toBeLessThan(8_000);
}, 120_000);

it('SIGINT while the node starts, twice, stops it once started and leaves no server running', async () => {
  const dir = await dataDir();
  const port = await freePort();
  const first = start(dir, port);
  await until('ready', first, () => first.output.stdout.includes('ready at'));
  process.kill(-first.child.pid!, 'SIGINT');
  await first.exited;
  // Initialised: the next start runs the server at once; interrupt it while it migrates.
  const node = start(dir, port);
  await until('migrating', node, () => node.output.stderr.includes('migrating the schema'));
  process.kill(-node.child.pid!, 'SIGINT');
  await new Promise((r) => setTimeout(r, 100));
  process.kill(-node.child.pid!, 'SIGINT');
  expect(await node.exited, node.output.stderr).toBe(0);
  expect(node.output.stdout).toContain('kairos: stopped');
  expect(serverRuns(dir)).toBe(false);
}, 120_000);

it('a node started again after a kill -9 stops the server its predecessor left, and serves', async () => {
  const dir = await dataDir();
  const port = await freePort();
  const first = start(dir, port);
  await until('ready', first, () => first.output.stdout.includes('ready at'));
  first.child.kill('SIGKILL');
  await first.exited;
  expect(serverRuns(dir)).toBe(true);
  const again = start(dir, port);
  await until('ready again', again, () => again.output.stdout.includes('ready at'));
  process.kill(-again.child.pid!, 'SIGINT');
  expect(await again.exited, again.output.stderr).toBe(0);
  expect(serverRuns(dir)).toBe(false);
}, 120_000);
