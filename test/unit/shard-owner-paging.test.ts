// The shard owner's paging on virtual time: reads of the store (page-ins, fetches) that race
// with the jobs they return, and delayed jobs, or another lane's, that must not crowd ready
// ones out of memory.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, type LeaseToken } from '../../protocol/job-rules.ts';
import { type Job } from '../../node/core/job/job.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import { DEFAULT_NODE_CONFIG, type KairosNode } from '../../node/core/node.ts';
import type { AckOutcome, JobOutcome, OwnerMsg, Submission, SubmitOutcome, WorkerLink } from '../../node/core/owner/owner-messages.ts';
import type { JobCursor } from '../../node/core/store.ts';
import { MemoryStore } from '../../sim/memory-store.ts';
import { virtualNode } from '../support/virtual-node.ts';

const SHARDS = 1;
const HOLDER = { tenant: 't1', worker: 'n2/w' };

class TestWorker implements WorkerLink {
  leases: Array<{ job: Job; token: LeaseToken }> = [];
  revoked: LeaseToken[] = [];
  constructor(readonly id: string) {}
  lease(job: Job, token: LeaseToken): void {
    this.leases.push({ job, token });
  }
  revoke(token: LeaseToken): void {
    this.revoked.push(token);
  }
}

/** A store whose reads can be held: a held read sees the store as it is when called, and
 * answers only when released, as a slow query does. */
class GatedStore extends MemoryStore {
  holdPending = false;
  holdGet = false;
  private held: Array<() => void> = [];

  override async loadShardJobs(shard: number, state: 'pending' | 'running', after: JobCursor | null, limit: number): Promise<Job[]> {
    const rows = super.loadShardJobs(shard, state, after, limit);
    if (state === 'pending' && this.holdPending) await new Promise<void>((resolve) => this.held.push(resolve));
    return rows;
  }

  override async getJob(id: string): Promise<Job | null> {
    const row = super.getJob(id);
    if (this.holdGet) await new Promise<void>((resolve) => this.held.push(resolve));
    return row;
  }

  get heldCount(): number {
    return this.held.length;
  }

  release(): void {
    this.holdPending = false;
    this.holdGet = false;
    for (const resolve of this.held.splice(0)) resolve();
  }
}

function setup(overrides: Partial<typeof DEFAULT_NODE_CONFIG.owner> = {}) {
  return virtualNode(SHARDS, overrides, (backing) => new GatedStore(backing));
}

function submission(partial: Partial<Submission> = {}): Submission {
  return { queue: 'q', payload: new Uint8Array([1]), priority: 0, runAtMs: null, delayMs: 0, idempotencyKey: null, retry: DEFAULT_RETRY_POLICY, ...partial };
}

function tell<T>(node: KairosNode, build: (reply: (o: T) => void) => OwnerMsg): { outcome?: T } {
  const box: { outcome?: T } = {};
  node.routes.ownerOf(0)!.tell(build((o) => (box.outcome = o)));
  return box;
}

async function submitted(ctx: ReturnType<typeof setup>, n: number, partial: Partial<Submission> = {}): Promise<string[]> {
  const boxes = Array.from({ length: n }, () => tell<SubmitOutcome>(ctx.node, (reply) => ({ kind: 'submit', tenant: 't1', submission: submission(partial), reply })));
  await ctx.run(() => boxes.every((b) => b.outcome !== undefined));
  return boxes.map((b) => {
    expect(b.outcome?.ok).toBe(true);
    return (b.outcome as { jobId: string }).jobId;
  });
}

async function completed(ctx: ReturnType<typeof setup>, token: LeaseToken): Promise<void> {
  // The lease write commits first; the verdict waits for it.
  const done = tell<AckOutcome>(ctx.node, (reply) => ({ kind: 'complete', token, holder: HOLDER, result: null, reply }));
  await ctx.run(() => done.outcome !== undefined);
  expect(done.outcome).toEqual({ ok: true });
}

function joined(ctx: ReturnType<typeof setup>): TestWorker {
  const worker = new TestWorker(HOLDER.worker);
  ctx.node.dispatcher.tell({ kind: 'worker_joined', worker });
  return worker;
}

function credit(ctx: ReturnType<typeof setup>, worker: TestWorker, slots: number): void {
  ctx.node.dispatcher.tell({ kind: 'credit', workerId: worker.id, lane: laneOf('t1', 'q'), slots });
}

function leasedTwice(worker: TestWorker): string[] {
  const seen = new Set<string>();
  return worker.leases.map((l) => l.token.jobId).filter((id) => seen.has(id) || !seen.add(id));
}

describe('shard owner paging', () => {
  it('a page-in that read a job before it finished does not bring it back', async () => {
    const ctx = setup({ memoryJobsMax: 4 });
    expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
    const ids = await submitted(ctx, 8); // 4 in memory, 4 left in the store
    const worker = joined(ctx);
    // Leasing 3 leaves one queued: a page-in starts, and reads the 3 as still pending.
    ctx.store.holdPending = true;
    credit(ctx, worker, 3);
    await ctx.run(() => worker.leases.length === 3 && ctx.store.heldCount === 1);
    for (const { token } of worker.leases) await completed(ctx, token);
    expect(ids.slice(0, 3).every((id) => ctx.backing.jobs.get(id)?.state === 'succeeded')).toBe(true);
    ctx.store.release();
    credit(ctx, worker, 10);
    await ctx.run(() => false, 5_000);
    expect(leasedTwice(worker)).toEqual([]);
    expect(worker.leases).toHaveLength(8);
    expect(ctx.node.routes.ownerOf(0)).toBeDefined();
    expect(ctx.backing.shards[0]!.epoch).toBe(1); // never failed and reloaded
  });

  it('a fetch that read a job before it finished does not bring it back', async () => {
    const ctx = setup({ memoryJobsMax: 4 });
    expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
    const ids = await submitted(ctx, 8);
    const spilled = ids[7]!;
    // A subscription to a job in the store fetches it; the fetch reads it as pending.
    ctx.store.holdGet = true;
    const sub = tell<JobOutcome>(ctx.node, (reply) => ({
      kind: 'subscribe', tenant: 't1', jobId: spilled, subscriber: { id: 's', changed: () => {}, moved: () => {} }, reply,
    }));
    await ctx.run(() => ctx.store.heldCount === 1);
    // Meanwhile a page-in brings it in, and it runs and succeeds.
    const worker = joined(ctx);
    credit(ctx, worker, 8);
    await ctx.run(() => worker.leases.length === 8);
    for (const { token } of worker.leases) await completed(ctx, token);
    expect(ctx.backing.jobs.get(spilled)?.state).toBe('succeeded');
    ctx.store.release();
    await ctx.run(() => sub.outcome !== undefined);
    credit(ctx, worker, 10);
    await ctx.run(() => false, 5_000);
    expect(leasedTwice(worker)).toEqual([]);
    expect(sub.outcome).toMatchObject({ ok: true, job: { id: spilled, state: 'succeeded' } });
    expect(ctx.backing.shards[0]!.epoch).toBe(1);
  });

  it('ready jobs of a lane no worker takes, filling memory, do not keep another lane\'s new job out', async () => {
    const ctx = setup({ memoryJobsMax: 4 });
    expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
    await submitted(ctx, 8, { queue: 'nobody-works-it' }); // memory full of them, 4 more in the store
    // Submitted while no worker waits, so it is queued rather than inserted leased.
    const [job] = await submitted(ctx, 1);
    const worker = joined(ctx);
    credit(ctx, worker, 1);
    const t0 = ctx.queue.nowMs;
    await ctx.run(() => worker.leases.length === 1, 5_000);
    expect(worker.leases.map((l) => l.token.jobId)).toEqual([job]);
    expect(ctx.queue.nowMs - t0).toBeLessThan(100);
  });

  it('delayed jobs do not crowd ready ones out of memory, and still run on time', async () => {
    const DAY = 86_400_000;
    const ctx = setup({ memoryJobsMax: 10, leaseMs: 30 * DAY });
    expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
    // Far more future jobs than memory holds, latest first: the owner keeps the earliest.
    const delayed: string[] = [];
    for (let i = 49; i >= 0; i--) delayed.push(...(await submitted(ctx, 1, { delayMs: DAY + i * 1_000 })));
    const ready = await submitted(ctx, 5);
    const worker = joined(ctx);
    credit(ctx, worker, 100);
    const t0 = ctx.queue.nowMs;
    await ctx.run(() => worker.leases.length === 5, 1_000);
    expect(worker.leases.map((l) => l.token.jobId).sort()).toEqual([...ready].sort());
    expect(ctx.queue.nowMs - t0).toBeLessThan(100);
    // The delayed ones run when due, each once, none early and none much late.
    const leasedAt = new Map<string, number>();
    while (ctx.queue.nowMs < t0 + DAY + 60_000) {
      await ctx.run(() => worker.leases.length > 5 + leasedAt.size, t0 + DAY + 60_000 - ctx.queue.nowMs);
      for (const { token } of worker.leases.slice(5 + leasedAt.size)) leasedAt.set(token.jobId, ctx.queue.nowMs);
    }
    expect(leasedTwice(worker)).toEqual([]);
    expect([...leasedAt.keys()].sort()).toEqual([...delayed].sort());
    for (const id of delayed) {
      const runAt = ctx.backing.jobs.get(id)!.runAtMs;
      expect(leasedAt.get(id)! - runAt).toBeGreaterThanOrEqual(0);
      expect(leasedAt.get(id)! - runAt).toBeLessThan(1_000);
    }
  });
});
