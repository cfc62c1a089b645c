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
const START_TIMEOUT_MS = 60_000;

/** A node process that has started, whether or not it got its shards. */
export interface StartedNode {
  /** Its libp2p peer id, which a restart in the same data dir keeps. */
  readonly nodeId: string;
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** Everything the node wrote to stderr (its JSON log) so far. */
  log(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A node process that serves the shards its ring gives it. */
export interface SpawnedNode extends StartedNode {
  readonly url: string;
  /** Its operators' HTTP listener (/metrics, /healthz, /readyz), when started with `httpPort`. */
  readonly httpUrl: string | null;
  /** Its full multiaddr, for another node's --join. */
  readonly peerAddress: string;
}

export interface SpawnNodeOptions {
  databaseUrl: string;
  dataDir?: string;
  shards?: number;
  port?: number;
  /** Multiaddrs of nodes to join (--join). */
  join?: string[];
  clusterKeyFile?: string;
  insecureDevCluster?: boolean;
  env?: Record<string, string>;
  logLevel?: string;
  leaseMs?: number;
  /** Opens the operators' HTTP listener on this port (0: any free one). */
  httpPort?: number;
}

/** Starts a node and waits until it is ready. */
export async function spawnNode(options: SpawnNodeOptions): Promise<SpawnedNode> {
  const node = launch(options);
  const [, nodeId, url, httpUrl, peerAddress] = await node.waitFor('ready', 'stdout', /node (\S+) ready at (ws:\/\/\S+)[^\n]*?(?:metrics and health at (http:\/\/[^)\s]+))?\)?\n.*--join (\S+)\n/);
  return { ...node.handle(nodeId!), url: url!, httpUrl: httpUrl ?? null, peerAddress: peerAddress! };
}

/** Starts a node and waits only until it is running and waiting for shards: for a node that
 * is not expected to get any. */
export async function spawnStartedNode(options: SpawnNodeOptions): Promise<StartedNode> {
  const node = launch(options);
  const [, nodeId] = await node.waitFor('started', 'stderr', /node (\S+) waiting for its shards/);
  return node.handle(nodeId!);
}

function launch(options: SpawnNodeOptions) {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'kairos-node-'));
  const args = [KAIROS_BIN, 'start', '--data-dir', dataDir, '--port', String(options.port ?? 0), '--shards', String(options.shards ?? 16)];
  for (const addr of options.join ?? []) args.push('--join', addr);
  if (options.clusterKeyFile !== undefined) args.push('--cluster-key', options.clusterKeyFile);
  if (options.insecureDevCluster === true) args.push('--insecure-dev-cluster');
  if (options.leaseMs !== undefined) args.push('--lease-ms', String(options.leaseMs));
  if (options.httpPort !== undefined) args.push('--http-port', String(options.httpPort));
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
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    /** Resolves with the match once the stream's output so far matches `pattern`. */
    waitFor(what: string, stream: keyof typeof output, pattern: RegExp): Promise<RegExpExecArray> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          // Nobody holds a handle to it to stop it later.
          child.kill('SIGKILL');
          reject(new Error(`node not ${what} in ${START_TIMEOUT_MS} ms:\n${output.stderr}`));
        }, START_TIMEOUT_MS);
        const check = () => {
          const match = pattern.exec(output[stream]);
          if (match === null) return;
          clearTimeout(timer);
          child[stream]!.off('data', check);
          resolve(match);
        };
        child[stream]!.on('data', check);
        check();
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`node exited with ${code} before it was ${what}:\n${output.stderr}`));
        });
      });
    },
    handle(nodeId: string): StartedNode {
      return {
        nodeId,
        child,
        dataDir,
        log: () => output.stderr,
        kill: async (signal = 'SIGTERM') => {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          child.kill(signal);
          return exited;
        },
      };
    },
  };
}
