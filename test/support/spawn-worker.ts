// Worker processes for integration tests (test/support/worker-main.ts in a child process), with
// their reports parsed as they arrive.

import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import type { WorkerEvent } from './worker-main.ts';

const ROOT = resolve(import.meta.dirname, '../..');

export interface SpawnedWorker {
  readonly child: ChildProcess;
  readonly events: WorkerEvent[];
  /** Resolves with the first event (already seen or still to come) that matches. */
  until(match: (event: WorkerEvent) => boolean, timeoutMs?: number): Promise<WorkerEvent>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface SpawnWorkerOptions {
  url: string;
  token: string;
  queue: string;
  concurrency?: number;
  behaviour?: string;
  sleepMs?: number;
}

export async function spawnWorker(options: SpawnWorkerOptions): Promise<SpawnedWorker> {
  const args = ['--import', 'tsx', join(ROOT, 'test/support/worker-main.ts'), '--url', options.url, '--token', options.token, '--queue', options.queue];
  args.push('--concurrency', String(options.concurrency ?? 1), '--behaviour', options.behaviour ?? 'noop', '--sleep-ms', String(options.sleepMs ?? 0));
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: WorkerEvent[] = [];
  let waiters: Array<() => void> = [];
  let buffered = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) if (line.trim() !== '') events.push(JSON.parse(line) as WorkerEvent);
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const worker: SpawnedWorker = {
    child,
    events,
    async until(match, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found !== undefined) return found;
        if (child.exitCode !== null) throw new Error(`worker exited (${child.exitCode}):\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`worker event not seen in ${timeoutMs} ms; last: ${JSON.stringify(events.slice(-3))}\n${stderr}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 200);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
  await worker.until((e) => e.event === 'ready');
  return worker;
}
