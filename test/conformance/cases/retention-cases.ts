// Retention: daily partitions ahead, expired ones dropped only when nothing in them is live.
// These cases use days of March 2020, far from the other cases' day, so nothing else expires.

import { describe, expect, it } from 'vitest';
import type { RetentionReport } from '../../../node/core/store.ts';
import { complete, insertOf, lease, newJob } from '../../support/jobs.ts';
import { OK, committed, own, type SuiteContext } from './suite-context.ts';

const DAY_MS = 86_400_000;
const MARCH_1 = Date.UTC(2020, 2, 1);
const HOUR_MS = 3_600_000;

export function retentionCases(ctx: SuiteContext): void {
  describe('retention', () => {
    it('creates partitions ahead, keeps expired ones with live jobs, drops the others with their keys', async () => {
      const a = await ctx.open();
      expect(await a.retention({ daysAhead: 3, keepDays: 2 }, MARCH_1 + 5 * HOUR_MS)).toEqual(
        report({ created: ['jobs_p20200301', 'jobs_p20200302', 'jobs_p20200303'] }),
      );
      expect(await a.retention({ daysAhead: 3, keepDays: 2 }, MARCH_1 + 6 * HOUR_MS)).toEqual(report({}));

      const leases = await own(a, 'node-a', [0]);
      const live = newJob({ shard: 0, scheduledAtMs: MARCH_1 + HOUR_MS });
      const finished = newJob({ shard: 0, scheduledAtMs: MARCH_1 + DAY_MS + HOUR_MS, idempotencyKey: 'old-key' });
      const leased = lease(finished, leases[0]!.epoch);
      const done = complete(leased.next);
      await committed(a, { shards: leases, writes: [insertOf(live), insertOf(finished), leased.write, done.write] });

      // March 3 ended 7 days before "now", March 2 ended 8 days before: both past keepDays.
      const now = MARCH_1 + 10 * DAY_MS + HOUR_MS;
      expect(await a.retention({ daysAhead: 1, keepDays: 2 }, now)).toEqual(
        report({ created: ['jobs_p20200311'], dropped: ['jobs_p20200302', 'jobs_p20200303'], keptLive: ['jobs_p20200301'] }),
      );
      expect(await a.getJob(live.id)).toEqual(live);
      expect(await a.getJob(finished.id)).toBeNull();
      // The dropped job's key went with it: the key is free again.
      expect(await a.findByIdempotencyKey('tenant-a', 'old-key')).toBeNull();
      const reuse = newJob({ shard: 0, scheduledAtMs: MARCH_1 + 10 * DAY_MS, idempotencyKey: 'old-key' });
      expect(await committed(a, { shards: leases, writes: [insertOf(reuse)] })).toEqual([OK]);

      // Once its last live job finishes, the partition goes on the next pass.
      const liveLeased = lease(live, leases[0]!.epoch);
      await committed(a, { shards: leases, writes: [liveLeased.write, complete(liveLeased.next).write] });
      expect(await a.retention({ daysAhead: 1, keepDays: 2 }, now)).toEqual(report({ dropped: ['jobs_p20200301'] }));
      expect(await a.getJob(live.id)).toBeNull();
      expect(await a.getJob(reuse.id)).toEqual(reuse);
    });

    it('an empty partition goes only once its day ended more than keepDays ago', async () => {
      const a = await ctx.open();
      await a.retention({ daysAhead: 2, keepDays: 5 }, MARCH_1);
      // At March 8 00:00, March 1 ended 6 days ago and March 2 exactly 5 days ago.
      const march8 = MARCH_1 + 7 * DAY_MS;
      expect(await a.retention({ daysAhead: 0, keepDays: 5 }, march8)).toEqual(report({ dropped: ['jobs_p20200301'] }));
      expect(await a.retention({ daysAhead: 0, keepDays: 5 }, march8 + 1)).toEqual(report({ dropped: ['jobs_p20200302'] }));
    });

    it('two nodes running retention at once create each partition once', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const options = { daysAhead: 4, keepDays: 1 };
      const reports = await Promise.all([a.retention(options, MARCH_1), b.retention(options, MARCH_1)]);
      expect(reports.some((r) => r.ran)).toBe(true);
      const created = reports.flatMap((r) => r.created).sort();
      expect(created).toEqual(['jobs_p20200301', 'jobs_p20200302', 'jobs_p20200303', 'jobs_p20200304']);
    });
  });
}

function report(parts: Partial<RetentionReport>): RetentionReport {
  return { created: [], dropped: [], keptLive: [], ran: true, ...parts };
}
