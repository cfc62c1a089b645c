// Three node processes on one PostgreSQL, 20,000 jobs submitted through all of them, workers on
// two of them only (the third node's jobs reach them by cross-node credit). Mid-run: kill -9 a
// node that has a worker and a client attached (both fail over to nodes they learned of) and
// restart it; add a fourth node; stop one gracefully. Subscriptions to jobs on the killed and
// the stopped node's shards must follow the jobs to their next owners. Every acknowledged job must succeed, and
// the database's own trigger must see no job committed terminal twice. Prints the failover time
// (kill to all of its shards served again) and the graceful hand-off time.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type KairosClient, type Subscription } from '../../protocol/sdk/index.ts';
import { shardForSubmission } from '../../protocol/job-id.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { spawnCluster, type SpawnedCluster } from '../support/spawn-cluster.ts';
import type { SpawnedNode } from '../support/spawn-node.ts';
import { KAIROS_BIN, TEST_TOKEN } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { pollUntil } from '../support/poll.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';

const SHARDS = 32;
const JOBS = 20_000;
const BATCH = 1_000;

let db: TestDatabase;
let cluster: SpawnedCluster | undefined;
const clients: KairosClient[] = [];
const workers: SpawnedWorker[] = [];
const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) => adminQuery<R>(text, values, db.name);

beforeAll(async () => {
  db = await createTestDatabase();
  await sql(TERMINAL_LOG_SQL);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await Promise.all(workers.map((w) => w.kill()));
  await cluster?.stop();
  await db?.drop();
});

async function shardRows(): Promise<Array<{ id: number; owner: string | null; epoch: number }>> {
  const rows = await sql<{ id: number; owner: string | null; epoch: string }>('SELECT s.id, l.owner, s.epoch FROM shards s JOIN shard_leases l USING (id) ORDER BY s.id');
  return rows.map((r) => ({ id: r.id, owner: r.owner, epoch: Number(r.epoch) }));
}

/** Waits until every one of `nodes` owns shards and no shard is unowned. */
function balanced(nodes: SpawnedNode[]): Promise<true> {
  return pollUntil(`shards spread over ${nodes.length} nodes`, async () => {
    const rows = await shardRows();
    const owners = new Set(rows.map((r) => r.owner));
    return rows.every((r) => r.owner !== null) && nodes.every((n) => owners.has(n.nodeId));
  });
}

/** Milliseconds from `startedAt` until every shard `node` owned then is owned elsewhere at a
 * higher epoch. */
async function timeToMove(node: SpawnedNode, held: Array<{ id: number; epoch: number }>, startedAt: number): Promise<number> {
  await pollUntil(`${node.nodeId}'s shards served elsewhere`, async () => {
    const rows = new Map((await shardRows()).map((r) => [r.id, r]));
    return held.every(({ id, epoch }) => {
      const row = rows.get(id)!;
      return row.owner !== null && row.owner !== node.nodeId && row.epoch > epoch;
    });
  }, 90_000);
  return Date.now() - startedAt;
}

async function heldBy(node: SpawnedNode): Promise<Array<{ id: number; epoch: number }>> {
  return (await shardRows()).filter((r) => r.owner === node.nodeId);
}

/** Submits, through b, a job delayed a few seconds on one of `shards`, and subscribes to it. */
async function subscribeOnShardOf(shards: Array<{ id: number }>, label: string): Promise<Subscription> {
  const ids = new Set(shards.map((r) => r.id));
  const key = Array.from({ length: 10_000 }, (_, i) => `${label}-${i}`).find((k) => ids.has(shardForSubmission('tenant-a', k, SHARDS, () => 0)))!;
  const { jobId } = await clients[1]!.submit({ queue: 'cluster', payload: new Uint8Array([1]), idempotencyKey: key, delayMs: 4_000 });
  return clients[1]!.subscribe(jobId, () => {});
}

async function succeeded(): Promise<number> {
  const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'");
  return Number(row!.n);
}

describe('a three-node cluster', () => {
  it('runs 20,000 jobs through a kill -9, a restart, a join and a graceful stop, losing none, committing none twice, and following subscribed jobs', async () => {
    cluster = await spawnCluster({ databaseUrl: db.url, size: 3, shards: SHARDS, node: { leaseMs: 5_000 } });
    const [a, b, c] = cluster.nodes as [SpawnedNode, SpawnedNode, SpawnedNode];
    await balanced([a, b, c]);
    // `kairos cluster` shows the three members and a shard map that places every shard on them.
    const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, [KAIROS_BIN, 'cluster', '--url', c.url, '--token', TEST_TOKEN, ...args])).stdout;
    const view = JSON.parse(await cli('--json')) as { node: string; members: Array<{ node: string; status: string; inRing: boolean }>; owners: string[] };
    expect(view.node).toBe(c.nodeId);
    expect(view.members.filter((m) => m.inRing && m.status === 'alive').map((m) => m.node).sort()).toEqual([a, b, c].map((n) => n.nodeId).sort());
    expect(view.owners).toHaveLength(SHARDS);
    expect(new Set(view.owners)).toEqual(new Set([a, b, c].map((n) => n.nodeId)));
    expect(await cli()).toContain(`shard map (${SHARDS} shards)`);
    for (const node of [a, b, c]) {
      clients.push(await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {}, requestTimeoutMs: 180_000, retry: { deadlineMs: 120_000 } }));
    }
    // Workers on a and b only: c's jobs reach them by cross-node credit.
    workers.push(await spawnWorker({ url: a.url, token: TEST_TOKEN, queue: 'cluster', concurrency: 32 }));
    workers.push(await spawnWorker({ url: b.url, token: TEST_TOKEN, queue: 'cluster', concurrency: 32 }));

    const acked = new Set<string>();
    const errors: string[] = [];
    const submitting = (async () => {
      for (let batch = 0; batch < JOBS / BATCH; batch++) {
        const specs = Array.from({ length: BATCH }, (_, i) => ({ queue: 'cluster', payload: new TextEncoder().encode(`${batch}/${i}`) }));
        for (const result of await clients[batch % clients.length]!.submitMany(specs)) {
          if (result instanceof Error) errors.push(result.message);
          else acked.add(result.jobId);
        }
      }
    })();

    // kill -9 a node with a worker and a client attached, mid-run.
    await pollUntil('a quarter of the jobs done', async () => (await succeeded()) >= JOBS / 4, 120_000);
    const killedHeld = await heldBy(a);
    // A subscription through b to a job on a shard that a serves: it must survive a's crash.
    const crashFollowed = await subscribeOnShardOf(killedHeld, 'crash');
    const killedAt = Date.now();
    await a.kill('SIGKILL');
    const failoverMs = await timeToMove(a, killedHeld, killedAt);
    const restarted = await cluster.restart(a);
    expect(restarted.nodeId).toBe(a.nodeId);

    // A fourth node joins; then one of the first stops gracefully and hands its shards off.
    const d = await cluster.add();
    await balanced([restarted, b, c, d]);
    const stoppingHeld = await heldBy(c);
    // A subscription, made through b, to a delayed job on a shard that c serves: it must follow
    // the job when c hands the shard off, and see it finish.
    const followed = await subscribeOnShardOf(stoppingHeld, 'handoff');
    const stoppedAt = Date.now();
    const stopping = c.kill('SIGTERM');
    const handoffMs = await timeToMove(c, stoppingHeld, stoppedAt);
    await stopping;
    cluster.nodes.splice(cluster.nodes.indexOf(c), 1);

    for (const [what, sub] of [['hand-off', followed], ['crash', crashFollowed]] as const) {
      const lost = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the subscription did not follow its job after the ${what}`)), 60_000));
      expect((await Promise.race([sub.done, lost])).state).toBe('succeeded');
    }
    await submitting;
    expect(errors).toEqual([]);
    expect(acked.size).toBe(JOBS);
    acked.add(followed.current.id).add(crashFollowed.current.id);
    await pollUntil('every acknowledged job terminal', async () => {
      const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')");
      return Number(row!.n) === 0;
    }, 180_000);
    const stored = await sql<{ status: string; n: string }>('SELECT status, count(*) AS n FROM jobs WHERE id = ANY($1) GROUP BY status', [[...acked]]);
    expect(stored).toEqual([{ status: 'succeeded', n: String(JOBS + 2) }]);
    expect(await sql(COMMITTED_TWICE_SQL)).toEqual([]);
    console.log(`cluster figures: ${JSON.stringify({ failoverMs, gracefulHandoffMs: handoffMs, shards: SHARDS, jobs: JOBS })}`);
  }, 420_000);
});
