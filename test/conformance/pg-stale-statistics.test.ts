// A commit's job updates probe today's partition by key however stale its statistics are
// (node/store/pg-commit.ts, BEGIN_SQL). A day's partition starts empty and grows by thousands of
// rows a second, while autovacuum analyzes it at most once a minute: for a while its statistics
// say it holds a small fraction of its rows. The planner then read every row of the day once,
// kept them in memory and compared each against each update of the batch (a nested loop over
// a materialized scan): at the benchmark's 50,000 jobs a day's partition, the update cost
// 260 µs of database time per job instead of 65, in one run out of three or four, depending on
// when autovacuum came by. The test builds the stale statistics on purpose and compares the
// batch's time with the same batch's after a fresh ANALYZE.

import { describe, expect, it } from 'vitest';
import type { Job } from '../../node/core/job/job.ts';
import { usePgStore } from '../support/pg-store-fixture.ts';
import { insertOf, lease, newJob } from '../support/jobs.ts';
import { CONFORMANCE_BASE_MS } from './store-conformance.ts';

const BATCH = 1_000;
/** Jobs added after the ANALYZE, as a busy morning adds them before autovacuum comes by. */
const GROWTH_BATCHES = 40;

describe('PostgreSQL commits on a partition with stale statistics', () => {
  const setUp = usePgStore();

  it('update by key probes as fast as with fresh statistics', async () => {
    const { s, admin } = await setUp();
    const shards = await s.acquireShards('node-a', [0], 60_000);
    const epoch = shards[0]!.epoch;
    // Jobs scheduled one a millisecond from `fromMs`, as a day's jobs arrive: later ones lie past
    // what the last ANALYZE saw.
    const jobs = (count: number, fromMs: number): Job[] => Array.from({ length: count }, (_, i) => newJob({ shard: 0, scheduledAtMs: fromMs + i }));
    const insert = async (batch: Job[]) => expect(await s.commit({ shards, writes: batch.map(insertOf) })).toMatchObject({ status: 'committed' });
    const leaseAll = async (batch: Job[]): Promise<number> => {
      const startedMs = performance.now();
      const outcome = await s.commit({ shards, writes: batch.map((job) => lease(job, epoch).write) });
      const elapsedMs = performance.now() - startedMs;
      expect(outcome).toMatchObject({ status: 'committed', outcomes: batch.map(() => ({ ok: true })) });
      return elapsedMs;
    };

    await insert(jobs(BATCH, CONFORMANCE_BASE_MS));
    await admin.query('ANALYZE jobs');
    let nextMs = CONFORMANCE_BASE_MS + BATCH;
    const later = (): Job[] => {
      const batch = jobs(BATCH, nextMs);
      nextMs += BATCH;
      return batch;
    };
    const stale = later();
    await insert(stale);
    for (let i = 0; i < GROWTH_BATCHES; i++) await insert(later());
    const staleMs = await leaseAll(stale);

    const fresh = later();
    await insert(fresh);
    await admin.query('ANALYZE jobs');
    const freshMs = await leaseAll(fresh);

    // The planner's mistake cost 20-40x here; time on a busy machine varies by less than 4x.
    expect(staleMs).toBeLessThan(4 * freshMs + 20);
  });
});
