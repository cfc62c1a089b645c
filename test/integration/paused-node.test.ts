// A node paused (SIGSTOP) in the middle of a transaction, under load: three node processes on
// one PostgreSQL. A paused node keeps its database sessions, and an open transaction holds its
// locks on shard rows, which once kept the others' takeover waiting until the node resumed
// (26-29 s). Its peers must declare it dead and take its shards at a higher epoch within
// seconds, whatever it holds; once resumed it must learn it was deposed before it grants
// anything: no job committed terminal twice, none lost, and the node still running.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type KairosClient } from '../../protocol/sdk/index.ts';
import { shardForSubmission } from '../../protocol/job-id.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { spawnCluster, type SpawnedCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { pollUntil } from '../support/poll.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';

const SHARDS = 16;
const QUEUE = 'paused';
/** The target is 6 s; the bound leaves room for a loaded CI machine. */
const FAILOVER_BOUND_MS = 10_000;

let db: TestDatabase;
let cluster: SpawnedCluster | undefined;
const clients: KairosClient[] = [];
let worker: SpawnedWorker | undefined;
const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) => adminQuery<R>(text, values, db.name);

beforeAll(async () => {
  db = await createTestDatabase();
  await sql(TERMINAL_LOG_SQL);
});

afterAll(async () => {
  for (const node of cluster?.nodes ?? []) node.child.kill('SIGCONT');
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await worker?.kill();
  await cluster?.stop();
  await db?.drop();
});

async function shardRows(): Promise<Array<{ id: number; owner: string | null; epoch: number }>> {
  const rows = await sql<{ id: number; owner: string | null; epoch: string }>('SELECT s.id, l.owner, s.epoch FROM shards s JOIN shard_leases l USING (id) ORDER BY s.id');
  return rows.map((r) => ({ id: r.id, owner: r.owner, epoch: Number(r.epoch) }));
}

/** Transactions left open for a while: only a paused node's, since live nodes commit in ms. */
async function stalledTransactions(): Promise<number> {
  const [row] = await sql<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND state_change < now() - interval '300 ms'",
  );
  return Number(row!.n);
}

describe('a node paused mid-transaction', () => {
  it('is deposed within seconds, and once resumed grants nothing under its old epoch', async () => {
    cluster = await spawnCluster({ databaseUrl: db.url, size: 3, shards: SHARDS });
    const [a, b, victim] = cluster.nodes as [SpawnedNode, SpawnedNode, SpawnedNode];
    await pollUntil('shards on every node', async () => {
      const owners = new Set((await shardRows()).map((r) => r.owner));
      return [a, b, victim].every((n) => owners.has(n.nodeId));
    });
    for (const node of [a, b]) clients.push(await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {}, requestTimeoutMs: 60_000, retry: { deadlineMs: 60_000 } }));
    worker = await spawnWorker({ url: a.url, token: TEST_TOKEN, queue: QUEUE, concurrency: 32 });

    // Load on every shard, the victim's too (forwarded to it), so that it is committing. The
    // keys are the test's own, so they hash to every shard; keys the SDK made up would keep
    // each job on the node it was sent to (anyShard), which is never the victim.
    const acked = new Set<string>();
    let loading = true;
    const load = (async () => {
      for (let batch = 0; loading; batch++) {
        const specs = Array.from({ length: 50 }, (_, i) => ({ queue: QUEUE, payload: new TextEncoder().encode(`${batch}/${i}`), idempotencyKey: `load-${batch}-${i}` }));
        for (const result of await clients[batch % 2]!.submitMany(specs)) if (!(result instanceof Error)) acked.add(result.jobId);
      }
    })();
    await pollUntil('load under way', async () => acked.size >= 500, 60_000);

    // Pause the victim until the pause catches it inside a transaction.
    const held = (await shardRows()).filter((r) => r.owner === victim.nodeId);
    expect(held.length).toBeGreaterThan(0);
    let pausedAt = 0;
    for (let tries = 0; ; tries++) {
      victim.child.kill('SIGSTOP');
      pausedAt = Date.now();
      await sleep(500);
      if ((await stalledTransactions()) > 0) break;
      expect(tries, 'the pause never caught the victim inside a transaction').toBeLessThan(40);
      victim.child.kill('SIGCONT');
      await sleep(300);
    }

    // Each of its shards takes a submission again, through a, while it sleeps with its locks.
    const probeMs = await Promise.all(
      held.map(async ({ id }) => {
        const key = Array.from({ length: 10_000 }, (_, i) => `probe-${id}-${i}`).find((k) => shardForSubmission('tenant-a', k, SHARDS, () => 0) === id)!;
        const { jobId } = await clients[0]!.submit({ queue: QUEUE, payload: new Uint8Array([1]), idempotencyKey: key });
        acked.add(jobId);
        return Date.now() - pausedAt;
      }),
    );
    const failoverMs = Math.max(...probeMs);
    console.log(`paused mid-transaction: its ${held.length} shards took submissions again ${failoverMs} ms after the SIGSTOP`);
    expect(failoverMs).toBeLessThan(FAILOVER_BOUND_MS);
    const after = new Map((await shardRows()).map((r) => [r.id, r]));
    for (const { id, epoch } of held) expect(after.get(id)!.epoch).toBeGreaterThan(epoch);

    // Resumed, with its grants and commits in flight from before the pause.
    await sleep(Math.max(0, 12_000 - (Date.now() - pausedAt)));
    victim.child.kill('SIGCONT');
    await sleep(5_000);
    loading = false;
    await load;
    await pollUntil('every acknowledged job succeeded', async () => {
      const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE id = ANY($1) AND status = 'succeeded'", [[...acked]]);
      return Number(row!.n) === acked.size;
    }, 120_000);
    expect(await sql(COMMITTED_TWICE_SQL)).toEqual([]);
    expect(victim.child.exitCode).toBeNull();
  }, 240_000);
});
