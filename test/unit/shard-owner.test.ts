// The node's actors (shard manager, owners, committer, dispatcher) on virtual time and the
// in-memory store: submissions, leases by credit, retries with backoff, dead letters, lease
// expiry, cancellation, idempotency, delayed jobs, priorities and fencing.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, type LeaseToken } from '../../protocol/job-rules.ts';
import { type Job } from '../../node/core/job/job.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import { DEFAULT_NODE_CONFIG, createNode, type KairosNode } from '../../node/core/node.ts';
import type { AckOutcome, JobOutcome, Submission, SubmitOutcome, WorkerLink } from '../../node/core/owner/owner-messages.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';
import { virtualNode } from '../support/virtual-node.ts';

const SHARDS = 4;

interface Lease {
  job: Job;
  token: LeaseToken;
}

class TestWorker implements WorkerLink {
  leases: Lease[] = [];
  revoked: Array<{ token: LeaseToken; reason: string }> = [];
  constructor(readonly id: string) {}
  lease(job: Job, token: LeaseToken): void {
    this.leases.push({ job, token });
  }
  revoke(token: LeaseToken, reason: 'cancelled' | 'lease_lost'): void {
    this.revoked.push({ token, reason });
  }
}

function setup(overrides: Partial<typeof DEFAULT_NODE_CONFIG.owner> = {}) {
  return virtualNode(SHARDS, overrides, (backing) => new MemoryStore(backing));
}

function submission(partial: Partial<Submission> = {}): Submission {
  return {
    queue: 'q',
    payload: new Uint8Array([1, 2, 3]),
    priority: 0,
    runAtMs: null,
    delayMs: 0,
    idempotencyKey: null,
    retry: DEFAULT_RETRY_POLICY,
    ...partial,
  };
}

function submit(node: KairosNode, shard: number, s: Submission, tenant = 't1'): { outcome?: SubmitOutcome } {
  const box: { outcome?: SubmitOutcome } = {};
  node.routes.ownerOf(shard)!.tell({ kind: 'submit', tenant, submission: s, reply: (o) => (box.outcome = o) });
  return box;
}

function tellOwner<T>(node: KairosNode, shard: number, build: (reply: (o: T) => void) => Parameters<NonNullable<ReturnType<KairosNode['routes']['ownerOf']>>['tell']>[0]): { outcome?: T } {
  const box: { outcome?: T } = {};
  node.routes.ownerOf(shard)!.tell(build((o) => (box.outcome = o)));
  return box;
}

/** A worker attached to the node, with `slots` of credit for queue q of tenant t1. */
function joinWorker(ctx: ReturnType<typeof setup>, id: string, slots: number): TestWorker {
  const worker = new TestWorker(id);
  ctx.node.dispatcher.tell({ kind: 'worker_joined', worker });
  ctx.node.dispatcher.tell({ kind: 'credit', workerId: id, lane: laneOf('t1', 'q'), slots });
  return worker;
}

async function started(ctx: ReturnType<typeof setup>) {
  expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
}

/** Stops the node gracefully (every shard released) and starts it again on the same store. */
async function restarted(ctx: ReturnType<typeof setup>): Promise<KairosNode> {
  let down = false;
  void ctx.node.shutdown().then(() => (down = true));
  await ctx.run(() => down);
  expect(ctx.backing.shards.every((s) => s.owner === null)).toBe(true);
  const env2 = simEnv({ nodeId: 'n1', queue: ctx.queue, random: new SeededRandom(8), store: ctx.store });
  const node2 = createNode(env2, { ...DEFAULT_NODE_CONFIG, shardCount: SHARDS });
  node2.start();
  await runUntil(ctx.queue, () => node2.routes.served === SHARDS, ctx.queue.nowMs + 10_000);
  return node2;
}

describe('shard owner on virtual time', () => {
  it('acknowledges a submission only once committed, then leases it by credit and completes it', async () => {
    const ctx = setup();
    await started(ctx);
    const box = submit(ctx.node, 1, submission());
    expect(box.outcome).toBeUndefined();
    await ctx.run(() => box.outcome !== undefined);
    expect(box.outcome).toMatchObject({ ok: true, duplicate: false });
    const jobId = (box.outcome as { jobId: string }).jobId;
    expect(ctx.backing.jobs.get(jobId)?.state).toBe('pending');

    const worker = joinWorker(ctx, 'w1', 5);
    await ctx.run(() => worker.leases.length === 1);
    const leasedAtMs = ctx.queue.nowMs;
    const { token } = worker.leases[0]!;
    expect(token).toEqual({ jobId, attempt: 1, epoch: ctx.backing.shards[1]!.epoch });
    // The lease is written leaseWriteDelayMs after it goes out, when no verdict came sooner.
    await ctx.run(() => ctx.backing.jobs.get(jobId)?.state === 'running');
    expect(ctx.queue.nowMs - leasedAtMs).toBeGreaterThanOrEqual(DEFAULT_NODE_CONFIG.owner.leaseWriteDelayMs);

    const done = tellOwner<AckOutcome>(ctx.node, 1, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: 'w1' }, result: new Uint8Array([9]), reply }));
    await ctx.run(() => done.outcome !== undefined);
    expect(done.outcome).toEqual({ ok: true });
    expect(ctx.backing.jobs.get(jobId)).toMatchObject({ state: 'succeeded', attempts: 1, result: new Uint8Array([9]) });

    const again = tellOwner<AckOutcome>(ctx.node, 1, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: 'w1' }, result: null, reply }));
    await ctx.run(() => again.outcome !== undefined);
    expect(again.outcome).toMatchObject({ ok: false, error: { code: 'stale_lease' } });
  });

  it('writes a job finished before its lease was written once: the lease and the verdict together', async () => {
    const ctx = setup();
    await started(ctx);
    const box = submit(ctx.node, 1, submission());
    await ctx.run(() => box.outcome !== undefined);
    const jobId = (box.outcome as { jobId: string }).jobId;
    const inserted = ctx.backing.jobs.get(jobId)!;
    const worker = joinWorker(ctx, 'w1', 1);
    await ctx.run(() => worker.leases.length === 1, 0);
    expect(ctx.backing.jobs.get(jobId)).toMatchObject({ state: 'pending', version: inserted.version });
    const { token } = worker.leases[0]!;
    const done = tellOwner<AckOutcome>(ctx.node, 1, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: 'w1' }, result: null, reply }));
    await ctx.run(() => done.outcome !== undefined);
    expect(done.outcome).toEqual({ ok: true });
    // One write: one version on from the insert, with the lease's attempt and epoch.
    expect(ctx.backing.jobs.get(jobId)).toMatchObject({ state: 'succeeded', attempts: 1, leaseEpoch: token.epoch, leaseWorker: 'w1', version: inserted.version + 1 });
  });

  it('a graceful stop writes the leases it granted, so that the next owner lets their workers finish', async () => {
    const ctx = setup();
    await started(ctx);
    const box = submit(ctx.node, 2, submission());
    await ctx.run(() => box.outcome !== undefined);
    const worker = joinWorker(ctx, 'n9/c1', 1);
    await ctx.run(() => worker.leases.length === 1, 0);
    const { token } = worker.leases[0]!;
    expect(ctx.backing.jobs.get(token.jobId)?.state).toBe('pending');
    const node2 = await restarted(ctx);
    expect(ctx.backing.jobs.get(token.jobId)).toMatchObject({ state: 'running', attempts: 1, leaseWorker: worker.id });
    const mine = tellOwner<AckOutcome>(node2, 2, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: worker.id }, result: null, reply }));
    await runUntil(ctx.queue, () => mine.outcome !== undefined, ctx.queue.nowMs + 10_000);
    expect(mine.outcome).toEqual({ ok: true });
  });

  it('inserts a job already leased when a worker waits, and gives the slot back when the insert is a duplicate', async () => {
    const ctx = setup();
    await started(ctx);
    const worker = joinWorker(ctx, 'w1', 2);
    await ctx.run(() => false, 10);
    const commitsBefore = ctx.backing.commits;
    const first = submit(ctx.node, 1, submission({ idempotencyKey: 'once' }));
    await ctx.run(() => first.outcome !== undefined);
    const jobId = (first.outcome as { jobId: string }).jobId;
    // One commit wrote the job as running: no separate lease write.
    expect(ctx.backing.commits - commitsBefore).toBe(1);
    expect(ctx.backing.jobs.get(jobId)).toMatchObject({ state: 'running', attempts: 1, version: 2 });
    expect(worker.leases.map((l) => l.token)).toEqual([{ jobId, attempt: 1, epoch: ctx.backing.shards[1]!.epoch }]);
    const done = tellOwner<AckOutcome>(ctx.node, 1, (reply) => ({ kind: 'complete', token: worker.leases[0]!.token, holder: { tenant: 't1', worker: 'w1' }, result: null, reply }));
    await ctx.run(() => done.outcome !== undefined);
    expect(ctx.backing.jobs.get(jobId)?.state).toBe('succeeded');

    // A restarted owner no longer remembers the key in memory, so the store finds the duplicate:
    // no lease goes out, and the worker's slot serves the next job.
    ctx.backing.shards[1]!.leaseUntilMs = 0;
    await new MemoryStore(ctx.backing).acquireShards('other', [1], 1);
    await ctx.run(() => ctx.node.routes.ownerOf(1) !== undefined && ctx.backing.shards[1]!.owner === 'n1', 30_000);
    await ctx.run(() => false, 100);
    const again = submit(ctx.node, 1, submission({ idempotencyKey: 'once' }));
    await ctx.run(() => again.outcome !== undefined);
    expect(again.outcome).toEqual({ ok: true, jobId, duplicate: true });
    expect(worker.leases).toHaveLength(1);
    expect(ctx.backing.jobs.size).toBe(1);
    const next = submit(ctx.node, 1, submission());
    await ctx.run(() => next.outcome !== undefined && worker.leases.length === 2);
    expect(worker.leases[1]!.token.jobId).toBe((next.outcome as { jobId: string }).jobId);
  });

  it('runs many jobs across shards exactly once with group commit', async () => {
    const ctx = setup();
    await started(ctx);
    const boxes = Array.from({ length: 2_000 }, (_, i) => submit(ctx.node, i % SHARDS, submission()));
    const worker = joinWorker(ctx, 'w1', 64);
    let completed = 0;
    const done = () => completed === 2_000;
    while (!done()) {
      await ctx.run(() => worker.leases.length > 0);
      const leases = worker.leases.splice(0);
      for (const { token } of leases) {
        tellOwner<AckOutcome>(ctx.node, parseInt(token.jobId.slice(0, 3), 16), (reply) => ({
          kind: 'complete', token, holder: { tenant: 't1', worker: 'w1' }, result: null, reply: (o) => { expect(o.ok).toBe(true); completed++; reply(o); },
        }));
      }
      ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w1', lane: laneOf('t1', 'q'), slots: leases.length });
      await ctx.run(() => false, 10);
    }
    expect(boxes.every((b) => b.outcome?.ok)).toBe(true);
    const jobs = [...ctx.backing.jobs.values()];
    expect(jobs).toHaveLength(2_000);
    expect(jobs.every((j) => j.state === 'succeeded' && j.attempts === 1)).toBe(true);
    // Group commit: far fewer transactions than writes (3 per job).
    expect(ctx.backing.commits).toBeLessThan(2_000);
  });

  it('retries with backoff, then buries after the last attempt; a non-retryable error buries at once', async () => {
    const ctx = setup();
    await started(ctx);
    const policy = { attemptsMax: 3, backoffBaseMs: 1_000, backoffMaxMs: 10_000, jitter: 0 };
    const a = submit(ctx.node, 0, submission({ retry: policy }));
    const b = submit(ctx.node, 0, submission({ retry: policy, queue: 'other' }));
    await ctx.run(() => a.outcome !== undefined && b.outcome !== undefined);
    const worker = joinWorker(ctx, 'w1', 1);
    const startedAt: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      await ctx.run(() => worker.leases.length > 0);
      const { token } = worker.leases.shift()!;
      startedAt.push(ctx.queue.nowMs);
      expect(token.attempt).toBe(attempt);
      const f = tellOwner<AckOutcome>(ctx.node, 0, (reply) => ({ kind: 'fail', token, holder: { tenant: 't1', worker: 'w1' }, error: `boom ${attempt}`, retryable: true, downstream: null, reply }));
      await ctx.run(() => f.outcome !== undefined);
      expect(f.outcome).toEqual({ ok: true });
      ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w1', lane: laneOf('t1', 'q'), slots: 1 });
    }
    expect(startedAt[1]! - startedAt[0]!).toBeGreaterThanOrEqual(1_000);
    expect(startedAt[2]! - startedAt[1]!).toBeGreaterThanOrEqual(2_000);
    const idA = (a.outcome as { jobId: string }).jobId;
    expect(ctx.backing.jobs.get(idA)).toMatchObject({ state: 'dead', attempts: 3, lastError: 'boom 3' });

    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w1', lane: laneOf('t1', 'other'), slots: 1 });
    await ctx.run(() => worker.leases.length > 0);
    const { token } = worker.leases.shift()!;
    const f = tellOwner<AckOutcome>(ctx.node, 0, (reply) => ({ kind: 'fail', token, holder: { tenant: 't1', worker: 'w1' }, error: 'bad input', retryable: false, downstream: null, reply }));
    await ctx.run(() => f.outcome !== undefined);
    expect(ctx.backing.jobs.get(token.jobId)).toMatchObject({ state: 'dead', attempts: 1 });

    // A dead job requeued runs again, with a later attempt number.
    const r = tellOwner<JobOutcome>(ctx.node, 0, (reply) => ({ kind: 'requeue', tenant: 't1', jobId: idA, attemptsMore: 1, reply }));
    await ctx.run(() => r.outcome !== undefined);
    expect(r.outcome).toMatchObject({ ok: true, job: { state: 'pending' } });
    await ctx.run(() => worker.leases.length > 0);
    expect(worker.leases[0]!.token).toMatchObject({ jobId: idA, attempt: 4 });
  });

  it('expires a silent lease, retries the job elsewhere and refuses the zombie', async () => {
    const ctx = setup({ leaseMs: 5_000, leaseCheckMs: 500 });
    await started(ctx);
    const s = submit(ctx.node, 2, submission({ retry: { ...DEFAULT_RETRY_POLICY, backoffBaseMs: 100, jitter: 0 } }));
    await ctx.run(() => s.outcome !== undefined);
    const hung = new TestWorker('hung');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: hung });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'hung', lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => hung.leases.length === 1);
    const zombieToken = hung.leases[0]!.token;
    ctx.node.dispatcher.tell({ kind: 'drain', workerId: 'hung', lane: null });
    const healthy = new TestWorker('ok');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: healthy });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'ok', lane: laneOf('t1', 'q'), slots: 1 });
    const t0 = ctx.queue.nowMs;
    await ctx.run(() => healthy.leases.length === 1);
    expect(ctx.queue.nowMs - t0).toBeGreaterThanOrEqual(5_000);
    expect(hung.revoked).toEqual([{ token: zombieToken, reason: 'lease_lost' }]);
    const late = tellOwner<AckOutcome>(ctx.node, 2, (reply) => ({ kind: 'complete', token: zombieToken, holder: { tenant: 't1', worker: 'hung' }, result: null, reply }));
    await ctx.run(() => late.outcome !== undefined);
    expect(late.outcome).toMatchObject({ ok: false, error: { code: 'stale_lease' } });
    const good = tellOwner<AckOutcome>(ctx.node, 2, (reply) => ({ kind: 'complete', token: healthy.leases[0]!.token, holder: { tenant: 't1', worker: 'ok' }, result: null, reply }));
    await ctx.run(() => good.outcome !== undefined);
    expect(ctx.backing.jobs.get(zombieToken.jobId)).toMatchObject({ state: 'succeeded', attempts: 2 });
  });

  it('heartbeats keep a long job leased', async () => {
    const ctx = setup({ leaseMs: 5_000, leaseCheckMs: 500 });
    await started(ctx);
    const s = submit(ctx.node, 3, submission());
    await ctx.run(() => s.outcome !== undefined);
    const w = new TestWorker('w');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => w.leases.length === 1);
    const { token } = w.leases[0]!;
    for (let i = 0; i < 6; i++) {
      await ctx.run(() => false, 3_000);
      const hb = tellOwner<AckOutcome>(ctx.node, 3, (reply) => ({ kind: 'heartbeat', token, holder: { tenant: 't1', worker: 'w' }, reply }));
      await ctx.run(() => hb.outcome !== undefined);
      expect(hb.outcome).toEqual({ ok: true, leaseMs: 5_000 });
    }
    expect(w.revoked).toEqual([]);
    expect(ctx.backing.jobs.get(token.jobId)?.state).toBe('running');
  });

  it('cancels a pending job at once and a running one with a revocation', async () => {
    const ctx = setup();
    await started(ctx);
    const p = submit(ctx.node, 0, submission({ delayMs: 60_000 }));
    const r = submit(ctx.node, 0, submission());
    await ctx.run(() => p.outcome !== undefined && r.outcome !== undefined);
    const w = new TestWorker('w');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 5 });
    await ctx.run(() => w.leases.length === 1);
    for (const box of [p, r]) {
      const jobId = (box.outcome as { jobId: string }).jobId;
      const c = tellOwner<JobOutcome>(ctx.node, 0, (reply) => ({ kind: 'cancel', tenant: 't1', jobId, reply }));
      await ctx.run(() => c.outcome !== undefined);
      expect(c.outcome).toMatchObject({ ok: true, job: { state: 'cancelled' } });
    }
    expect(w.revoked).toEqual([{ token: w.leases[0]!.token, reason: 'cancelled' }]);
    const other = tellOwner<JobOutcome>(ctx.node, 0, (reply) => ({ kind: 'cancel', tenant: 't2', jobId: (p.outcome as { jobId: string }).jobId, reply }));
    await ctx.run(() => other.outcome !== undefined);
    expect(other.outcome).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('deduplicates an idempotency key in memory and, after a restart, in the store', async () => {
    const ctx = setup();
    await started(ctx);
    const a = submit(ctx.node, 1, submission({ idempotencyKey: 'k' }));
    const b = submit(ctx.node, 1, submission({ idempotencyKey: 'k' }));
    await ctx.run(() => a.outcome !== undefined && b.outcome !== undefined);
    expect(a.outcome).toMatchObject({ ok: true, duplicate: false });
    expect(b.outcome).toEqual({ ok: true, jobId: (a.outcome as { jobId: string }).jobId, duplicate: true });
    const node2 = await restarted(ctx);
    const c = submit(node2, 1, submission({ idempotencyKey: 'k' }));
    await runUntil(ctx.queue, () => c.outcome !== undefined, ctx.queue.nowMs + 10_000);
    expect(c.outcome).toEqual(b.outcome);
    expect(ctx.backing.jobs.size).toBe(1);
  });

  it('does not start a delayed job before run_at and runs higher priority first', async () => {
    const ctx = setup();
    await started(ctx);
    const delayed = submit(ctx.node, 0, submission({ delayMs: 10_000, priority: 100 }));
    const low = submit(ctx.node, 0, submission({ priority: -5 }));
    const high = submit(ctx.node, 0, submission({ priority: 5 }));
    await ctx.run(() => [delayed, low, high].every((b) => b.outcome !== undefined));
    const t0 = ctx.queue.nowMs;
    const w = new TestWorker('w');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => w.leases.length === 1);
    expect(w.leases[0]!.job.priority).toBe(5);
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => w.leases.length === 2);
    expect(w.leases[1]!.job.priority).toBe(-5);
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => w.leases.length === 3);
    expect(w.leases[2]!.job.priority).toBe(100);
    expect(ctx.queue.nowMs - t0).toBeGreaterThanOrEqual(10_000);
  });

  it('runs higher priority first across shards', async () => {
    const ctx = setup();
    await started(ctx);
    const boxes = [-3, 9, 0, 4].map((priority, shard) => submit(ctx.node, shard, submission({ priority })));
    await ctx.run(() => boxes.every((b) => b.outcome !== undefined));
    const w = new TestWorker('w');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    for (let i = 1; i <= 4; i++) {
      ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 1 });
      await ctx.run(() => w.leases.length === i);
    }
    expect(w.leases.map((l) => l.job.priority)).toEqual([9, 4, 0, -3]);
  });

  it('a deposed owner commits nothing more; the node takes the shard back at a new epoch', async () => {
    const ctx = setup();
    await started(ctx);
    const epochBefore = ctx.backing.shards[0]!.epoch;
    // Another node steals shard 0 (as if our lease had lapsed) and gives it up again.
    const thief = new MemoryStore(ctx.backing);
    ctx.backing.shards[0]!.leaseUntilMs = 0;
    const [stolen] = await thief.acquireShards('thief', [0], 1_000);
    await thief.releaseShards('thief', [stolen!]);
    const s = submit(ctx.node, 0, submission());
    await ctx.run(() => s.outcome !== undefined);
    expect(s.outcome).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(ctx.backing.jobs.size).toBe(0);
    await ctx.run(() => ctx.node.routes.served === SHARDS && ctx.backing.shards[0]!.epoch > epochBefore + 1);
    const again = submit(ctx.node, 0, submission());
    await ctx.run(() => again.outcome !== undefined);
    expect(again.outcome).toMatchObject({ ok: true });
  });

  it('a deposed owner ends the leases it had not written: their workers hear the lease is lost', async () => {
    const ctx = setup();
    await started(ctx);
    const a = submit(ctx.node, 0, submission());
    await ctx.run(() => a.outcome !== undefined);
    const worker = joinWorker(ctx, 'w1', 1);
    await ctx.run(() => worker.leases.length === 1, 0);
    const { token } = worker.leases[0]!;
    // Another node takes shard 0 while the lease is unwritten; the owner learns it from its next commit.
    const thief = new MemoryStore(ctx.backing);
    ctx.backing.shards[0]!.leaseUntilMs = 0;
    const [stolen] = await thief.acquireShards('thief', [0], 1_000);
    await thief.releaseShards('thief', [stolen!]);
    const b = submit(ctx.node, 0, submission());
    await ctx.run(() => b.outcome !== undefined);
    expect(b.outcome).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect(worker.revoked).toEqual([{ token, reason: 'lease_lost' }]);
    expect(ctx.backing.jobs.get(token.jobId)).toMatchObject({ state: 'pending', attempts: 0 });
  });

  it('keeps the in-memory queue bounded and pages the rest from the store', async () => {
    const ctx = setup({ memoryJobsMax: 50 });
    await started(ctx);
    const boxes = Array.from({ length: 400 }, () => submit(ctx.node, 0, submission()));
    await ctx.run(() => boxes.every((b) => b.outcome !== undefined));
    expect(boxes.every((b) => b.outcome?.ok)).toBe(true);
    const w = new TestWorker('w');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: 'w', lane: laneOf('t1', 'q'), slots: 400 });
    await ctx.run(() => w.leases.length === 400);
    expect(new Set(w.leases.map((l) => l.token.jobId)).size).toBe(400);
  });

  it('lets only the connection a lease was granted to settle it, and answers everyone else alike', async () => {
    const ctx = setup();
    await started(ctx);
    const s = submit(ctx.node, 1, submission());
    await ctx.run(() => s.outcome !== undefined);
    const w = new TestWorker('n1/c1');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: w.id, lane: laneOf('t1', 'q'), slots: 1 });
    await ctx.run(() => w.leases.length === 1);
    const { token } = w.leases[0]!;
    await ctx.run(() => ctx.backing.jobs.get(token.jobId)?.state === 'running'); // the lease written
    const refusals: unknown[] = [];
    const strangers = [
      { token, holder: { tenant: 't2', worker: 'n1/c9' } }, // another tenant
      { token, holder: { tenant: 't1', worker: 'n1/c2' } }, // another connection of the tenant
      { token, holder: { tenant: 't2', worker: w.id } }, // the holder's id under another tenant
      { token: { ...token, jobId: `${token.jobId.slice(0, -1)}z` }, holder: { tenant: 't1', worker: w.id } }, // no such job
    ];
    for (const stranger of strangers) {
      for (const kind of ['complete', 'fail', 'return', 'heartbeat'] as const) {
        const box = tellOwner<AckOutcome>(ctx.node, 1, (reply) =>
          kind === 'fail' ? { kind, ...stranger, error: 'x', retryable: false, downstream: null, reply } : kind === 'complete' ? { kind, ...stranger, result: null, reply } : { kind, ...stranger, reply },
        );
        await ctx.run(() => box.outcome !== undefined);
        refusals.push(box.outcome);
      }
    }
    expect(new Set(refusals.map((r) => JSON.stringify(r).replace(/lease [^ ]+ is/, 'lease … is'))).size).toBe(1);
    expect(refusals[0]).toMatchObject({ ok: false, error: { code: 'stale_lease', message: expect.stringContaining('not held by this connection') } });
    expect(ctx.backing.jobs.get(token.jobId)).toMatchObject({ state: 'running', attempts: 1 });
    const mine = tellOwner<AckOutcome>(ctx.node, 1, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: w.id }, result: null, reply }));
    await ctx.run(() => mine.outcome !== undefined);
    expect(mine.outcome).toEqual({ ok: true });
  });

  it('puts a closed worker connection\'s leases back at once, spending the attempt, and refuses its late verdicts', async () => {
    const ctx = setup({ leaseMs: 30_000 });
    await started(ctx);
    const boxes = [submit(ctx.node, 2, submission()), submit(ctx.node, 2, submission())];
    await ctx.run(() => boxes.every((b) => b.outcome !== undefined));
    const dead = new TestWorker('n1/c1');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: dead });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: dead.id, lane: laneOf('t1', 'q'), slots: 2 });
    // Both leases are granted; the connection closes while their writes may still be in flight.
    await ctx.run(() => dead.leases.length === 2, 0);
    ctx.node.dispatcher.tell({ kind: 'worker_left', workerId: dead.id });
    const alive = new TestWorker('n1/c2');
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: alive });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: alive.id, lane: laneOf('t1', 'q'), slots: 2 });
    const t0 = ctx.queue.nowMs;
    await ctx.run(() => alive.leases.length === 2);
    expect(ctx.queue.nowMs - t0).toBeLessThan(1_000);
    expect(alive.leases.map((l) => l.token.attempt)).toEqual([2, 2]);
    const late = tellOwner<AckOutcome>(ctx.node, 2, (reply) => ({ kind: 'complete', token: dead.leases[0]!.token, holder: { tenant: 't1', worker: dead.id }, result: null, reply }));
    await ctx.run(() => late.outcome !== undefined);
    expect(late.outcome).toMatchObject({ ok: false, error: { code: 'stale_lease' } });
    await ctx.run(() => ctx.backing.jobs.get(dead.leases[0]!.token.jobId)?.state === 'running'); // the new lease written
    const job = ctx.backing.jobs.get(dead.leases[0]!.token.jobId)!;
    expect(job).toMatchObject({ state: 'running', attempts: 2, leaseWorker: alive.id, lastError: expect.stringContaining('closed') });
  });

  it('remembers the lease holder across a restart; leases of its own node\'s connections, gone with the old process, end at once', async () => {
    const ctx = setup();
    await started(ctx);
    const boxes = [submit(ctx.node, 3, submission()), submit(ctx.node, 3, submission())];
    await ctx.run(() => boxes.every((b) => b.outcome !== undefined));
    // A worker attached to another node (its leases relayed), and one of this node's own.
    const remote = new TestWorker('n9/c1');
    const local = new TestWorker('n1/c1');
    for (const w of [remote, local]) {
      ctx.node.dispatcher.tell({ kind: 'worker_joined', worker: w });
      ctx.node.dispatcher.tell({ kind: 'credit', workerId: w.id, lane: laneOf('t1', 'q'), slots: 1 });
    }
    const leasedJob = (w: TestWorker) => ctx.backing.jobs.get(w.leases[0]!.token.jobId);
    await ctx.run(() => [remote, local].every((w) => w.leases.length === 1 && leasedJob(w)?.state === 'running'));
    const node2 = await restarted(ctx);
    const { token } = remote.leases[0]!;
    const other = tellOwner<AckOutcome>(node2, 3, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: 'n1/c2' }, result: null, reply }));
    await runUntil(ctx.queue, () => other.outcome !== undefined, ctx.queue.nowMs + 10_000);
    expect(other.outcome).toMatchObject({ ok: false, error: { code: 'stale_lease' } });
    const mine = tellOwner<AckOutcome>(node2, 3, (reply) => ({ kind: 'complete', token, holder: { tenant: 't1', worker: remote.id }, result: null, reply }));
    await runUntil(ctx.queue, () => mine.outcome !== undefined, ctx.queue.nowMs + 10_000);
    expect(mine.outcome).toEqual({ ok: true });
    // The restarted node's connections are new ones: the old local worker's lease ended on load.
    expect(leasedJob(local)).toMatchObject({ state: 'pending', attempts: 1, lastError: expect.stringContaining('closed') });
  });
});


describe('shard manager on virtual time', () => {
  it('stops serving before the lease can lapse when a renewal hangs', async () => {
    /** A store whose renewals never answer (a stalled connection). */
    class HangingRenewals extends MemoryStore {
      hang = false;
      override renewShards(...args: Parameters<MemoryStore['renewShards']>): ReturnType<MemoryStore['renewShards']> {
        return this.hang ? new Promise(() => {}) : super.renewShards(...args);
      }
    }
    const ctx = virtualNode(SHARDS, {}, (backing) => new HangingRenewals(backing));
    expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
    ctx.store.hang = true;
    const { shardLeaseMs } = DEFAULT_NODE_CONFIG.shards;
    // A renewal that never answers once stopped every later tick, and with it the check that
    // stops owners: they served past their lease.
    await ctx.run(() => ctx.node.routes.served === 0, shardLeaseMs);
    expect(ctx.node.routes.served).toBe(0);
  });
});
