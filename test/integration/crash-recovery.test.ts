// kill -9 the node while 10,000 jobs are in flight, start it again: every acknowledged job
// reaches a terminal state and none is committed twice (a trigger in the database counts).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';

let db: TestDatabase;
const nodes: SpawnedNode[] = [];
const workers: SpawnedWorker[] = [];
const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) => adminQuery<R>(text, values, db.name);

beforeAll(async () => {
  db = await createTestDatabase();
  await sql(TERMINAL_LOG_SQL);
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await Promise.all(nodes.map((n) => n.kill()));
  await db?.drop();
});

describe('crash recovery', () => {
  it('loses no acknowledged job and commits none twice across a kill -9', async () => {
    const first = await spawnNode({ databaseUrl: db.url, leaseMs: 3_000, port: 0 });
    nodes.push(first);
    const port = Number(new URL(first.url).port);
    const client = await connect({ url: first.url, token: TEST_TOKEN, onWarning: () => {}, requestTimeoutMs: 120_000 });
    workers.push(await spawnWorker({ url: first.url, token: TEST_TOKEN, queue: 'crash', concurrency: 16 }));
    workers.push(await spawnWorker({ url: first.url, token: TEST_TOKEN, queue: 'crash', concurrency: 16 }));

    const acked = new Set<string>();
    const submitting = (async () => {
      for (let batch = 0; batch < 10; batch++) {
        const specs = Array.from({ length: 1_000 }, (_, i) => ({ queue: 'crash', payload: new TextEncoder().encode(`${batch}/${i}`) }));
        for (const result of await client.submitMany(specs)) if (!(result instanceof Error)) acked.add(result.jobId);
      }
    })();
    // Kill the node in the middle of the run, with jobs pending, running and being submitted.
    while (acked.size < 3_000) await new Promise((r) => setTimeout(r, 5));
    await first.kill('SIGKILL');
    const second = await spawnNode({ databaseUrl: db.url, leaseMs: 3_000, port, dataDir: first.dataDir });
    nodes.push(second);
    await submitting;
    expect(acked.size).toBeGreaterThan(3_000);

    const deadline = Date.now() + 120_000;
    for (;;) {
      const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')");
      if (Number(row!.n) === 0) break;
      if (Date.now() > deadline) throw new Error(`${row!.n} jobs still live after the restart`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const stored = await sql<{ id: string; status: string }>('SELECT id, status FROM jobs WHERE id = ANY($1)', [[...acked]]);
    expect(stored).toHaveLength(acked.size);
    expect(stored.every((r) => r.status === 'succeeded')).toBe(true);
    expect(await sql(COMMITTED_TWICE_SQL)).toEqual([]);
    await client.close();
  }, 240_000);
});
