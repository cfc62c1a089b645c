// `npm run bench:breaker`: what a queue's circuit breaker saves while the service its jobs call
// is down. Three node processes on one database (DATABASE_URL, else the embedded PostgreSQL),
// one SDK worker per node, jobs submitted at a steady rate with quick retries; their handler
// calls a fake downstream that throws DownstreamError for the first --outage seconds of the
// submissions, then succeeds. The workers and the downstream live in this process, so the
// outage is one moment for all of them and every time below is read on one clock. Each run
// does it on a fresh database with the breaker, then on another queue with it switched off
// (`enabled: false`), and prints one line; a summary gives the ranges over the runs.
//
//   npm run bench:breaker [-- --runs 3 --rate 100 --seconds 20 --outage 10 --concurrency 8]
//
// - heard open: from the decision (the open state's `since`, the deciding owner's clock) to
//   each node's client hearing `breaker_changed` open through `client.breakers.watch`;
// - failed attempts: sum(attempts) - jobs once every job has succeeded (each job's last
//   attempt is its one success), from the database;
// - half-open rounds and reopenings: distinct states by their `since`, from what the three
//   watches heard together (a node that hears of a change only by heartbeat can miss a short
//   state, but the deciding owner's node hears every one);
// - recovery: from the downstream's recovery to the `since` of the breaker closed again.
// "Other processes" is the CPU the rest of the machine used meanwhile (PostgreSQL excluded):
// on a shared machine a large figure means a disturbed run.

import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { migrate } from '../../node/store/migrate.ts';
import { connect, DownstreamError, type BreakerChange, type BreakerOptions, type KairosClient } from '../../protocol/sdk/index.ts';
import { pollUntil } from '../support/poll.ts';
import { spawnCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN } from '../support/spawn-node.ts';
import { openBenchServer, query } from './bench-database.ts';
import { cpuWindow, range } from './machine-share.ts';
import { onInterrupt } from './on-interrupt.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '20' },
    outage: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '8' },
  },
});
const runs = Number(values.runs);
const rate = Number(values.rate);
const jobs = rate * Number(values.seconds);
const outageMs = Number(values.outage) * 1000;
const BREAKER: BreakerOptions = { failureRatePct: 50, minAttempts: 20, windowMs: 30_000, cooldownMs: 1_000, cooldownMaxMs: 8_000, probes: 1 };
/** Without a breaker, each job would spend an attempt every 100-200 ms while the downstream is down. */
const QUICK_RETRIES = { attemptsMax: 1_000, backoffBaseMs: 100, backoffMaxMs: 200 };
const payload = new Uint8Array([1]);
const log = (line: string) => process.stderr.write(`bench:breaker: ${line}\n`);

interface Phase {
  failed: number;
  succeeded: number;
  dead: number;
  calls: number;
  /** When each downstream call failed. */
  failedAtMs: number[];
  /** From the downstream's recovery to the last job finished. */
  drainMs: number;
  changes: Array<BreakerChange & { node: number; heardMs: number }>;
  recoveredMs: number;
}

/** One outage on `queue`: submissions at the rate, the downstream down for the first outageMs. */
async function phase(clients: KairosClient[], url: string, queue: string, breaker: BreakerOptions): Promise<Phase> {
  await clients[0]!.breakers.set(queue, breaker);
  const changes: Phase['changes'] = [];
  await Promise.all(clients.map((c, node) => c.breakers.watch((change) => {
    if (change.queue === queue) changes.push({ ...change, node, heardMs: Date.now() });
  })));
  let calls = 0;
  const failedAtMs: number[] = [];
  const startMs = Date.now();
  const recoveredMs = startMs + outageMs;
  const workers = clients.map((c) => c.worker(queue, async () => {
    calls++;
    if (Date.now() >= recoveredMs) return;
    failedAtMs.push(Date.now());
    throw new DownstreamError('downstream: 503');
  }, { concurrency: Number(values.concurrency) }));
  // Paced by the clock, not by the acknowledgements: each node's client takes every third job.
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < jobs; i++) {
    await sleep(startMs + (i * 1000) / rate - Date.now());
    acks.push(clients[i % clients.length]!.submit({ queue, payload, retry: QUICK_RETRIES }));
  }
  await Promise.all(acks);
  const counts = await pollUntil('every job finished', async () => {
    const [row] = await query<{ done: string; succeeded: string; dead: string; attempts: string; last: string }>(url,
      `SELECT count(*) FILTER (WHERE status IN ('succeeded', 'dead')) AS done, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
              count(*) FILTER (WHERE status = 'dead') AS dead, sum(attempts) AS attempts, (extract(epoch FROM max(finished_at)) * 1000)::bigint AS last
         FROM jobs WHERE queue = '${queue}'`);
    return Number(row!.done) === jobs ? row! : null;
  }, 180_000, 250);
  await Promise.all(workers.map((w) => w.close()));
  return {
    failed: Number(counts.attempts) - jobs,
    succeeded: Number(counts.succeeded),
    dead: Number(counts.dead),
    calls,
    failedAtMs,
    drainMs: Number(counts.last) - recoveredMs,
    changes,
    recoveredMs,
  };
}

async function run(server: Awaited<ReturnType<typeof openBenchServer>>) {
  const url = await server.createDatabase('kairos_breaker');
  await migrate(url);
  const cluster = await spawnCluster({ databaseUrl: url, size: 3 });
  const forget = onInterrupt(() => cluster.stop());
  const clients: KairosClient[] = [];
  try {
    await pollUntil('every node owns shards', async () => {
      const owners = new Set((await query<{ owner: string | null }>(url, 'SELECT owner FROM shard_leases')).map((r) => r.owner));
      return cluster.nodes.every((n) => owners.has(n.nodeId));
    }, 60_000, 250);
    for (const node of cluster.nodes) clients.push(await connect({ url: node.url, token: TEST_TOKEN, client: 'bench-breaker', onWarning: () => {} }));
    const cpu = await cpuWindow(url);
    const guarded = await phase(clients, url, 'payments', BREAKER);
    const unguarded = await phase(clients, url, 'payments-unguarded', { enabled: false });
    const otherCpuSec = cpu.otherSec();

    const distinct = (state: string) => new Set(guarded.changes.filter((c) => c.state === state).map((c) => c.since));
    const opens = [...distinct('open')].sort((a, b) => a - b);
    const firstOpen = opens[0];
    // Each node's hearing of the first opening (null: it never heard that one).
    const heardMs = clients.map((_, node) => {
      const heard = guarded.changes.find((c) => c.node === node && c.state === 'open' && c.since === firstOpen);
      return heard === undefined ? null : heard.heardMs - heard.since;
    });
    const closedSince = Math.max(...distinct('closed'));
    return {
      openedAfterMs: firstOpen === undefined ? null : firstOpen - (guarded.recoveredMs - outageMs),
      heardMs,
      failed: guarded.failed,
      // Those after the decision: leases granted before every node heard it, and probes.
      failedAfterOpen: firstOpen === undefined ? null : guarded.failedAtMs.filter((ms) => ms > firstOpen).length,
      failedWithout: unguarded.failed,
      calls: guarded.calls,
      callsWithout: unguarded.calls,
      halfOpenRounds: distinct('half_open').size,
      reopenings: Math.max(0, opens.length - 1),
      closedAfterRecoveryMs: Number.isFinite(closedSince) && closedSince > guarded.recoveredMs ? closedSince - guarded.recoveredMs : null,
      drainMs: guarded.drainMs,
      drainMsWithout: unguarded.drainMs,
      allSucceeded: guarded.succeeded === jobs && unguarded.succeeded === jobs,
      dead: guarded.dead + unguarded.dead,
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
  log(`${runs} runs: 3 nodes, ${values.concurrency} slots per node, ${rate} jobs/s for ${values.seconds} s (${jobs} jobs), downstream down for the first ${values.outage} s; breaker ${JSON.stringify(BREAKER)}`);
  for (let i = 1; i <= runs; i++) {
    const r = await run(server);
    results.push(r);
    process.stdout.write(
      `run ${i}: opened ${r.openedAfterMs} ms into the outage; heard open after the decision by ${r.heardMs.map((ms, n) => `n${n} ${ms === null ? 'never' : `${ms} ms`}`).join(', ')}; ` +
        `attempts failed ${r.failed} (${r.failedAfterOpen ?? 'n/a'} after the decision; downstream calls ${r.calls}), without the breaker ${r.failedWithout} (calls ${r.callsWithout}); ` +
        `half-open rounds ${r.halfOpenRounds}, reopenings ${r.reopenings}; closed ${r.closedAfterRecoveryMs ?? 'never'} ms after the downstream recovered; ` +
        `last job done ${r.drainMs} ms after it (without the breaker ${r.drainMsWithout} ms); every job succeeded: ${r.allSucceeded ? 'yes' : `NO (${r.dead} dead)`}; other processes ${r.otherCpuSec} CPU-s\n`,
    );
  }
  const heard = results.flatMap((r) => r.heardMs.filter((ms): ms is number => ms !== null));
  const never = results.reduce((n, r) => n + r.heardMs.filter((ms) => ms === null).length, 0);
  process.stdout.write(
    `over ${runs} runs: heard open ${range(heard)} ms after the decision${never > 0 ? ` (${never} node-runs never heard the first opening)` : ''}; ` +
      `attempts failed ${range(results.map((r) => r.failed))} with the breaker (${range(results.map((r) => r.failedAfterOpen ?? Number.NaN))} after the decision), ${range(results.map((r) => r.failedWithout))} without; ` +
      `half-open rounds ${range(results.map((r) => r.halfOpenRounds))}, reopenings ${range(results.map((r) => r.reopenings))}; ` +
      `opened ${range(results.map((r) => r.openedAfterMs ?? Number.NaN))} ms into the outage, closed ${range(results.map((r) => r.closedAfterRecoveryMs ?? Number.NaN))} ms after recovery; ` +
      `every job succeeded in ${results.filter((r) => r.allSucceeded).length} of ${runs} runs\n`,
  );
} finally {
  await server.stop();
}

