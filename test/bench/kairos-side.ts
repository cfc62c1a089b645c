// Kairos set up for the benchmark: `kairos start` node processes on the benchmark's database
// (a cluster when nodes > 1, measured once every node serves shards), each with the
// round-trip counter preloaded; the producer gets a client per node and worker i connects to
// node i mod nodes.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { startChildNode, type ChildNode } from '../../node/cli/child-node.ts';
import { query } from './bench-database.ts';
import { onInterrupt } from './on-interrupt.ts';
import { roundTripCounter, type RoundTripCounter } from './pg-stats.ts';
import { log, measureShape, profileFlags, ROUND_TRIPS_PRELOAD, shapeOf, type BenchLine, type ShapeArgs, type SystemUnderTest } from './shape.ts';

const TOKEN = 'bench-token-0001';
const QUEUE = 'bench';

/** Kairos measured in the shape on the database `url` (of a server the caller holds). */
export async function benchKairos(url: string, args: ShapeArgs): Promise<BenchLine> {
  const roundTrips = roundTripCounter();
  const kairos = await startKairos({ url, nodes: Number(args.nodes), concurrency: Number(args.concurrency), roundTrips, log });
  try {
    return await measureShape(kairos, { url, roundTrips, log, ...shapeOf(args) });
  } finally {
    await kairos.stop();
    roundTrips.close();
  }
}

export interface KairosOptions {
  url: string;
  nodes: number;
  /** Handler slots per worker process. */
  concurrency: number;
  roundTrips: RoundTripCounter;
  log(line: string): void;
}

export async function startKairos(options: KairosOptions): Promise<SystemUnderTest & { stop(): Promise<void> }> {
  const tempDir = mkdtempSync(join(tmpdir(), 'kairos-bench-'));
  const nodes: ChildNode[] = [];
  const stop = async () => {
    forget();
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(tempDir, { recursive: true, force: true });
  };
  const forget = onInterrupt(stop);
  try {
    const keyFile = join(tempDir, 'cluster.key');
    await writeClusterKeyFile(keyFile);
    const startNode = (i: number, seeds: string[]) =>
      startChildNode({
        args: ['--port', '0', '--data-dir', join(tempDir, `node-${i}`), '--log-level', 'warn', '--cluster-key', keyFile, ...seeds.flatMap((a) => ['--join', a])],
        env: { DATABASE_URL: options.url, KAIROS_TOKENS: `${TOKEN}=bench`, ...options.roundTrips.env },
        nodeOptions: ['--import', ROUND_TRIPS_PRELOAD, ...profileFlags()],
      });
    nodes.push(await startNode(0, []));
    // Settled, not Promise.all: a node that fails must not leave another's failure unhandled,
    // and every node that did start must be stopped.
    const joined = await Promise.allSettled(Array.from({ length: options.nodes - 1 }, (_, i) => startNode(i + 1, [nodes[0]!.peerAddress])));
    for (const result of joined) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = joined.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    if (options.nodes > 1) await balanced(options.url, nodes);
    options.log(`${options.nodes} Kairos node(s) serving`);
  } catch (error) {
    await stop();
    throw error;
  }
  const urls = nodes.map((node) => node.url);
  return {
    name: 'kairos',
    adapterModule: join(import.meta.dirname, 'kairos-client.ts'),
    producerOptions: { urls, token: TOKEN, queue: QUEUE },
    workerOptions: (i) => ({ urls: [urls[i % urls.length]], token: TOKEN, queue: QUEUE, concurrency: options.concurrency }),
    nodePids: nodes.map((node) => node.child.pid!),
    // node/store/pg-commit.ts: the insert (RETURNING the ids inserted) and the update
    // (RETURNING the ids updated); the shard lock beside them writes no job.
    jobWrites: /^\s*(WITH input AS|UPDATE jobs)/,
    async verify(url, jobs) {
      const rows = await query<{ status: string; n: string }>(url, 'SELECT status, count(*) AS n FROM jobs GROUP BY status');
      const counts = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
      if (rows.length !== 1 || counts.succeeded !== jobs) throw new Error(`expected ${jobs} succeeded jobs, found ${JSON.stringify(counts)}`);
    },
    figures: () => ({
      nodes: options.nodes,
      nodePeakRssMb: Math.max(...nodes.map((node) => peakRssMb(node.child.pid!))),
      slotsPerWorker: options.concurrency,
    }),
    stop,
  };
}

/** Waits until every node serves shards: the ring has settled. */
async function balanced(url: string, all: ChildNode[]): Promise<void> {
  for (;;) {
    const rows = await query<{ owner: string | null }>(url, 'SELECT DISTINCT owner FROM shard_leases');
    const owners = new Set(rows.map((r) => r.owner));
    if (!owners.has(null) && all.every((n) => owners.has(n.nodeId))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024);
}
