import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatJobId, parseJobId, shardForSubmission, shardOfJobId } from '../../protocol/job-id.ts';

describe('job ids', () => {
  it('round-trip: any node tells shard and partition from the id alone', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4095 }),
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (shard, scheduledAtMs, epoch, seq) => {
          const id = formatJobId({ shard, scheduledAtMs, epoch, seq });
          expect(parseJobId(id)).toEqual({ shard, scheduledAtMs, epoch, seq });
          expect(shardOfJobId(id, 4096)).toBe(shard);
        },
      ),
    );
  });

  it('refuses what is not an id', () => {
    for (const bad of ['', 'x', '00g-1-1-1', '001-1-1', '001-1-1-1-1', '001-A-1-1', `001-${'z'.repeat(12)}-1-1`]) {
      expect(parseJobId(bad), bad).toBeNull();
    }
    expect(shardOfJobId(formatJobId({ shard: 300, scheduledAtMs: 1, epoch: 1, seq: 1 }), 256)).toBeNull();
  });

  it('an idempotency key always lands on the same shard; the shard count bounds it', () => {
    const random = () => 99;
    expect(shardForSubmission('t', 'k1', 256, random)).toBe(shardForSubmission('t', 'k1', 256, random));
    expect(shardForSubmission('t', null, 256, random)).toBe(99);
    fc.assert(fc.property(fc.string(), fc.string(), (t, k) => {
      const s = shardForSubmission(t, k, 256, random);
      expect(s >= 0 && s < 256 && Number.isInteger(s)).toBe(true);
    }));
  });
});

describe('partition days', () => {
  it('names the UTC day like the calendar does', async () => {
    const { partitionName, partitionDay } = await import('../../node/core/retention-days.ts');
    fc.assert(fc.property(fc.integer({ min: 0, max: 4_102_444_800_000 }), (ms) => {
      const iso = new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
      expect(partitionName(partitionDay(ms))).toBe(`jobs_p${iso}`);
    }));
  });
});
