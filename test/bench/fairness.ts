// `npm run bench:fairness`: is ready work served wherever it lives? Three node processes on
// DATABASE_URL (else the embedded PostgreSQL), workers attached to the first two only, and a
// producer process submitting to all three at a steady rate near the workers' capacity. Jobs
// hash to shards on every node, so a third of them are owned by the node with no worker of its
// own; workers elsewhere reach them only through their nodes' offers. Prints, per owning node,
// the wait from submission to completion (p50, p99, max: it includes the handler's sleep), and
// the ratio of the worker-less node's p99 to the worst other node's, then one JSON line.
//
//   npm run bench:fairness [-- --seconds 30 --rate 500 --shards 128 --concurrency 8 --sleep-ms 20]

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { chooseDatabase } from '../../node/store/database-url.ts';
import { freePort } from '../../node/store/embedded.ts';
import { migrate } from '../../node/store/migrate.ts';
import { databaseUrl } from '../support/db-url.ts';
import { spawnCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { query } from './bench-database.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const QUEUE = 'fairness';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    rate: { type: 'string', default: '500' },
    shards: { type: 'string', default: '128' },
    concurrency: { type: 'string', default: '8' },
    'sleep-ms': { type: 'string', default: '20' },
  },
});
const seconds = Number(values.seconds);
const rate = Number(values.rate);
const concurrency = Number(values.concurrency);
const sleepMs = Number(values['sleep-ms']);
const log = (line: string) => process.stderr.write(`fairness: ${line}\n`);

const tempDir = mkdtempSync(join(tmpdir(), 'kairos-fairness-'));
chmodSync(tempDir, 0o755); // the embedded server runs as the postgres user when we are root
const database = await chooseDatabase({ dataDir: join(tempDir, 'pg'), port: await freePort() });
const dbName = `kairos_fairness_${Date.now().toString(36)}`;
await query(database.connectionString, `CREATE DATABASE ${dbName}`);
const url = databaseUrl(database.connectionString, dbName);
await migrate(url);
const cluster = await spawnCluster({ databaseUrl: url, size: 3, shards: Number(values.shards) });
const workers: SpawnedWorker[] = [];

try {
  const [n0, n1, n2] = cluster.nodes as [SpawnedNode, SpawnedNode, SpawnedNode];
  const names = new Map([
    [n0.nodeId, 'n0 (a worker)'],
    [n1.nodeId, 'n1 (a worker)'],
    [n2.nodeId, 'n2 (no worker)'],
  ]);
  await until('every node owns shards', 60_000, async () => {
    const owners = new Set((await query<{ owner: string | null }>(url, 'SELECT owner FROM shard_leases')).map((r) => r.owner));
    return cluster.nodes.every((n) => owners.has(n.nodeId));
  });
  for (const node of [n0, n1]) workers.push(await spawnWorker({ url: node.url, token: TEST_TOKEN, queue: QUEUE, concurrency, behaviour: 'slow', sleepMs }));
  const capacity = Math.round((2 * concurrency * 1000) / sleepMs);
  log(`3 nodes, ${values.shards} shards; workers on n0 and n1 only (${concurrency} slots each, ${sleepMs} ms a job: at most ${capacity} jobs/s); ${rate} submissions/s for ${seconds} s`);

  const producer = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/chaos/producer.ts'), '--urls', cluster.nodes.map((n) => n.url).join(','), '--token', TEST_TOKEN, '--queue', QUEUE, '--rate', String(rate), '--prefix', 'f'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((done) => producer.once('exit', done));
  await sleep(seconds * 1000);
  producer.kill('SIGTERM');
  await exited;
  await until('every job finished', 120_000, async () => {
    const [row] = await query<{ n: string }>(url, "SELECT count(*) AS n FROM jobs WHERE status NOT IN ('succeeded', 'dead', 'cancelled')");
    return Number(row!.n) === 0;
  });

  // Owners did not change during the run (no faults): the owner now is the owner then.
  const rows = await query<{ owner: string; jobs: string; p50: number; p99: number; max: number }>(
    url,
    `SELECT l.owner, count(*) AS jobs,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
     FROM (SELECT shard, extract(epoch FROM finished_at - created_at) * 1000 AS ms FROM jobs WHERE status = 'succeeded') j
     JOIN shard_leases l ON l.id = j.shard
     GROUP BY l.owner`,
  );
  const byNode = rows
    .map((r) => ({ node: names.get(r.owner) ?? r.owner, jobs: Number(r.jobs), p50Ms: Math.round(r.p50), p99Ms: Math.round(r.p99), maxMs: Math.round(r.max) }))
    .sort((a, b) => (a.node < b.node ? -1 : 1));
  for (const n of byNode) log(`${n.node}: ${n.jobs} jobs, submission to completion p50 ${n.p50Ms} ms, p99 ${n.p99Ms} ms, max ${n.maxMs} ms`);
  const without = byNode.find((n) => n.node.startsWith('n2'));
  const worstWith = Math.max(...byNode.filter((n) => !n.node.startsWith('n2')).map((n) => n.p99Ms));
  const p99Ratio = without === undefined ? null : Math.round((without.p99Ms / worstWith) * 100) / 100;
  log(`p99 of the node without a worker / worst p99 of the nodes with one: ${p99Ratio}`);
  process.stdout.write(`${JSON.stringify({ seconds, rate, capacity, shards: Number(values.shards), byNode, p99Ratio })}\n`);
} finally {
  for (const w of workers) await w.kill('SIGKILL');
  await cluster.stop();
  await database.stop();
}

async function until(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}
