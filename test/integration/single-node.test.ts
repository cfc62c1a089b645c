// One node end to end: a real node process on a real Postgres, producers through the SDK, and
// worker processes. The store is the witness: a trigger records every terminal commit, so "none
// is committed twice" is checked where it matters, not inferred.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, KairosError, type KairosClient } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { OTHER_TOKEN, TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { pollUntil } from '../support/poll.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';

const LEASE_MS = 3_000;
let db: TestDatabase;
let node: SpawnedNode;
let client: KairosClient;
const workers: SpawnedWorker[] = [];

const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) => adminQuery<R>(text, values, db.name);
const bytes = (text: string) => new TextEncoder().encode(text);

async function startWorker(queue: string, behaviour: string, extra: { concurrency?: number; sleepMs?: number } = {}): Promise<SpawnedWorker> {
  const worker = await spawnWorker({ url: node.url, token: TEST_TOKEN, queue, behaviour, ...extra });
  workers.push(worker);
  return worker;
}

async function stateOf(jobId: string): Promise<string> {
  return (await client.get(jobId)).state;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await sql(TERMINAL_LOG_SQL);
  node = await spawnNode({ databaseUrl: db.url, leaseMs: LEASE_MS });
  client = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
});

afterAll(async () => {
  await client?.close();
  await Promise.all(workers.map((w) => w.kill()));
  await node?.kill();
  await db?.drop();
});

describe('one node, end to end', () => {
  it('runs 10,000 jobs from the SDK on two worker processes, each exactly once', async () => {
    const specs = Array.from({ length: 10_000 }, (_, i) => ({ queue: 'bulk', payload: bytes(`job ${i}`) }));
    const results = await client.submitMany(specs);
    const ids = results.map((r) => {
      if (r instanceof Error) throw r;
      return r.jobId;
    });
    expect(new Set(ids).size).toBe(10_000);
    await startWorker('bulk', 'noop', { concurrency: 32 });
    await startWorker('bulk', 'noop', { concurrency: 32 });
    await pollUntil('10,000 jobs to succeed', async () => {
      const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE queue = 'bulk' AND status = 'succeeded'");
      return Number(row!.n) === 10_000;
    }, 120_000);
    const [stats] = await sql<{ jobs: string; max_attempts: number; min_attempts: number }>(
      "SELECT count(*) AS jobs, max(attempts) AS max_attempts, min(attempts) AS min_attempts FROM jobs WHERE queue = 'bulk'",
    );
    expect(stats).toMatchObject({ jobs: '10000', max_attempts: 1, min_attempts: 1 });
    const twice = await sql(COMMITTED_TWICE_SQL);
    expect(twice).toEqual([]);
    const [terminal] = await sql<{ n: string }>("SELECT count(*) AS n FROM terminal_commits t JOIN jobs j ON j.id = t.job_id WHERE j.queue = 'bulk'");
    expect(Number(terminal!.n)).toBe(10_000);
  }, 180_000);

  it('retries with backoff, buries after the last attempt or a non-retryable error, and requeues', async () => {
    const flaky = await startWorker('flaky', 'fail-twice');
    const { jobId } = await client.submit({ queue: 'flaky', payload: bytes('x'), retry: { attemptsMax: 5, backoffBaseMs: 500, jitter: 0 } });
    await pollUntil('the flaky job to succeed', async () => (await stateOf(jobId)) === 'succeeded');
    const job = await client.get(jobId);
    expect(job.attempts).toBe(3);
    const starts = flaky.events.filter((e) => e.event === 'started' && e.jobId === jobId).map((e) => (e as { atMs: number }).atMs);
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(500);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(1_000);

    const doomed = await client.submit({ queue: 'flaky', payload: bytes('y'), retry: { attemptsMax: 2, backoffBaseMs: 100, jitter: 0 } });
    await pollUntil('the doomed job to die', async () => (await stateOf(doomed.jobId)) === 'dead');
    expect(await client.get(doomed.jobId)).toMatchObject({ attempts: 2, lastError: expect.stringContaining('attempt 2') });

    await startWorker('fatal', 'fail-fatal');
    const fatal = await client.submit({ queue: 'fatal', payload: bytes('z'), retry: { attemptsMax: 5 } });
    await pollUntil('the fatal job to die', async () => (await stateOf(fatal.jobId)) === 'dead');
    expect((await client.get(fatal.jobId)).attempts).toBe(1);
    const dead = await client.dlq.list({ queue: 'fatal' });
    expect(dead.jobs.map((j) => j.id)).toContain(fatal.jobId);

    // Requeued with one more attempt, the dead job runs again as attempt 3, which this
    // handler lets succeed.
    const requeued = await client.dlq.requeue(doomed.jobId, { attempts: 1 });
    expect(requeued).toMatchObject({ state: 'pending', attemptsMax: 3 });
    await pollUntil('the requeued job to succeed', async () => (await stateOf(doomed.jobId)) === 'succeeded');
    expect(flaky.events.some((e) => e.event === 'started' && e.jobId === doomed.jobId && e.attempt === 3)).toBe(true);
  }, 120_000);

  it('takes a hung worker\'s lease away, runs the job elsewhere and refuses the late completion', async () => {
    const hung = await startWorker('hangs', 'slow', { sleepMs: 2 * LEASE_MS });
    const { jobId } = await client.submit({ queue: 'hangs', payload: bytes('h'), retry: { attemptsMax: 3, backoffBaseMs: 0 } });
    await hung.until((e) => e.event === 'started' && e.jobId === jobId);
    hung.child.kill('SIGSTOP');
    const rescuer = await startWorker('hangs', 'record');
    await rescuer.until((e) => e.event === 'finished' && e.jobId === jobId, 30_000);
    await pollUntil('the rescued job to succeed', async () => (await stateOf(jobId)) === 'succeeded');
    hung.child.kill('SIGCONT');
    const refused = await hung.until((e) => e.event === 'error' && e.jobId === jobId, 30_000);
    expect(refused).toMatchObject({ message: expect.stringMatching(/lease.*not recorded/) });
    expect(await client.get(jobId)).toMatchObject({ state: 'succeeded', attempts: 2 });
    const commits = await sql("SELECT status FROM terminal_commits WHERE job_id = $1", [jobId]);
    expect(commits).toEqual([{ status: 'succeeded' }]);
  }, 60_000);

  it('starts no delayed job before its run_at, and runs higher priority first, across shards', async () => {
    const low = await client.submit({ queue: 'ordered', payload: bytes('low'), priority: -5 });
    const high = await client.submit({ queue: 'ordered', payload: bytes('high'), priority: 7 });
    const mid = await client.submit({ queue: 'ordered', payload: bytes('mid'), priority: 0 });
    const delayedAt = Date.now();
    const delayed = await client.submit({ queue: 'ordered', payload: bytes('delayed'), priority: 100, delayMs: 5_000 });
    // The worker process starts well within the delay (it takes about a second), so the delayed
    // job, though of the highest priority, must wait behind the others.
    const worker = await startWorker('ordered', 'record', { concurrency: 1 });
    await worker.until((e) => e.event === 'started' && e.jobId === delayed.jobId, 20_000);
    const order = worker.events.filter((e) => e.event === 'started').map((e) => (e as { jobId: string }).jobId);
    expect(order).toEqual([high.jobId, mid.jobId, low.jobId, delayed.jobId]);
    const startedAt = (worker.events.find((e) => e.event === 'started' && e.jobId === delayed.jobId) as { atMs: number }).atMs;
    expect(startedAt - delayedAt).toBeGreaterThanOrEqual(5_000);
  }, 60_000);

  it('gives one job id for one idempotency key submitted by two clients at once', async () => {
    const second = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
    const spec = { queue: 'unique', payload: bytes('once'), idempotencyKey: 'order-42', delayMs: 60_000 };
    const [a, b] = await Promise.all([client.submit(spec), second.submit(spec)]);
    expect(a.jobId).toBe(b.jobId);
    expect([a.duplicate, b.duplicate].sort()).toEqual([false, true]);
    const rows = await sql("SELECT id FROM jobs WHERE idempotency_key = 'order-42'");
    expect(rows).toHaveLength(1);
    // Another tenant's key is its own.
    const other = await connect({ url: node.url, token: OTHER_TOKEN, onWarning: () => {} });
    expect((await other.submit(spec)).jobId).not.toBe(a.jobId);
    await Promise.all([second.close(), other.close()]);
  });

  it('cancels a pending job at once and a running one through the handler\'s abort signal', async () => {
    const pending = await client.submit({ queue: 'cancel-me', payload: bytes('p'), delayMs: 60_000 });
    expect(await client.cancel(pending.jobId)).toMatchObject({ state: 'cancelled' });
    const worker = await startWorker('cancel-running', 'until-cancelled');
    const running = await client.submit({ queue: 'cancel-running', payload: bytes('r') });
    await worker.until((e) => e.event === 'started' && e.jobId === running.jobId);
    expect(await client.cancel(running.jobId)).toMatchObject({ state: 'cancelled' });
    await worker.until((e) => e.event === 'aborted' && e.jobId === running.jobId);
    await expect(client.cancel(running.jobId)).rejects.toMatchObject({ code: 'illegal_state' });
    const commits = await sql('SELECT job_id FROM terminal_commits WHERE job_id = ANY($1)', [[pending.jobId, running.jobId]]);
    expect(commits).toHaveLength(2);
  }, 60_000);

  it('refuses a bad submission with a clear error and stores nothing', async () => {
    const before = await sql<{ n: string }>('SELECT count(*) AS n FROM jobs');
    const error = await client.submit({ queue: '', payload: bytes('x') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KairosError);
    expect(error).toMatchObject({ code: 'bad_request', field: 'job.queue' });
    expect(await sql('SELECT count(*) AS n FROM jobs')).toEqual(before);
  });
});
