// `npm run bench:ticks`: how close to its tick a recurring schedule's job is accepted, and
// whether every tick makes exactly one job. --nodes node processes on one database
// (DATABASE_URL, else the embedded PostgreSQL) hold --schedules schedules firing every second
// (`everyMs: 1000`) and --cron cron schedules with seconds (`*/2 * * * * *`, every even second)
// for --seconds; a worker on each node takes their jobs, as one would in use. Then every
// schedule is paused and the jobs table is read. Each run is on a fresh database and prints one
// line; a summary gives the ranges over the runs.
//
//   npm run bench:ticks [-- --runs 3 --nodes 1 --schedules 50 --cron 10 --seconds 60 --warmup 5 --shards 256]
//
// - lateness: the job's acceptance (`scheduled_at`, the owner's clock when it took the tick's
//   job) minus its tick (`run_at`); nodes and this process share one clock. Over the ticks from
//   --warmup seconds after the last schedule was created; the earlier ones are given apart
//   (their maximum): a schedule's next tick waits for the previous tick's job and the move to
//   the next tick to commit, so while the creations' writes are still committing the first
//   ticks run late, and catch up together;
// - missed: ticks of a schedule's grid, from its first tick to a second before the pause, with
//   no job (a tick fires once its owner's clock reaches it, so one a second before the pause
//   must have fired unless it is more than a second late, which the maximum would show);
// - duplicates: jobs beyond the first of a (schedule, tick) (the tick's idempotency key names
//   the schedule); off-grid: jobs whose run_at is not one of the schedule's ticks.
// "Other processes" is the CPU the rest of the machine used meanwhile (PostgreSQL excluded):
// on a shared machine a large figure means a disturbed run.

import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { migrate } from '../../node/store/migrate.ts';
import { connect, type KairosClient } from '../../protocol/sdk/index.ts';
import { pollUntil } from '../support/poll.ts';
import { spawnCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN } from '../support/spawn-node.ts';
import { openBenchServer, query } from './bench-database.ts';
import { cpuWindow, range } from './machine-share.ts';
import { onInterrupt } from './on-interrupt.ts';
import { percentile } from './shape.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    nodes: { type: 'string', default: '1' },
    schedules: { type: 'string', default: '50' },
    cron: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '5' },
    shards: { type: 'string', default: '256' },
  },
});
const runs = Number(values.runs);
const QUEUE = 'ticks';
const timings = [
  ...Array.from({ length: Number(values.schedules) }, (_, i) => ({ name: `every-${i}`, everyMs: 1_000, periodMs: 1_000 })),
  ...Array.from({ length: Number(values.cron) }, (_, i) => ({ name: `cron-${i}`, cron: '*/2 * * * * *', periodMs: 2_000 })),
];
const log = (line: string) => process.stderr.write(`bench:ticks: ${line}\n`);

async function run(server: Awaited<ReturnType<typeof openBenchServer>>) {
  const url = await server.createDatabase('kairos_ticks');
  await migrate(url);
  const cluster = await spawnCluster({ databaseUrl: url, size: Number(values.nodes), shards: Number(values.shards) });
  const forget = onInterrupt(() => cluster.stop());
  const clients: KairosClient[] = [];
  try {
    // Ticks fired across a shard's hand-off are not what this measures.
    await pollUntil('every node owns shards', async () => {
      const owners = new Set((await query<{ owner: string | null }>(url, 'SELECT owner FROM shard_leases')).map((r) => r.owner));
      return cluster.nodes.every((n) => owners.has(n.nodeId));
    }, 60_000, 250);
    for (const node of cluster.nodes) {
      const client = await connect({ url: node.url, token: TEST_TOKEN, client: 'bench-ticks', onWarning: () => {} });
      client.worker(QUEUE, async () => undefined, { concurrency: 8 });
      clients.push(client);
    }
    const cpu = await cpuWindow(url);
    const payload = new TextEncoder().encode('{"tick":true}');
    const creatingMs = Date.now();
    const created = await Promise.all(timings.map(({ periodMs, ...timing }) => clients[0]!.schedules.upsert({ ...timing, queue: QUEUE, payload })));
    const createdInMs = Date.now() - creatingMs;
    const settledMs = Date.now() + Number(values.warmup) * 1000;
    await sleep(Number(values.seconds) * 1000);
    const pausedMs = Date.now();
    await Promise.all(timings.map((t) => clients[0]!.schedules.pause(t.name)));
    const otherCpuSec = cpu.otherSec();

    const rows = await query<{ key: string; tick: string; late: number }>(url,
      `SELECT idempotency_key AS key, (extract(epoch FROM run_at) * 1000)::bigint AS tick, extract(epoch FROM scheduled_at - run_at) * 1000 AS late
         FROM jobs WHERE queue = '${QUEUE}'`);
    const lateness = (settled: boolean) => rows.filter((r) => (Number(r.tick) >= settledMs) === settled).map((r) => Number(r.late)).sort((a, b) => a - b);
    const late = lateness(true);
    let missed = 0;
    let duplicates = 0;
    let offGrid = 0;
    let expected = 0;
    timings.forEach((t, i) => {
      const firstTick = created[i]!.nextTickAt!;
      const ticks = rows.filter((r) => r.key.startsWith(`schedule:${t.name}:`)).map((r) => Number(r.tick));
      const distinct = new Set(ticks);
      duplicates += ticks.length - distinct.size;
      offGrid += [...distinct].filter((tick) => tick < firstTick || (tick - firstTick) % t.periodMs !== 0).length;
      for (let tick = firstTick; tick <= pausedMs - 1_000; tick += t.periodMs) {
        expected++;
        if (!distinct.has(tick)) missed++;
      }
    });
    return {
      jobs: rows.length,
      createdInMs,
      expected,
      p50: percentile(late, 0.5),
      p90: percentile(late, 0.9),
      p99: percentile(late, 0.99),
      max: late.at(-1)!,
      warmupMax: lateness(false).at(-1) ?? Number.NaN,
      missed,
      duplicates,
      offGrid,
      otherCpuSec,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await cluster.stop();
    forget();
    await server.dropDatabase(url);
  }
}


const server = await openBenchServer({ preferDebian15: false, log });
const results: Array<Awaited<ReturnType<typeof run>>> = [];
try {
  log(`${runs} runs: ${values.nodes} node(s), ${values.shards} shards, ${values.schedules} schedules every 1 s and ${values.cron} cron '*/2 * * * * *', for ${values.seconds} s`);
  for (let i = 1; i <= runs; i++) {
    const r = await run(server);
    results.push(r);
    process.stdout.write(
      `run ${i}: schedules created in ${r.createdInMs} ms; ${r.jobs} jobs; acceptance - tick p50 ${ms(r.p50)}, p90 ${ms(r.p90)}, p99 ${ms(r.p99)}, max ${ms(r.max)} ms (max ${ms(r.warmupMax)} ms in the warm-up); ` +
        `missed ${r.missed} of ${r.expected} ticks, duplicates ${r.duplicates}, off-grid ${r.offGrid}; other processes ${r.otherCpuSec} CPU-s\n`,
    );
  }
  const over = (pick: (r: (typeof results)[number]) => number) => range(results.map(pick));
  process.stdout.write(
    `over ${runs} runs (${values.nodes} node(s)): acceptance - tick p50 ${over((r) => ms(r.p50))}, p90 ${over((r) => ms(r.p90))}, p99 ${over((r) => ms(r.p99))}, ` +
      `max ${over((r) => ms(r.max))} ms (${over((r) => ms(r.warmupMax))} in the warm-up); missed ${over((r) => r.missed)}, duplicates ${over((r) => r.duplicates)}, off-grid ${over((r) => r.offGrid)}\n`,
  );
} finally {
  await server.stop();
}

function ms(n: number): number {
  return Math.round(n * 10) / 10;
}

