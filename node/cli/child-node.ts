// A `kairos start` node in a child process, as the demo and the benchmark run their clusters:
// started, waited for until it serves its shards, and stopped (SIGTERM: gracefully).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const BIN = packageBin(import.meta.dirname);
const READY = /node (\S+) ready at (ws:\/\/\S+)/;
const JOIN = /--join (\S+)\n/;
const STDERR_TAIL_CHARS = 16_384;

export interface ChildNode {
  readonly nodeId: string;
  readonly url: string;
  /** Its multiaddr, for another node's --join. */
  readonly peerAddress: string;
  readonly child: ChildProcess;
  /** What it wrote to stderr (its JSON log), kept only when asked for. */
  log(): string;
  /** SIGTERM (a graceful stop: it hands its shards off) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface ChildNodeOptions {
  /** Arguments after `kairos start`. */
  args: string[];
  env?: Record<string, string | undefined>;
  /** Options for node itself, before the script (`--cpu-prof`). */
  nodeOptions?: string[];
  keepLog?: boolean;
  timeoutMs?: number;
  /** In a process group of its own, so that Ctrl-C in the terminal reaches only the parent,
   * which stops its children in order. */
  ownProcessGroup?: boolean;
}

export function startChildNode(options: ChildNodeOptions): Promise<ChildNode> {
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), BIN, 'start', ...options.args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.ownProcessGroup === true,
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    // Without keepLog only the tail is kept, for the error message if the node dies.
    if (options.keepLog !== true && stderr.length > STDERR_TAIL_CHARS) stderr = stderr.slice(-STDERR_TAIL_CHARS);
  });
  // 'close', not 'exit': the output is all read by then.
  const exited = new Promise<void>((done) => child.once('close', () => done()));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      void stop('SIGKILL');
      reject(new Error(`kairos start did not become ready in ${(options.timeoutMs ?? 120_000) / 1000} s:\n${stderr}`));
    }, options.timeoutMs ?? 120_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const ready = READY.exec(stdout);
      const join = JOIN.exec(stdout);
      if (ready === null || join === null) return;
      clearTimeout(timer);
      resolvePromise({ nodeId: ready[1]!, url: ready[2]!, peerAddress: join[1]!, child, log: () => stderr, stop });
    });
    void exited.then(() => {
      clearTimeout(timer);
      const how = child.signalCode ?? `code ${child.exitCode}`;
      // The last line says why; it goes first, since the CLI shows one line of an error.
      const lines = stderr.trim().split('\n');
      reject(new Error(`kairos start exited (${how}) before it was ready: ${lines.at(-1)}\n${lines.slice(-10).join('\n')}`));
    });
  });
}

/** bin/kairos.mjs of this package, found upwards from `dir`: this file runs as node/cli in the
 * sources (the benchmark) and as dist/node/cli once compiled (the demo), at different depths. */
function packageBin(dir: string): string {
  for (let at = dir; ; at = dirname(at)) {
    const bin = join(at, 'bin', 'kairos.mjs');
    if (existsSync(bin)) return bin;
    if (at === dirname(at)) throw new Error(`bin/kairos.mjs not found above ${dir}`);
  }
}
