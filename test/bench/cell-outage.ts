// `npm run bench:cells`: does one cell's database outage stay in its cell? Two cells, each one
// node on a PostgreSQL of its own, reading one cell map (README, Cells): cell A on DATABASE_URL
// (else the embedded PostgreSQL), cell B on an embedded server this benchmark starts, so that it
// can stop it. In each cell a producer (an SDK client here, --rate jobs a second in batches of
// 10, sent on the clock whatever the answers) and a worker process (test/support/worker-main.ts,
// 8 slots). After --before seconds B's PostgreSQL is stopped (fast shutdown) for --outage
// seconds, started again on its data, and the producers go on for --after seconds. Each run
// prints one line; a summary gives the ranges over the runs.
//
//   npm run bench:cells [-- --runs 3 --rate 100 --before 10 --outage 10 --after 10]
//
// - completed/s: jobs whose success was committed (finished_at) in each window, read from
//   each cell's database once every acknowledged job has succeeded;
// - B during: its producer's submissions answered with a refusal or not answered in time
//   (its client waits 2 s for an answer and retries for 1 s, as cells.test.ts's does, so the
//   outage shows as refusals rather than as submissions waiting it out);
// - lost: acknowledged jobs missing from their cell's database, or not succeeded 2 minutes
//   after the producers stopped; committed twice: from a trigger (terminal-commits.ts).
// "Other processes" is the CPU the rest of the machine used (PostgreSQL excluded): on a shared
// machine a large figure means a disturbed run.

import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../node/store/embedded.ts';
import { migrate } from '../../node/store/migrate.ts';
import { connect, KairosError, OutcomeUnknownError, RequestTimeoutError, type KairosClient } from '../../protocol/sdk/index.ts';
import { pollUntil } from '../support/poll.ts';
import { OTHER_TOKEN, TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';
import { openBenchServer, query } from './bench-database.ts';
import { cpuWindow, range } from './machine-share.ts';
import { onInterrupt } from './on-interrupt.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '100' },
    before: { type: 'string', default: '10' },
    outage: { type: 'string', default: '10' },
    after: { type: 'string', default: '10' },
  },
});
const runs = Number(values.runs);
const [beforeMs, outageMs, afterMs] = [values.before, values.outage, values.after].map((s) => Number(s) * 1000) as [number, number, number];
const BATCH = 10;
const QUEUE = 'steady';
const log = (line: string) => process.stderr.write(`bench:cells: ${line}\n`);

interface Producer {
  acked: Set<string>;
  /** When each acknowledged batch was sent and answered. */
  ackedBatches: Array<{ sentMs: number; atMs: number }>;
  refused: Array<{ atMs: number; why: string }>;
  stop(): Promise<void>;
}

/** Batches of BATCH on the clock, each answered whenever it is. */
function produce(client: KairosClient, tenant: string): Producer {
  const p: Producer = { acked: new Set(), ackedBatches: [], refused: [], stop: async () => {} };
  const inFlight = new Set<Promise<void>>();
  let producing = true;
  const loop = (async () => {
    const startMs = Date.now();
    for (let n = 0; producing; n++) {
      await sleep(startMs + (n * BATCH * 1000) / Number(values.rate) - Date.now());
      const specs = Array.from({ length: BATCH }, (_, i) => ({ queue: QUEUE, payload: new TextEncoder().encode(`${tenant}/${n}/${i}`) }));
      const sentMs = Date.now();
      const batch = client.submitMany(specs).then((results) => {
        const atMs = Date.now();
        for (const result of results) {
          if (result instanceof Error) p.refused.push({ atMs, why: whyRefused(result) });
          else p.acked.add(result.jobId);
        }
        if (results.some((r) => !(r instanceof Error))) p.ackedBatches.push({ sentMs, atMs });
      });
      inFlight.add(batch);
      void batch.finally(() => inFlight.delete(batch));
    }
  })();
  p.stop = async () => {
    producing = false;
    await loop;
    await Promise.all(inFlight);
  };
  return p;
}

async function run(server: Awaited<ReturnType<typeof openBenchServer>>) {
  const dir = await mkdtemp(join(tmpdir(), 'kairos-cells-bench-'));
  await chmod(dir, 0o755); // the embedded server runs as the postgres user when we are root
  const urlA = await server.createDatabase('kairos_cell_a');
  await migrate(urlA);
  const pgBPort = await freePort();
  const startPgB = () => startEmbeddedPostgres({ dataDir: join(dir, 'pg-b'), port: pgBPort });
  let pgB: EmbeddedPostgresHandle | null = await startPgB();
  const urlB = pgB.connectionString;
  const keyFile = join(dir, 'cluster.key');
  const mapFile = join(dir, 'cells.json');
  await writeClusterKeyFile(keyFile);
  const [portA, portB] = [await freePort(), await freePort()];
  const cells = { 'cell-a': { urls: [`ws://127.0.0.1:${portA}`] }, 'cell-b': { urls: [`ws://127.0.0.1:${portB}`] } };
  await writeFile(mapFile, JSON.stringify({ version: 1, default: 'cell-a', cells, tenants: { 'tenant-a': 'cell-a', 'tenant-b': 'cell-b' } }));
  const nodes: SpawnedNode[] = [];
  const workers: SpawnedWorker[] = [];
  const clients: KairosClient[] = [];
  const stopAll = async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await Promise.all(workers.map((w) => w.kill()));
    await Promise.all(nodes.map((n) => n.kill()));
    await pgB?.stop();
  };
  const forget = onInterrupt(stopAll);
  try {
    const cellNode = (cell: string, databaseUrl: string, port: number) =>
      spawnNode({ databaseUrl, port, clusterKeyFile: keyFile, env: { KAIROS_CELL: cell, KAIROS_CELL_MAP: mapFile } });
    nodes.push(...(await Promise.all([cellNode('cell-a', urlA, portA), cellNode('cell-b', urlB, portB)])));
    const [nodeA, nodeB] = nodes as [SpawnedNode, SpawnedNode];
    // After the nodes: node B's start made the schema of its database.
    await Promise.all([query(urlA, TERMINAL_LOG_SQL), query(urlB, TERMINAL_LOG_SQL)]);
    workers.push(...(await Promise.all([
      spawnWorker({ url: nodeA.url, token: TEST_TOKEN, queue: QUEUE, concurrency: 8 }),
      spawnWorker({ url: nodeB.url, token: OTHER_TOKEN, queue: QUEUE, concurrency: 8 }),
    ])));
    clients.push(
      await connect({ url: nodeA.url, token: TEST_TOKEN, client: 'bench-cells', onWarning: () => {} }),
      await connect({ url: nodeB.url, token: OTHER_TOKEN, client: 'bench-cells', onWarning: () => {}, requestTimeoutMs: 2_000, retry: { deadlineMs: 1_000 } }),
    );
    const cpu = await cpuWindow(urlA);
    const [a, b] = [produce(clients[0]!, 'a'), produce(clients[1]!, 'b')];
    await sleep(2_000); // past the start of the producers and workers
    const beforeFromMs = Date.now();
    await sleep(beforeMs);
    const downFromMs = Date.now();
    await pgB.stop();
    pgB = null;
    const stoppedMs = Date.now();
    await sleep(outageMs);
    pgB = await startPgB();
    const backMs = Date.now();
    await sleep(afterMs);
    await Promise.all([a.stop(), b.stop()]);
    const otherCpuSec = cpu.otherSec();

    // Every acknowledged job must be in its cell's database and succeed.
    const jobsOf = async (url: string) => query<{ id: string; status: string; finished: string | null }>(url,
      `SELECT id, status, (extract(epoch FROM finished_at) * 1000)::bigint AS finished FROM jobs WHERE queue = '${QUEUE}'`);
    const settled = async (url: string, acked: Set<string>) => {
      const rows = await jobsOf(url);
      const succeeded = rows.filter((r) => r.status === 'succeeded' && acked.has(r.id)).length;
      const present = rows.filter((r) => acked.has(r.id)).length;
      return { rows, lost: acked.size - present, unfinished: present - succeeded };
    };
    const [endA, endB] = await pollUntil('every acknowledged job to succeed', async () => {
      const both = await Promise.all([settled(urlA, a.acked), settled(urlB, b.acked)]);
      return both.every((s) => s.lost === 0 && s.unfinished === 0) ? both : null;
    }, 120_000, 500).catch(async () => Promise.all([settled(urlA, a.acked), settled(urlB, b.acked)]));
    const twice = (await query(urlA, COMMITTED_TWICE_SQL)).length + (await query(urlB, COMMITTED_TWICE_SQL)).length;

    const perSec = (rows: typeof endA.rows, fromMs: number, toMs: number) =>
      Math.round((rows.filter((r) => r.status === 'succeeded' && Number(r.finished) >= fromMs && Number(r.finished) < toMs).length * 1000) / (toMs - fromMs));
    const refusedDuring = b.refused.filter((r) => r.atMs >= downFromMs && r.atMs < backMs + 2_000);
    const whys = new Map<string, number>();
    for (const r of refusedDuring) whys.set(r.why, (whys.get(r.why) ?? 0) + 1);
    const firstAckBack = b.ackedBatches.map((x) => x.atMs).filter((ms) => ms >= backMs).sort((x, y) => x - y)[0];
    return {
      a: [perSec(endA.rows, beforeFromMs, downFromMs), perSec(endA.rows, downFromMs, backMs), perSec(endA.rows, backMs, backMs + afterMs)],
      b: [perSec(endB.rows, beforeFromMs, downFromMs), perSec(endB.rows, downFromMs, backMs), perSec(endB.rows, backMs, backMs + afterMs)],
      refusedA: a.refused.length,
      refusedB: refusedDuring.length,
      whys: [...whys].map(([why, n]) => `${why} ${n}`).join(', ') || 'none',
      // Nothing is acknowledged before it is committed, and B could commit nothing meanwhile.
      bAckedWhileDown: b.ackedBatches.filter((x) => x.sentMs >= stoppedMs && x.atMs < backMs).length,
      bAckAgainMs: firstAckBack === undefined ? null : firstAckBack - backMs,
      acked: [a.acked.size, b.acked.size],
      lost: endA.lost + endB.lost,
      unfinished: endA.unfinished + endB.unfinished,
      unacknowledgedInB: endB.rows.length - (b.acked.size - endB.lost),
      twice,
      otherCpuSec,
    };
  } finally {
    await stopAll();
    forget();
    await server.dropDatabase(urlA);
    await rm(dir, { recursive: true, force: true });
  }
}

/** What the SDK said about a submission it could not get acknowledged: the node's error code,
 * or `timeout` when no answer came (an unknown outcome says which of the two it was). */
function whyRefused(error: Error): string {
  const cause = error instanceof OutcomeUnknownError ? error.cause : error;
  if (cause instanceof KairosError) return cause.code;
  if (cause instanceof RequestTimeoutError) return 'timeout';
  return error.name;
}


const server = await openBenchServer({ preferDebian15: false, log });
const results: Array<Awaited<ReturnType<typeof run>>> = [];
try {
  log(`${runs} runs: two cells of one node, ${values.rate} jobs/s each in batches of ${BATCH}; B's PostgreSQL stopped after ${values.before} s for ${values.outage} s, then ${values.after} s more`);
  for (let i = 1; i <= runs; i++) {
    const r = await run(server);
    results.push(r);
    process.stdout.write(
      `run ${i}: A completed ${r.a.join(' / ')} jobs/s before / during / after B's outage (${r.refusedA} refused); ` +
        `B ${r.b.join(' / ')} jobs/s, during: ${r.refusedB} submissions refused or timed out (${r.whys}), ${r.bAckedWhileDown} batches acknowledged; ` +
        `B acknowledging again ${r.bAckAgainMs ?? 'never'} ms after its PostgreSQL was up; ` +
        `acknowledged A ${r.acked[0]}, B ${r.acked[1]}: lost ${r.lost}, not succeeded ${r.unfinished}, committed twice ${r.twice}; ` +
        `B jobs committed without an acknowledgement ${r.unacknowledgedInB}; other processes ${r.otherCpuSec} CPU-s\n`,
    );
  }
  const over = (pick: (r: (typeof results)[number]) => number) => range(results.map(pick));
  process.stdout.write(
    `over ${runs} runs: A completed ${over((r) => r.a[0]!)} / ${over((r) => r.a[1]!)} / ${over((r) => r.a[2]!)} jobs/s before / during / after; ` +
      `A during / before ${over((r) => Math.round((r.a[1]! / r.a[0]!) * 100) / 100)}; B during ${over((r) => r.b[1]!)} jobs/s, ` +
      `${over((r) => r.refusedB)} refused or timed out; B acknowledging again ${over((r) => r.bAckAgainMs ?? Number.NaN)} ms after; ` +
      `lost ${over((r) => r.lost)}, not succeeded ${over((r) => r.unfinished)}, committed twice ${over((r) => r.twice)}\n`,
  );
} finally {
  await server.stop();
}

