// Shard lease renewal against commits on real PostgreSQL: the deadlock of issue 10 (point 2).
//
// Renewal used to be one UPDATE of the `shards` rows of a node, which locks them in the order
// the scan meets them (heap order), while a commit locks the rows of its shards FOR SHARE in id
// order. Once the heap order of two shard rows is not their id order, a renewal holding the one
// and waiting for the other meets a commit holding the other and waiting for the one: PostgreSQL
// aborts one of them after deadlock_timeout, and the node loses a commit or its shards.
// Renewal now updates only `shard_leases` rows, which commits never lock (migration 0003), so it
// waits for no commit and no commit waits for it. This test builds the interleaving that
// deadlocks a renewal locking shard rows in heap order, and asserts that both finish and that
// the renewal is not held back by the batch in flight. Against the store before migration 0003
// it fails, but by the renewal waiting for the batch (point 3), not by a deadlock: at this size
// the old UPDATE did not lock the rows in heap order (its plan was not inspected), so the
// deadlock itself did not reproduce here.

import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { usePgStore } from '../support/pg-store-fixture.ts';
import { insertOf, newJob } from '../support/jobs.ts';
import { CONFORMANCE_BASE_MS } from './store-conformance.ts';

describe('PostgreSQL shard lease renewal and commits', () => {
  const setUp = usePgStore();

  it('do not deadlock when the shard rows lie in the heap out of id order', async () => {
    const { s, admin, other: inFlight } = await setUp();

    const leases = await s.acquireShards('node-a', [1, 2], 60_000);
    // New row versions go to the end of the page: shard 2's row now comes before shard 1's.
    await admin.query('UPDATE shards SET epoch = epoch WHERE id = 2');
    await admin.query('UPDATE shards SET epoch = epoch WHERE id = 1');
    const heap = await admin.query('SELECT id FROM shards WHERE id IN (1, 2) ORDER BY ctid');
    expect(heap.rows.map((r: { id: number }) => r.id)).toEqual([2, 1]);

    // A commit in flight on shard 1 (another batch of this node): its shard row held FOR SHARE.
    await inFlight.query('BEGIN');
    await inFlight.query('SELECT epoch FROM shards WHERE id = 1 FOR SHARE');

    const renewStart = performance.now();
    let renewMs: number | null = null;
    const renewal = settle(s.renewShards('node-a', leases, 60_000).then((renewed) => ((renewMs = performance.now() - renewStart), renewed)));
    // A renewal that locks shard rows now holds shard 2's and waits for shard 1's.
    await waitFor(async () => renewMs !== null || (await lockWaiters(admin)) === 1);

    // A commit on both shards: shard 1's row FOR SHARE (beside the batch in flight), then
    // shard 2's, which such a renewal holds.
    const batch = { shards: leases, writes: [1, 2].map((shard) => insertOf(newJob({ shard, scheduledAtMs: CONFORMANCE_BASE_MS }))) };
    const commit = settle(s.commit(batch));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await inFlight.query('COMMIT');

    expect(await renewal).toEqual({ ok: true, value: [1, 2] });
    expect(await commit).toEqual({ ok: true, value: { status: 'committed', outcomes: [{ ok: true }, { ok: true }] } });
    // Not held back by the batch in flight either.
    expect(renewMs).toBeLessThan(250);
  });
});

/** The outcome as a value, so that a rejection is never left unobserved while the test waits. */
function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: String(error) }),
  );
}

/** Shard-lease sessions (renewal's) waiting for a lock. */
async function lockWaiters(admin: pg.Client): Promise<number> {
  const r = await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kairos-leases' AND wait_event_type = 'Lock'");
  return r.rowCount ?? 0;
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('condition not met in 5 s');
}
