// Idempotency keys: one key, one job, whoever submits it, however concurrently.

import { describe, expect, it } from 'vitest';
import type { Job } from '../../../node/core/job/job.ts';
import type { CommitResult, ShardLease, Store, WriteOutcome } from '../../../node/core/store.ts';
import { insertOf, newJob } from '../../support/jobs.ts';
import { OK, committed, duplicateOf, own, type SuiteContext } from './suite-context.ts';

export function idempotencyCases(ctx: SuiteContext): void {
  const keyed = (key: string, tenant = 'tenant-a', offsetMs = 0): Job =>
    newJob({ shard: 0, scheduledAtMs: ctx.baseMs + offsetMs, tenant, idempotencyKey: key });

  describe('idempotency', () => {
    it('the same key submitted twice in a row yields one job; other tenants have their own keys', async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', [0]);
      const first = keyed('order-1');
      const again = keyed('order-1', 'tenant-a', 5);
      const otherTenant = keyed('order-1', 'tenant-b');
      expect(await committed(a, { shards: leases, writes: [insertOf(first)] })).toEqual([OK]);
      expect(await committed(a, { shards: leases, writes: [insertOf(again), insertOf(otherTenant)] })).toEqual([
        duplicateOf(first.id),
        OK,
      ]);
      expect(await a.getJob(again.id)).toBeNull();
      expect(await a.findByIdempotencyKey('tenant-a', 'order-1')).toBe(first.id);
      expect(await a.findByIdempotencyKey('tenant-b', 'order-1')).toBe(otherTenant.id);
      expect(await a.findByIdempotencyKey('tenant-a', 'order-2')).toBeNull();
    });

    it('the same key twice in one batch: the earlier write wins', async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', [0]);
      const [x, y] = [keyed('dup'), keyed('dup', 'tenant-a', 1)];
      expect(await committed(a, { shards: leases, writes: [insertOf(x), insertOf(y)] })).toEqual([OK, duplicateOf(x.id)]);
      expect(await a.loadShardJobs(0, 'pending', null, 10)).toEqual([x]);
    });

    it('the same keys submitted concurrently from two clients yield one job each', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      // Two pipelines of one owner (or an owner and its successor's retry) write the same
      // keys at once; the store alone must make one of each pair win.
      const leases = await own(a, 'node-a', [0]);
      for (let round = 0; round < 5; round++) {
        const keys = Array.from({ length: 40 }, (_, i) => `r${round}-k${i}`);
        const fromA = keys.map((key, i) => keyed(key, 'tenant-a', i));
        const fromB = keys.map((key, i) => keyed(key, 'tenant-a', 100 + i));
        // Whole batches in opposite key orders, and single-insert commits, all in flight at once.
        const groups = [fromA.slice(0, 20), fromB.slice(0, 20).reverse()];
        for (let i = 20; i < keys.length; i++) groups.push([fromA[i]!], [fromB[i]!]);
        const attempts = groups.map((jobs, i) => ({ jobs, result: commitInserts(i % 2 === 0 ? a : b, leases, jobs) }));
        const outcomeOf = new Map<string, WriteOutcome>();
        for (const { jobs, result } of attempts) {
          const settled = await result;
          if (settled.status !== 'committed') throw new Error(`expected a commit, got ${JSON.stringify(settled)}`);
          jobs.forEach((job, i) => outcomeOf.set(job.id, settled.outcomes[i]!));
        }

        for (let i = 0; i < keys.length; i++) {
          const [jobA, jobB] = [fromA[i]!, fromB[i]!];
          const winner = await a.findByIdempotencyKey('tenant-a', keys[i]!);
          expect([jobA.id, jobB.id]).toContain(winner);
          const loser = winner === jobA.id ? jobB : jobA;
          expect(outcomeOf.get(winner!)).toEqual(OK);
          expect(outcomeOf.get(loser.id)).toEqual(duplicateOf(winner!));
          expect(await a.getJob(loser.id)).toBeNull();
          expect(await a.getJob(winner!)).not.toBeNull();
        }
      }
    });
  });
}

function commitInserts(store: Store, shards: ShardLease[], jobs: Job[]): Promise<CommitResult> {
  return store.commit({ shards, writes: jobs.map(insertOf) });
}
