// Reads: a shard's live jobs by (run_at, id), a tenant's jobs newest first.

import { describe, expect, it } from 'vitest';
import type { Job } from '../../../node/core/job/job.ts';
import type { ListFilter, Store } from '../../../node/core/store.ts';
import { insertOf, lease, newJob } from '../../support/jobs.ts';
import { committed, own, type SuiteContext } from './suite-context.ts';

const byRunAtThenId = (x: Job, y: Job): number => x.runAtMs - y.runAtMs || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
const newestFirst = (x: Job, y: Job): number => y.createdAtMs - x.createdAtMs || (x.id < y.id ? 1 : x.id > y.id ? -1 : 0);

export function readCases(ctx: SuiteContext): void {
  describe('reads', () => {
    it('loadShardJobs pages through one shard and state by (run_at, id), ties included', async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', [5, 6]);
      // run_at takes 4 values so that pages end inside runs of equal run_at.
      const jobs = Array.from({ length: 23 }, (_, i) => newJob({ shard: 5, scheduledAtMs: ctx.baseMs + i, runAtMs: ctx.baseMs + (i % 4) * 10 }));
      const elsewhere = Array.from({ length: 4 }, (_, i) => newJob({ shard: 6, scheduledAtMs: ctx.baseMs + i }));
      const leased = jobs.slice(0, 3).map((job) => lease(job, leases[0]!.epoch));
      await committed(a, { shards: leases, writes: [...jobs, ...elsewhere].map(insertOf) });
      await committed(a, { shards: leases, writes: leased.map((s) => s.write) });

      const pending = jobs.slice(3).sort(byRunAtThenId);
      expect(await loadAll(a, 5, 'pending', 5)).toEqual(pending);
      expect(await loadAll(a, 5, 'pending', 1)).toEqual(pending);
      expect(await loadAll(a, 5, 'running', 2)).toEqual(leased.map((s) => s.next).sort(byRunAtThenId));
      expect(await loadAll(a, 6, 'pending', 100)).toEqual(elsewhere.sort(byRunAtThenId));
      expect(await loadAll(a, 7, 'pending', 100)).toEqual([]);
    });

    it('listJobs pages newest first, filters by state and queue, and never shows another tenant', async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', [0, 1]);
      const mine = Array.from({ length: 30 }, (_, i) =>
        newJob({
          shard: i % 2,
          scheduledAtMs: ctx.baseMs + i,
          tenant: 'tenant-list',
          queue: i % 3 === 0 ? 'reports' : 'emails',
          // Pairs share created_at, so pages also end between equal timestamps.
          createdAtMs: ctx.baseMs + Math.floor(i / 2) * 1000,
        }),
      );
      const theirs = Array.from({ length: 10 }, (_, i) => newJob({ shard: i % 2, scheduledAtMs: ctx.baseMs + 100 + i, tenant: 'tenant-other' }));
      const leased = mine.filter((_, i) => i % 5 === 0).map((job) => lease(job, leases[job.shard]!.epoch));
      await committed(a, { shards: leases, writes: [...mine, ...theirs].map(insertOf) });
      await committed(a, { shards: leases, writes: leased.map((s) => s.write) });
      const current = mine.map((job) => leased.find((s) => s.next.id === job.id)?.next ?? job).sort(newestFirst);

      expect(await listAll(a, 'tenant-list', { limit: 7 })).toEqual(current);
      expect(await listAll(a, 'tenant-list', { limit: 7, state: 'running' })).toEqual(current.filter((j) => j.state === 'running'));
      expect(await listAll(a, 'tenant-list', { limit: 4, queue: 'reports' })).toEqual(current.filter((j) => j.queue === 'reports'));
      expect(await listAll(a, 'tenant-list', { limit: 3, queue: 'reports', state: 'pending' })).toEqual(
        current.filter((j) => j.queue === 'reports' && j.state === 'pending'),
      );
      expect(await listAll(a, 'tenant-list', { limit: 100, state: 'dead' })).toEqual([]);
      expect(await listAll(a, 'tenant-nobody', { limit: 100 })).toEqual([]);
      const onePage = await a.listJobs('tenant-list', { limit: 100 });
      expect(onePage).toEqual({ items: current, next: null });
    });

    it('listJobs returns at most 1,000 jobs a page', async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', [2]);
      const jobs = Array.from({ length: 1001 }, (_, i) => newJob({ shard: 2, scheduledAtMs: ctx.baseMs + i, tenant: 'tenant-big' }));
      await committed(a, { shards: leases, writes: jobs.map(insertOf) });
      const page = await a.listJobs('tenant-big', { limit: 5000 });
      expect(page.items).toHaveLength(1000);
      expect(page.next).not.toBeNull();
      const rest = await a.listJobs('tenant-big', { limit: 5000, after: page.next });
      expect(rest).toEqual({ items: [jobs.sort(newestFirst).at(-1)], next: null });
    });

    it('listJobs refuses a cursor it did not make with a RangeError, not an empty page', async () => {
      const a = await ctx.open();
      for (const after of ['not-a-cursor', 'W10', '!!!']) {
        await expect(a.listJobs('tenant-x', { limit: 10, after })).rejects.toBeInstanceOf(RangeError);
      }
    });
  });
}

async function loadAll(store: Store, shard: number, state: 'pending' | 'running', pageSize: number): Promise<Job[]> {
  const all: Job[] = [];
  for (;;) {
    const last = all.at(-1);
    const page = await store.loadShardJobs(shard, state, last === undefined ? null : { runAtMs: last.runAtMs, id: last.id }, pageSize);
    expect(page.length).toBeLessThanOrEqual(pageSize);
    all.push(...page);
    if (page.length < pageSize) return all;
  }
}

async function listAll(store: Store, tenant: string, filter: Omit<ListFilter, 'after'>): Promise<Job[]> {
  const all: Job[] = [];
  let after: string | null = null;
  do {
    const page = await store.listJobs(tenant, { ...filter, after });
    expect(page.items.length).toBeLessThanOrEqual(filter.limit);
    all.push(...page.items);
    after = page.next;
  } while (after !== null);
  return all;
}
