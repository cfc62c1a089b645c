// `npm run bench`: node processes (one by default; `--nodes 3` for a cluster) on DATABASE_URL,
// else the embedded PostgreSQL (durable settings), worker processes spread over the nodes, and
// this process as the producer (one client per node), all through the SDK. Prints one JSON
// line:
// - submitPerSec: jobs acknowledged (committed) per second while submitting 50,000 no-op jobs;
// - e2ePerSec: those jobs from the first submit call to the last completion committed;
// - startLatencyP50Ms / P99Ms: submit call to handler start, for 1,000 jobs paced at 200/s;
// - nodePeakRssMb: the largest node process's peak resident memory.
//
//   npm run bench [-- --nodes N --jobs N --workers N --concurrency N]
//   KAIROS_BENCH_PROFILE=DIR npm run bench   (also writes the node's CPU profile to DIR)

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { connect, type KairosClient } from '../../protocol/sdk/index.ts';
import { startChildNode, type ChildNode } from '../../node/cli/child-node.ts';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { chooseDatabase } from '../../node/store/database-url.ts';
import { freePort } from '../../node/store/embedded.ts';
import { databaseUrl } from '../support/db-url.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const TOKEN = 'bench-token-0001';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1' },
    jobs: { type: 'string', default: '50000' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '128' },
    'latency-jobs': { type: 'string', default: '1000' },
  },
});
const jobs = Number(values.jobs);
const nodeCount = Number(values.nodes);
const latencyJobs = Number(values['latency-jobs']);
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

const tempDir = mkdtempSync(join(tmpdir(), 'kairos-bench-'));
// mkdtemp makes it private; the embedded server runs as the postgres user when we are root.
chmodSync(tempDir, 0o755);
const database = await chooseDatabase({ dataDir: join(tempDir, 'pg'), port: await freePort() });
const dbName = `kairos_bench_${Date.now().toString(36)}`;
await adminQuery(database.connectionString, `CREATE DATABASE ${dbName}`);
const url = databaseUrl(database.connectionString, dbName);
const children: ChildProcess[] = [];
const nodes: ChildNode[] = [];

try {
  log(`${nodeCount} node(s) on ${database.embedded ? 'the embedded PostgreSQL' : 'DATABASE_URL'}`);
  const keyFile = join(tempDir, 'cluster.key');
  await writeClusterKeyFile(keyFile);
  const startNode = (i: number, seeds: string[]) =>
    startChildNode({
      args: ['--port', '0', '--data-dir', join(tempDir, `node-${i}`), '--log-level', 'warn', '--cluster-key', keyFile, ...seeds.flatMap((a) => ['--join', a])],
      env: { DATABASE_URL: url, KAIROS_TOKENS: `${TOKEN}=bench` },
      nodeOptions: process.env.KAIROS_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KAIROS_BENCH_PROFILE}`] : [],
    });
  nodes.push(await startNode(0, []));
  nodes.push(...(await Promise.all(Array.from({ length: nodeCount - 1 }, (_, i) => startNode(i + 1, [nodes[0]!.peerAddress])))));
  if (nodeCount > 1) await balanced(url, nodes);
  const workers = await Promise.all(
    Array.from({ length: Number(values.workers) }, (_, i) =>
      startChild(
        ['--import', 'tsx', join(ROOT, 'test/bench/bench-worker.ts'), '--url', nodes[i % nodeCount]!.url, '--token', TOKEN, '--queue', 'bench', '--concurrency', values.concurrency!],
        {},
        /"ready":true/,
      ),
    ),
  );
  const clients = await Promise.all(
    nodes.map((node) => connect({ url: node.url, token: TOKEN, client: 'bench-producer', onWarning: () => {}, requestTimeoutMs: 120_000 })),
  );
  const client = clients[0]!;

  // Throughput: submit everything as fast as the node acknowledges it.
  log(`throughput: ${jobs} no-op jobs through ${nodeCount} node(s), ${workers.length} worker processes × ${values.concurrency} slots`);
  const firstSubmitMs = Date.now();
  const results = (await Promise.all(clients.map((c, i) => submitShare(c, i)))).flat();
  const lastAckMs = Date.now();
  const refused = results.filter((r) => r instanceof Error).length;
  if (refused > 0) throw new Error(`${refused} submissions refused`);
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  for (;;) {
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'");
    if (Number(rows[0]!.n) >= jobs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // The node stamps finished_at when it decides a completion; it commits within milliseconds.
  const { rows } = await db.query<{ last: number }>("SELECT (extract(epoch FROM max(finished_at)) * 1000)::float8 AS last FROM jobs WHERE status = 'succeeded'");
  const lastCompletionMs = rows[0]!.last;

  // Latency: jobs paced at 200/s on an otherwise idle node.
  log(`latency: ${latencyJobs} jobs paced at 200/s`);
  const encoder = new TextEncoder();
  const pending: Array<Promise<unknown>> = [];
  const pacedStart = performance.now();
  for (let i = 0; i < latencyJobs; i++) {
    const due = pacedStart + i * 5;
    while (performance.now() < due) await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    pending.push(client.submit({ queue: 'bench', payload: encoder.encode(`t:${process.hrtime.bigint()}`) }));
  }
  await Promise.all(pending);
  for (;;) {
    const { rows: done } = await db.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'");
    if (Number(done[0]!.n) >= jobs + latencyJobs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const latencies = (await Promise.all(workers.map((w) => w.report()))).flatMap((r) => (r as { latenciesMs: number[] }).latenciesMs).sort((a, b) => a - b);
  const peakRssMb = Math.max(...nodes.map((node) => peakRss(node.child.pid!)));
  await db.end();
  await Promise.all(clients.map((c) => c.close()));

  process.stdout.write(
    `${JSON.stringify({
      nodes: nodeCount,
      jobs,
      submitPerSec: Math.round(jobs / ((lastAckMs - firstSubmitMs) / 1000)),
      e2ePerSec: Math.round(jobs / ((lastCompletionMs - firstSubmitMs) / 1000)),
      startLatencyP50Ms: round2(percentile(latencies, 0.5)),
      startLatencyP99Ms: round2(percentile(latencies, 0.99)),
      nodePeakRssMb: peakRssMb,
      workers: workers.length,
      slotsPerWorker: Number(values.concurrency),
      postgres: database.embedded ? 'embedded' : 'DATABASE_URL',
    })}\n`,
  );
} finally {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(nodes.map((node) => node.stop()));
  await new Promise((r) => setTimeout(r, process.env.KAIROS_BENCH_PROFILE ? 3_000 : 500));
  await adminQuery(database.connectionString, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
  await database.stop();
}

/** Client `i`'s share of the jobs. */
function submitShare(client: KairosClient, i: number) {
  const share = Math.floor(jobs / nodeCount) + (i < jobs % nodeCount ? 1 : 0);
  const payload = new Uint8Array([0x6e]);
  return client.submitMany(Array.from({ length: share }, () => ({ queue: 'bench', payload })));
}

/** Waits until every node serves shards: the ring has settled. */
async function balanced(connectionString: string, all: ChildNode[]): Promise<void> {
  const db = new pg.Client({ connectionString });
  await db.connect();
  try {
    for (;;) {
      const { rows } = await db.query<{ owner: string | null }>('SELECT DISTINCT owner FROM shard_leases');
      const owners = new Set(rows.map((r) => r.owner));
      if (!owners.has(null) && all.every((n) => owners.has(n.nodeId))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await db.end();
  }
}

interface Child {
  child: ChildProcess;
  match: RegExpExecArray;
  /** Asks a bench worker for its totals. */
  report(): Promise<unknown>;
}

async function startChild(args: string[], env: Record<string, string>, ready: RegExp): Promise<Child> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const lines: string[] = [];
  let waiter: (() => void) | null = null;
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
    waiter?.();
  });
  const next = async (test: (line: string) => boolean): Promise<string> => {
    for (;;) {
      const line = lines.find(test);
      if (line !== undefined) {
        lines.splice(lines.indexOf(line), 1);
        return line;
      }
      if (child.exitCode !== null) throw new Error(`${args[1]} exited:\n${err}`);
      await new Promise<void>((r) => {
        waiter = r;
        setTimeout(r, 200);
      });
    }
  };
  const match = ready.exec(await next((line) => ready.test(line)))!;
  return {
    child,
    match,
    report: async () => {
      child.stdin!.write('report\n');
      return JSON.parse(await next((line) => line.startsWith('{"started"')));
    },
  };
}

function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

async function adminQuery(connectionString: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
