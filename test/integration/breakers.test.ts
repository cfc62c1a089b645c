// Circuit breakers on real node processes and PostgreSQL: a three-node cluster whose workers call
// a downstream that fails every call for 10 s and then recovers (the breaker opens on every
// node, few attempts are spent while it is down, every job succeeds after); an open breaker kept
// across a kill -9 of its node; a queue that refuses submissions while open; the node's
// default breaker and its flag.

import { afterEach, describe, expect, it } from 'vitest';
import { connect, DownstreamError, type KairosClient } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { spawnCluster } from '../support/spawn-cluster.ts';
import { TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { runKairos } from '../support/run-kairos.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function client(url: string): Promise<KairosClient> {
  const c = await connect({ url, token: TEST_TOKEN, onWarning: () => {} });
  cleanups.push(() => c.close());
  return c;
}

async function jobCounts(db: TestDatabase, queue: string): Promise<{ jobs: number; succeeded: number; dead: number; attempts: number }> {
  const [row] = await adminQuery<{ jobs: string; succeeded: string; dead: string; attempts: string }>(
    `SELECT count(*) AS jobs, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
            count(*) FILTER (WHERE status = 'dead') AS dead, coalesce(sum(attempts), 0) AS attempts
       FROM jobs WHERE queue = $1`,
    [queue],
    db.name,
  );
  return { jobs: Number(row!.jobs), succeeded: Number(row!.succeeded), dead: Number(row!.dead), attempts: Number(row!.attempts) };
}

/** Retries that would spend an attempt every 100-200 ms without a breaker. */
const QUICK_RETRIES = { attemptsMax: 1_000, backoffBaseMs: 100, backoffMaxMs: 200 };
const payload = new Uint8Array([1]);

describe('circuit breakers', () => {
  it('in a three-node cluster, a downstream down for 10 s opens the breaker on every node, spends few attempts, and every job succeeds after', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const cluster = await spawnCluster({ databaseUrl: db.url, size: 3 });
    cleanups.push(() => cluster.stop());
    const clients = await Promise.all(cluster.nodes.map((n) => client(n.url)));
    const admin = clients[0]!;
    const set = await admin.breakers.set('payments', { failureRatePct: 50, minAttempts: 10, windowMs: 10_000, cooldownMs: 1_000, cooldownMaxMs: 4_000, probes: 1 });
    expect(set).toMatchObject({ queue: 'payments', source: 'queue', state: 'closed', minAttempts: 10 });

    // Every node's view of the breaker, as its clients hear it.
    const opened: number[] = [];
    await Promise.all(clients.map((c) => c.breakers.watch((change) => {
      if (change.state === 'open' && opened.length < clients.length) opened.push(Date.now() - change.since);
    })));

    let downUntil = Infinity;
    let calls = 0;
    const downstream = () => {
      calls++;
      if (Date.now() < downUntil) throw new DownstreamError('payments service: 503');
    };
    for (const c of clients) c.worker('payments', async () => downstream(), { concurrency: 4 });

    const jobs = 150;
    downUntil = Date.now() + 10_000;
    for (let i = 0; i < jobs; i++) await admin.submit({ queue: 'payments', payload, retry: QUICK_RETRIES });

    await pollUntil('the breaker open on every node', async () => opened.length === clients.length, 10_000);
    const atOpen = await jobCounts(db, 'payments');
    await pollUntil('the downstream back, and every job done', async () => (await jobCounts(db, 'payments')).succeeded === jobs, 60_000);
    const done = await jobCounts(db, 'payments');
    await pollUntil('the breaker closed', async () => (await admin.breakers.get('payments')).state === 'closed', 20_000);

    expect(done.dead).toBe(0);
    // Attempts that failed: at most the threshold's worth before the decision, the probes of
    // every half-open round (about 5 rounds of one per node in 10 s), and the leases in flight
    // when it opened. Without the breaker each of the 150 jobs would fail every 100-200 ms.
    const failed = done.attempts - jobs;
    process.stdout.write(`breakers: opened on every node ${opened.map((ms) => `${ms} ms`).join(', ')} after the decision; attempts failed during the outage: ${failed} (${atOpen.attempts} attempts when open), downstream calls ${calls}\n`);
    expect(Math.max(...opened)).toBeLessThan(1_000);
    expect(failed).toBeLessThan(150);
  }, 120_000);

  it('an open breaker stays open across a kill -9 of its node, and leases nothing', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    let node: SpawnedNode = await spawnNode({ databaseUrl: db.url, shards: 4 });
    cleanups.push(() => node.kill('SIGKILL'));
    const c1 = await client(node.url);
    await c1.breakers.set('mail', { minAttempts: 3, failureRatePct: 100, cooldownMs: 600_000, cooldownMaxMs: 600_000 });
    const worker = c1.worker('mail', async () => {
      throw new DownstreamError('smtp down');
    }, { concurrency: 1 });
    for (let i = 0; i < 5; i++) await c1.submit({ queue: 'mail', payload, retry: QUICK_RETRIES });
    await pollUntil('the breaker open', async () => (await c1.breakers.get('mail')).state === 'open', 15_000);
    await worker.close();
    const before = await jobCounts(db, 'mail');

    await node.kill('SIGKILL');
    node = await spawnNode({ databaseUrl: db.url, shards: 4, dataDir: node.dataDir });
    const c2 = await client(node.url);
    expect(await c2.breakers.get('mail')).toMatchObject({ state: 'open', source: 'queue' });
    let leased = 0;
    c2.worker('mail', async () => {
      leased++;
    });
    await new Promise((r) => setTimeout(r, 3_000));
    expect(leased).toBe(0);
    expect((await jobCounts(db, 'mail')).attempts).toBe(before.attempts);
  }, 60_000);

  it('a queue set to refuse while open refuses submissions with circuit_open and a retry-after, and makes no job', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const node = await spawnNode({ databaseUrl: db.url, shards: 4 });
    cleanups.push(() => node.kill('SIGKILL'));
    const c = await client(node.url);
    await c.breakers.set('sms', { minAttempts: 2, failureRatePct: 100, cooldownMs: 30_000, refuseWhenOpen: true });
    c.worker('sms', async () => {
      throw new DownstreamError('gateway down');
    });
    for (let i = 0; i < 2; i++) await c.submit({ queue: 'sms', payload, retry: QUICK_RETRIES });
    await pollUntil('the breaker open', async () => (await c.breakers.get('sms')).state === 'open', 15_000);
    const jobsBefore = (await jobCounts(db, 'sms')).jobs;
    const refused = await c.submit({ queue: 'sms', payload }).then(() => null, (e: unknown) => e);
    expect(refused).toMatchObject({ code: 'circuit_open' });
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(20_000);
    expect((await jobCounts(db, 'sms')).jobs).toBe(jobsBefore);
    // Other queues are not concerned.
    await c.submit({ queue: 'other', payload });
    // Its settings cleared, on a node without a default breaker, the queue has none.
    expect(await c.breakers.clear('sms')).toMatchObject({ source: 'default', enabled: false, state: 'closed' });
    await c.submit({ queue: 'sms', payload });
  }, 60_000);

  it('the node default breaker covers every queue without settings; a queue may switch it off; a bad flag is refused', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const node = await spawnNode({ databaseUrl: db.url, shards: 4, env: { KAIROS_BREAKER_DEFAULT: '{"minAttempts":5}' } });
    cleanups.push(() => node.kill('SIGKILL'));
    const c = await client(node.url);
    expect(await c.breakers.get('anything')).toMatchObject({ source: 'default', minAttempts: 5, failureRatePct: 50, state: 'closed' });
    expect(await c.breakers.set('anything', { enabled: false })).toMatchObject({ source: 'queue', enabled: false });
    expect(await c.breakers.clear('anything')).toMatchObject({ source: 'default', enabled: true });

    const bad = await runKairos(['start', '--breaker-default', '{"minAttempts":0}'], { env: { DATABASE_URL: db.url } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--breaker-default: minAttempts/);
  }, 60_000);
});
