// A commit's job updates touch only the daily partitions of the jobs they write: with 30 days
// kept, an UPDATE of the partitioned table that the planner cannot prune plans, opens and
// locks every partition and its indexes (node/store/pg-commit.ts, UPDATE_JOBS_SQL). Seen from
// outside: a lock held on an old day's partition must not hold up a commit of today's jobs.

import { describe, expect, it } from 'vitest';
import { partitionDay, partitionName } from '../../node/core/retention-days.ts';
import { usePgStore } from '../support/pg-store-fixture.ts';
import { insertOf, lease, newJob } from '../support/jobs.ts';

const DAY_MS = 86_400_000;
const MARCH_31 = Date.UTC(2027, 2, 31);

describe('PostgreSQL commits and daily partitions', () => {
  const setUp = usePgStore();

  it("an update of today's jobs does not wait for a lock on a partition of another day", async () => {
    const { s, other, onCleanup } = await setUp();
    // 30 days of partitions, as a cluster that keeps 30 days has.
    for (let day = 30; day >= 0; day--) await s.retention({ daysAhead: 1, keepDays: 100 }, MARCH_31 - day * DAY_MS);
    const leases = await s.acquireShards('node-a', [0], 60_000);
    const job = newJob({ shard: 0, scheduledAtMs: MARCH_31 + 1_000 });
    await s.commit({ shards: leases, writes: [insertOf(job)] });

    await other.query('BEGIN');
    await other.query(`LOCK TABLE ${partitionName(partitionDay(MARCH_31 - 20 * DAY_MS))} IN ACCESS EXCLUSIVE MODE`);
    onCleanup(() => other.query('ROLLBACK'));

    const commit = s.commit({ shards: leases, writes: [lease(job, leases[0]!.epoch).write] });
    const outcome = await Promise.race([commit, new Promise((resolve) => setTimeout(() => resolve('still waiting after 2 s'), 2_000))]);
    expect(outcome).toEqual({ status: 'committed', outcomes: [{ ok: true }] });
  });
});
