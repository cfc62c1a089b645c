// Real node processes for integration tests: `kairos start` in a child process on a database
// of the test's own, on a free port. Tests kill them (-9 included) and start them again.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
export const KAIROS_BIN = join(ROOT, 'bin/kairos.mjs');
export const TEST_TOKEN = 'test-token-tenant-a';
export const OTHER_TOKEN = 'test-token-tenant-b';
export const TEST_TOKENS = `${TEST_TOKEN}=tenant-a,${OTHER_TOKEN}=tenant-b`;

export interface SpawnedNode {
  readonly url: string;
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** Everything the node wrote to stderr (its JSON log) so far. */
  log(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SpawnNodeOptions {
  databaseUrl: string;
  dataDir?: string;
  shards?: number;
  port?: number;
  nodeId?: string;
  env?: Record<string, string>;
  logLevel?: string;
  leaseMs?: number;
}

export async function spawnNode(options: SpawnNodeOptions): Promise<SpawnedNode> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'kairos-node-'));
  const args = [KAIROS_BIN, 'start', '--data-dir', dataDir, '--port', String(options.port ?? 0), '--shards', String(options.shards ?? 16)];
  if (options.nodeId !== undefined) args.push('--node-id', options.nodeId);
  if (options.leaseMs !== undefined) args.push('--lease-ms', String(options.leaseMs));
  const child = spawn(process.execPath, args, {
    env: {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      KAIROS_TOKENS: TEST_TOKENS,
      KAIROS_LOG_LEVEL: options.logLevel ?? 'warn',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in 60 s:\n${stderr}`)), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /ready at (ws:\/\/\S+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before it was ready:\n${stderr}`));
    });
  });
  return {
    url,
    child,
    dataDir,
    log: () => stderr,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
