// Kairos set up for the benchmark: `kairos start` node processes on the benchmark's database
// (a cluster when nodes > 1, measured once every node serves shards), each with the
// round-trip counter preloaded; the producer gets a client per node and worker i connects to
// node i mod nodes. Kairos's own options: --preload N fills the jobs table first
// (preload.ts), --drop-partition drops the oldest preloaded day during the throughput phase
// (drop-partition.ts); the line also gives the tables' bytes per job after the run
// (table-bytes.ts).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { startChildNode, type ChildNode } from '../../node/cli/child-node.ts';
import { query } from './bench-database.ts';
import { dropOldestDay } from './drop-partition.ts';
import { onInterrupt } from './on-interrupt.ts';
import { roundTripCounter, type RoundTripCounter } from './pg-stats.ts';
import { preloadJobs } from './preload.ts';
import { log, measureShape, profileFlags, ROUND_TRIPS_PRELOAD, shapeOf, type BenchLine, type ShapeArgs, type SystemUnderTest } from './shape.ts';
import { tableBytesPerJob } from './table-bytes.ts';

const TOKEN = 'bench-token-0001';
const TENANT = 'bench';
const QUEUE = 'bench';

/** Kairos's own options, beside the shape's (bench.ts and compare.ts take both). */
export const KAIROS_ARGS = {
  preload: { type: 'string', default: '0' },
  'drop-partition': { type: 'boolean', default: false },
} as const;

export type KairosArgs = ShapeArgs & { preload: string; 'drop-partition': boolean };

/** Kairos measured in the shape on the database `url` (of a server the caller holds). */
export async function benchKairos(url: string, args: KairosArgs): Promise<BenchLine> {
  const shape = shapeOf(args);
  const preload = Number(args.preload);
  if (!Number.isSafeInteger(preload) || preload < 0) throw new Error(`--preload takes a number of jobs, got ${args.preload}`);
  if (args['drop-partition'] && preload === 0) throw new Error('--drop-partition drops a preloaded day: it needs --preload');
  const roundTrips = roundTripCounter();
  const kairos = await startKairos({ url, nodes: Number(args.nodes), concurrency: Number(args.concurrency), roundTrips, log });
  try {
    const preloaded = preload === 0 ? null : await preloadJobs(url, { jobs: preload, tenant: TENANT, queue: QUEUE, payloadBytes: shape.payloadBytes, log });
    // Preloaded jobs still in the table: all of them, less the day --drop-partition drops.
    let kept = preload;
    const line = await measureShape(
      { ...kairos, verify: (verifyUrl, jobs) => kairos.verify(verifyUrl, jobs + kept) },
      {
        url,
        roundTrips,
        log,
        ...shape,
        alongside: preloaded !== null && args['drop-partition'] ? dropOldestDay(url, preloaded, (jobs) => (kept -= jobs), log) : undefined,
      },
    );
    // verify() has checked that the table holds exactly these.
    const jobsInTable = kept + shape.jobs + shape.latencyJobs;
    return { ...line, preloadedJobs: preload, ...(await tableBytesPerJob(url, jobsInTable)) };
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
        env: { DATABASE_URL: options.url, KAIROS_TOKENS: `${TOKEN}=${TENANT}`, ...options.roundTrips.env },
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
