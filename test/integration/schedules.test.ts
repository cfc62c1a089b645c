// Recurring schedules on a real node and PostgreSQL: a client's changes (create, read, list,
// pause, resume, delete, and the refusals), and each tick running exactly once across a
// kill -9 of the schedule's owner between ticks.

import { afterEach, describe, expect, it } from 'vitest';
import { connect, type KairosClient } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { spawnCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { scheduleShard } from '../../node/core/schedule/schedule.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setUp(): Promise<{ db: TestDatabase; node: SpawnedNode; client: KairosClient }> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const node = await spawnNode({ databaseUrl: db.url, leaseMs: 3_000 });
  cleanups.push(() => node.kill('SIGKILL'));
  const client = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
  cleanups.push(() => client.close());
  return { db, node, client };
}

/** The ticks (run_at, ms) of the jobs of one queue, with how many jobs each has. */
async function ticksOf(db: TestDatabase, queue: string): Promise<Map<number, number>> {
  const rows = await adminQuery<{ tick: string; n: string }>(
    'SELECT (extract(epoch FROM run_at) * 1000)::bigint AS tick, count(*) AS n FROM jobs WHERE queue = $1 GROUP BY 1 ORDER BY 1',
    [queue],
    db.name,
  );
  return new Map(rows.map((r) => [Number(r.tick), Number(r.n)]));
}

const payload = new TextEncoder().encode('{"report":"daily"}');

describe('recurring schedules', () => {
  it('are created, read, listed, paused, resumed and deleted; bad timings are refused', async () => {
    const { db, client } = await setUp();
    const created = await client.schedules.upsert({ name: 'nightly', queue: 'reports', cron: '0 30 2 * * *', timezone: 'America/New_York', payload });
    expect(created).toMatchObject({ name: 'nightly', queue: 'reports', cron: '0 30 2 * * *', timezone: 'America/New_York', everyMs: null, missed: 'once', paused: false });
    expect(created.nextTickAt).toBeGreaterThan(Date.now());
    expect(await client.schedules.get('nightly')).toEqual(created);

    await client.schedules.upsert({ name: 'often', queue: 'often', everyMs: 1_000, payload });
    const listed = await client.schedules.list({ limit: 1 });
    expect(listed.schedules.map((s) => s.name)).toEqual(['nightly']);
    expect((await client.schedules.list({ after: listed.next! })).schedules.map((s) => s.name)).toEqual(['often']);

    // It fires; paused, it does not; resumed, it does again.
    await pollUntil('a tick of the every-second schedule', async () => (await ticksOf(db, 'often')).size >= 2, 10_000);
    const paused = await client.schedules.pause('often');
    expect(paused).toMatchObject({ paused: true, nextTickAt: null });
    const atPause = (await ticksOf(db, 'often')).size;
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await ticksOf(db, 'often')).size).toBe(atPause);
    const resumed = await client.schedules.resume('often');
    expect(resumed.paused).toBe(false);
    await pollUntil('a tick after resuming', async () => (await ticksOf(db, 'often')).size > atPause, 10_000);

    await client.schedules.delete('often');
    await expect(client.schedules.get('often')).rejects.toMatchObject({ code: 'not_found' });
    await expect(client.schedules.delete('often')).rejects.toMatchObject({ code: 'not_found' });

    await expect(client.schedules.upsert({ name: 'bad', queue: 'q', cron: '61 * * * *', payload })).rejects.toMatchObject({ code: 'bad_request', field: 'schedule.cron' });
    await expect(client.schedules.upsert({ name: 'bad', queue: 'q', cron: '0 0 30 2 *', payload })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(client.schedules.upsert({ name: 'bad', queue: 'q', cron: '* * * * *', timezone: 'Mars/Olympus', payload })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(client.schedules.upsert({ name: 'bad', queue: 'q', cron: '* * * * *', everyMs: 1_000, payload })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(client.schedules.get('bad')).rejects.toMatchObject({ code: 'not_found' });
  }, 60_000);

  it('in a cluster, a change sent to a node that does not own the schedule is served by the one that does', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const shards = 16;
    const cluster = await spawnCluster({ databaseUrl: db.url, size: 2, shards });
    cleanups.push(() => cluster.stop());
    const [a, b] = cluster.nodes as [SpawnedNode, SpawnedNode];
    const client = await connect({ url: a.url, token: TEST_TOKEN, onWarning: () => {} });
    cleanups.push(() => client.close());
    const owners = await pollUntil('both nodes to own shards', async () => {
      const view = await client.cluster();
      return new Set(view.owners).size === 2 && !view.owners.includes(null) ? view.owners : null;
    }, 30_000);
    // A name whose shard node b owns, sent to node a.
    const name = Array.from({ length: 100 }, (_, i) => `elsewhere-${i}`).find((n) => owners[scheduleShard('tenant-a', n, shards)] === b.nodeId)!;
    expect(name).toBeDefined();
    await client.schedules.upsert({ name, queue: 'forwarded', everyMs: 1_000, payload });
    await pollUntil('a tick of the forwarded schedule', async () => (await ticksOf(db, 'forwarded')).size >= 1, 10_000);
    expect(await client.schedules.pause(name)).toMatchObject({ name, paused: true });
    await client.schedules.delete(name);
    await expect(client.schedules.get(name)).rejects.toMatchObject({ code: 'not_found' });
  }, 90_000);

  it('runs every tick exactly once across a kill -9 of its owner between ticks', async () => {
    const { db, node } = await setUp();
    const first = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
    await first.schedules.upsert({ name: 'heartbeat', queue: 'ticks', everyMs: 1_000, payload });
    await first.close();
    await pollUntil('three ticks', async () => (await ticksOf(db, 'ticks')).size >= 3, 15_000);

    // Between two ticks: just after one has fired.
    const fired = (await ticksOf(db, 'ticks')).size;
    await pollUntil('the next tick', async () => (await ticksOf(db, 'ticks')).size > fired, 5_000);
    await node.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 3_000));
    const port = Number(new URL(node.url).port);
    const again = await spawnNode({ databaseUrl: db.url, leaseMs: 3_000, port, dataDir: node.dataDir });
    cleanups.push(() => again.kill('SIGKILL'));
    await new Promise((r) => setTimeout(r, 4_000));

    const ticks = await ticksOf(db, 'ticks');
    const times = [...ticks.keys()];
    const [firstTick, lastTick] = [times[0]!, times.at(-1)!];
    // Every second from the first tick to the last: none missing (those that fell while the
    // node was down ran late), none twice.
    const expected = Array.from({ length: (lastTick - firstTick) / 1_000 + 1 }, (_, i) => firstTick + i * 1_000);
    expect(times).toEqual(expected);
    expect([...ticks.values()].every((n) => n === 1)).toBe(true);
    expect(times.length).toBeGreaterThanOrEqual(fired + 5);
  }, 90_000);
});
