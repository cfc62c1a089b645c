// The fenced write path: shard epochs, lease tokens, versions, atomicity, ordering.

import { describe, expect, it } from 'vitest';
import { leaseTokenOf, type Job } from '../../../node/core/job/job.ts';
import type { JobWrite } from '../../../node/core/store.ts';
import { complete, insertOf, lease, newJob, retry, step } from '../../support/jobs.ts';
import { CONFLICT, OK, committed, own, type SuiteContext } from './suite-context.ts';

export function commitCases(ctx: SuiteContext): void {
  const job = (shard: number, offsetMs = 0, extra: Partial<Parameters<typeof newJob>[0]> = {}): Job =>
    newJob({ shard, scheduledAtMs: ctx.baseMs + offsetMs, ...extra });

  describe('commit fencing', () => {
    it("after a takeover bumps the epoch, the old owner's commit is refused and writes nothing", async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [leaseA] = await own(a, 'node-a', [0]);
      const j1 = job(0);
      expect(await committed(a, { shards: [leaseA!], writes: [insertOf(j1)] })).toEqual([OK]);

      await ctx.lapseLeases([0]);
      const [leaseB] = await own(b, 'node-b', [0]);
      expect(leaseB!.epoch).toBe(leaseA!.epoch + 1);

      const j2 = job(0, 1);
      const stale = await a.commit({ shards: [leaseA!], writes: [insertOf(j2), lease(j1, leaseA!.epoch).write] });
      expect(stale).toEqual({ status: 'stale_epoch', staleShards: [0] });
      expect(await a.getJob(j2.id)).toBeNull();
      expect(await a.getJob(j1.id)).toEqual(j1);

      // The new owner writes under its own epoch.
      expect(await committed(b, { shards: [leaseB!], writes: [lease(j1, leaseB!.epoch).write] })).toEqual([OK]);
    });

    it('a batch over a current and a stale shard writes nothing at all', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const leases = await own(a, 'node-a', [0, 1]);
      await ctx.lapseLeases([1]);
      await own(b, 'node-b', [1]);
      const writes = [insertOf(job(0)), insertOf(job(1))];
      expect(await a.commit({ shards: leases, writes })).toEqual({ status: 'stale_epoch', staleShards: [1] });
      expect(await a.loadShardJobs(0, 'pending', null, 10)).toEqual([]);
      expect(await a.loadShardJobs(1, 'pending', null, 10)).toEqual([]);
    });

    it('1,000 inserts commit together, and the same batch with one stale shard writes none of them', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [lease0, lease1] = await own(a, 'node-a', [0, 1]);
      await ctx.lapseLeases([1]);
      await own(b, 'node-b', [1]);
      const jobs = Array.from({ length: 1000 }, (_, i) => job(0, i, { runAtMs: ctx.baseMs + (i % 17) * 1000 }));
      const writes = jobs.map(insertOf);

      expect(await a.commit({ shards: [lease0!, lease1!], writes })).toEqual({ status: 'stale_epoch', staleShards: [1] });
      expect(await a.loadShardJobs(0, 'pending', null, 1000)).toEqual([]);

      const outcomes = await committed(a, { shards: [lease0!], writes });
      expect(outcomes).toHaveLength(1000);
      expect(outcomes.every((o) => o.ok)).toBe(true);
      const loaded = await a.loadShardJobs(0, 'pending', null, 1000);
      expect(loaded).toHaveLength(1000);
    });
  });

  describe('job fencing', () => {
    it('a completion under a stale lease token is refused as a conflict', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [2]);
      const j0 = job(2);
      const first = lease(j0, shard!.epoch);
      const failed = retry(first.next, ctx.baseMs + 5_000);
      const second = lease(failed.next, shard!.epoch);
      await committed(a, { shards: [shard!], writes: [insertOf(j0), first.write, failed.write, second.write] });

      // A zombie worker of attempt 1 reports success, against the job's current version.
      const zombie = complete(first.next).next;
      const forged: JobWrite = {
        kind: 'update',
        next: { ...zombie, version: second.next.version + 1, attempts: 1 },
        expectedVersion: second.next.version,
        token: leaseTokenOf(first.next),
      };
      // The right attempt under another epoch is just as stale.
      const otherEpoch: JobWrite = { ...forged, token: { jobId: j0.id, attempt: 2, epoch: shard!.epoch + 1 } };
      expect(await committed(a, { shards: [shard!], writes: [forged] })).toEqual([CONFLICT]);
      expect(await committed(a, { shards: [shard!], writes: [otherEpoch] })).toEqual([CONFLICT]);
      expect(await a.getJob(j0.id)).toEqual(second.next);

      const done = complete(second.next, new Uint8Array([9]));
      expect(await committed(a, { shards: [shard!], writes: [done.write] })).toEqual([OK]);
      expect(await a.getJob(j0.id)).toEqual({ ...done.next });
    });

    it('a write under the token of a lease that was given back (pending again, same attempt and epoch) is refused', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [2]);
      const j0 = job(2);
      const leased = lease(j0, shard!.epoch);
      const released = step(leased.next, { kind: 'release', token: leaseTokenOf(leased.next)!, runAtMs: ctx.baseMs + 1_000 });
      await committed(a, { shards: [shard!], writes: [insertOf(j0), leased.write, released.write] });
      const stored = (await a.getJob(j0.id))!;
      expect(stored).toMatchObject({ state: 'pending', attempts: leased.next.attempts, leaseEpoch: shard!.epoch });

      // The worker that gave the lease back reports success after all, against the current
      // version: attempt and lease epoch still match, but the job no longer runs under them.
      const forged: JobWrite = {
        kind: 'update',
        next: { ...complete(leased.next).next, version: released.next.version + 1 },
        expectedVersion: released.next.version,
        token: leaseTokenOf(leased.next),
      };
      expect(await committed(a, { shards: [shard!], writes: [forged] })).toEqual([CONFLICT]);
      expect(await a.getJob(j0.id)).toEqual(released.next);
    });

    it('a write based on a stale version is refused, and of two racing writers exactly one wins', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [shard] = await own(a, 'node-a', [3]);
      const j0 = job(3);
      const leased = lease(j0, shard!.epoch);
      await committed(a, { shards: [shard!], writes: [insertOf(j0), leased.write] });

      const cancel = step(leased.next, { kind: 'cancel' });
      const done = complete(leased.next);
      const results = await Promise.all([
        a.commit({ shards: [shard!], writes: [cancel.write] }),
        b.commit({ shards: [shard!], writes: [done.write] }),
      ]);
      const outcomes = results.map((r) => (r.status === 'committed' ? r.outcomes[0] : undefined));
      expect(outcomes.filter((o) => o?.ok)).toHaveLength(1);
      expect(outcomes).toContainEqual(CONFLICT);
      const stored = (await a.getJob(j0.id))!;
      expect(stored.version).toBe(leased.next.version + 1);
      expect(['cancelled', 'succeeded']).toContain(stored.state);

      // The loser retried from its old read is still refused; so is a write to a missing job.
      expect(await committed(a, { shards: [shard!], writes: [done.write] })).toEqual([CONFLICT]);
      const ghost = lease(job(3, 99), shard!.epoch).write;
      expect(await committed(a, { shards: [shard!], writes: [ghost] })).toEqual([CONFLICT]);
    });

    it('two writes of one job in one batch apply in order', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [4]);
      const j0 = job(4);
      const leased = lease(j0, shard!.epoch);
      const done = complete(leased.next, new Uint8Array([7, 7]));
      expect(await committed(a, { shards: [shard!], writes: [insertOf(j0), leased.write, done.write] })).toEqual([OK, OK, OK]);
      expect(await a.getJob(j0.id)).toEqual(done.next);

      // The second write expects the version the first one replaced: refused, the first stays.
      const j1 = job(4, 1);
      await committed(a, { shards: [shard!], writes: [insertOf(j1)] });
      const leased1 = lease(j1, shard!.epoch);
      const staleCancel = step(j1, { kind: 'cancel' });
      expect(await committed(a, { shards: [shard!], writes: [leased1.write, staleCancel.write] })).toEqual([OK, CONFLICT]);
      expect(await a.getJob(j1.id)).toEqual(leased1.next);
    });

    it('a retry moves a running job back to pending with the new run_at', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [5]);
      const j0 = job(5);
      const leased = lease(j0, shard!.epoch);
      await committed(a, { shards: [shard!], writes: [insertOf(j0), leased.write] });
      expect((await a.loadShardJobs(5, 'running', null, 10)).map((j) => j.id)).toEqual([j0.id]);

      const runAtMs = ctx.baseMs + 61_007;
      const retried = retry(leased.next, runAtMs, 'connection refused');
      expect(await committed(a, { shards: [shard!], writes: [retried.write] })).toEqual([OK]);
      const stored = await a.getJob(j0.id);
      expect(stored).toEqual(retried.next);
      expect(stored).toMatchObject({ state: 'pending', runAtMs, attempts: 1, lastError: 'connection refused', leaseExpiresAtMs: null });
      expect(await a.loadShardJobs(5, 'running', null, 10)).toEqual([]);
      expect(await a.loadShardJobs(5, 'pending', null, 10)).toEqual([retried.next]);
    });

    it('every field of a job survives the round trip', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [6]);
      const j0: Job = {
        ...job(6, 1, { tenant: 'tenant-ü', queue: 'emails', idempotencyKey: 'key/1', payload: new Uint8Array([0, 255, 10, 92, 34]) }),
        priority: -17,
        runAtMs: ctx.baseMs + 86_400_001,
        retry: { attemptsMax: 3, backoffBaseMs: 250, backoffMaxMs: 90_000, jitter: 0.3 },
        createdAtMs: ctx.baseMs - 1,
        updatedAtMs: ctx.baseMs - 1,
      };
      await committed(a, { shards: [shard!], writes: [insertOf(j0)] });
      expect(await a.getJob(j0.id)).toEqual(j0);
      const leased = lease(j0, shard!.epoch, ctx.baseMs + 3);
      const buried = step(leased.next, { kind: 'bury', token: leaseTokenOf(leased.next)!, error: 'x'.repeat(4096) }, ctx.baseMs + 5);
      await committed(a, { shards: [shard!], writes: [leased.write, buried.write] });
      expect(await a.getJob(j0.id)).toEqual(buried.next);
      expect(await a.getJob('not-a-job-id')).toBeNull();
      expect(await a.getJob(job(6, 2).id)).toBeNull();
    });

    it('re-sending a batch that committed (after an unknown outcome) changes nothing', async () => {
      const a = await ctx.open();
      const [shard] = await own(a, 'node-a', [7]);
      const keyed = job(7, 0, { idempotencyKey: 'resend' });
      const plain = job(7, 1);
      const leased = lease(plain, shard!.epoch);
      const batch = { shards: [shard!], writes: [insertOf(keyed), insertOf(plain), leased.write] };
      expect(await committed(a, batch)).toEqual([OK, OK, OK]);
      expect(await committed(a, batch)).toEqual([{ ok: false, reason: 'duplicate', existingJobId: keyed.id }, CONFLICT, CONFLICT]);
      expect(await a.getJob(plain.id)).toEqual(leased.next);
      expect(await a.loadShardJobs(7, 'pending', null, 10)).toEqual([keyed]);
    });
  });
}
