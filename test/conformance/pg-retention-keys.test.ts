// Retention on PostgreSQL deletes a dropped day's idempotency keys after the transaction that
// holds ACCESS EXCLUSIVE on `jobs`, in batches (node/store/pg-retention.ts): commits must not
// wait for the keys, and no key may be left behind, nor one deleted whose job still lives.
// Nor may commits queue for long behind retention's request for that lock.

import { describe, expect, it } from 'vitest';
import type { ShardLease, Store } from '../../node/core/store.ts';
import { usePgStore } from '../support/pg-store-fixture.ts';
import { complete, insertOf, lease, newJob } from '../support/jobs.ts';
import { pollUntil } from '../support/poll.ts';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const MARCH_1 = Date.UTC(2027, 2, 1);

/** March 1's partition, holding one finished job (under `key`), and shard 0's lease. */
async function finishedJobOnMarch1(s: Store, key: string | null): Promise<ShardLease[]> {
  await s.retention({ daysAhead: 1, keepDays: 1 }, MARCH_1);
  const leases = await s.acquireShards('node-a', [0], 60_000);
  const old = newJob({ shard: 0, scheduledAtMs: MARCH_1 + HOUR_MS, idempotencyKey: key });
  const leased = lease(old, leases[0]!.epoch);
  await s.commit({ shards: leases, writes: [insertOf(old), leased.write, complete(leased.next).write] });
  return leases;
}

describe('PostgreSQL retention: the keys of a dropped day', () => {
  // The store has two connections: retention holds one while it deletes keys, a commit takes
  // the other.
  const setUp = usePgStore();

  it('a commit does not wait while retention deletes the keys of the day it dropped', async () => {
    const { s, admin, other, onCleanup } = await setUp();
    const leases = await finishedJobOnMarch1(s, 'old-key');

    // Another session holds the old key's row, so deleting it waits: the key deletion lasts
    // as long as this test wants, and shows in pg_stat_activity as a lock wait.
    await other.query('BEGIN');
    await other.query("SELECT 1 FROM idempotency WHERE key = 'old-key' FOR UPDATE");
    onCleanup(() => other.query('ROLLBACK'));
    const now = MARCH_1 + 10 * DAY_MS + HOUR_MS;
    let retentionDone = false;
    const pass = s.retention({ daysAhead: 1, keepDays: 2 }, now).finally(() => (retentionDone = true));
    await pollUntil('retention waiting on the old key', async () => {
      const waiting = await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kairos' AND wait_event_type = 'Lock'");
      return waiting.rowCount === 1;
    }, 5_000, 10);

    // While the key deletion waits, a commit to jobs goes through: retention no longer holds
    // ACCESS EXCLUSIVE on jobs. (Deleting the keys inside that transaction, it would: the
    // commit would wait for the key row's lock too.)
    const fresh = newJob({ shard: 0, scheduledAtMs: now });
    const commit = s.commit({ shards: leases, writes: [insertOf(fresh)] });
    const outcome = await Promise.race([commit, new Promise((resolve) => setTimeout(() => resolve('still waiting after 2 s'), 2_000))]);
    expect(outcome).toEqual({ status: 'committed', outcomes: [{ ok: true }] });
    expect(retentionDone).toBe(false);

    await other.query('ROLLBACK');
    expect(await pass).toEqual({ created: ['jobs_p20270311'], dropped: ['jobs_p20270301'], keptLive: [], ran: true });
    expect(await s.findByIdempotencyKey('tenant-a', 'old-key')).toBeNull();
    expect((await admin.query('SELECT day_start FROM retention_key_sweeps')).rows).toEqual([]);
    expect(await s.getJob(fresh.id)).toEqual(fresh);
  });

  it('a commit does not queue behind retention while it waits for its lock on jobs', async () => {
    const { s, other, onCleanup } = await setUp();
    const leases = await finishedJobOnMarch1(s, null);

    // A commit in flight for a long time: it holds what a commit holds on jobs, which
    // retention's ACCESS EXCLUSIVE must wait for.
    await other.query('BEGIN');
    await other.query('LOCK TABLE ONLY jobs IN ROW EXCLUSIVE MODE');
    onCleanup(() => other.query('ROLLBACK'));
    const now = MARCH_1 + 10 * DAY_MS + HOUR_MS;
    const pass = s.retention({ daysAhead: 1, keepDays: 2 }, now);
    await new Promise((resolve) => setTimeout(resolve, 200));

    // A new commit meanwhile must not wait behind retention's lock request until the long one
    // ends (it did: a waiting ACCESS EXCLUSIVE request queues every later lock on jobs).
    const fresh = newJob({ shard: 0, scheduledAtMs: now });
    const started = performance.now();
    const commit = s.commit({ shards: leases, writes: [insertOf(fresh)] });
    const outcome = await Promise.race([commit, new Promise((resolve) => setTimeout(() => resolve('still waiting after 1 s'), 1_000))]);
    expect(outcome).toEqual({ status: 'committed', outcomes: [{ ok: true }] });
    expect(performance.now() - started).toBeLessThan(500);

    await other.query('ROLLBACK');
    expect(await pass).toEqual({ created: ['jobs_p20270311'], dropped: ['jobs_p20270301'], keptLive: [], ran: true });
  });

  it('deletes the keys in batches, resumes a day an earlier pass left, and keeps the key of a job that lives', async () => {
    const { s, admin } = await setUp();
    // As a pass that dropped March 1 and stopped before deleting its keys leaves things: the
    // day recorded, its keys there, their jobs gone. 25,000 keys: three batches.
    await admin.query(`INSERT INTO retention_key_sweeps (day_start) VALUES ($1)`, [new Date(MARCH_1)]);
    await admin.query(
      `INSERT INTO idempotency (tenant, key, job_id, scheduled_at)
       SELECT 'tenant-a', 'gone-' || n, '000-gone-1-' || n, $1::timestamptz + n * interval '1 second'
       FROM generate_series(1, 25000) AS n`,
      [new Date(MARCH_1)],
    );
    // A job accepted on March 1 after the drop (a node whose clock is days behind): it lands
    // in DEFAULT and its key must stay.
    const leases = await s.acquireShards('node-a', [0], 60_000);
    const late = newJob({ shard: 0, scheduledAtMs: MARCH_1 + 2 * HOUR_MS, idempotencyKey: 'late-key' });
    await s.commit({ shards: leases, writes: [insertOf(late)] });
    // A key of the next day, whose partition was not dropped.
    await admin.query(`INSERT INTO idempotency (tenant, key, job_id, scheduled_at) VALUES ('tenant-a', 'next-day', '000-x-1-1', $1)`, [
      new Date(MARCH_1 + DAY_MS),
    ]);

    // A pass with nothing to create or drop still finishes the recorded day.
    expect(await s.retention({ daysAhead: 0, keepDays: 100 }, MARCH_1 + 3 * DAY_MS)).toEqual({ created: [], dropped: [], keptLive: [], ran: true });
    const keys = await admin.query('SELECT key FROM idempotency ORDER BY key');
    expect(keys.rows.map((r) => r.key)).toEqual(['late-key', 'next-day']);
    expect((await admin.query('SELECT day_start FROM retention_key_sweeps')).rows).toEqual([]);
    expect(await s.findByIdempotencyKey('tenant-a', 'late-key')).toBe(late.id);
  });
});
