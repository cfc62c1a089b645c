// An owner whose shard lease may have lapsed hands out no work: it asks the shard manager
// (mayServe) before it extends a lease (heartbeat), grants one (grant), or inserts a new job
// already leased to an idle worker. The shard manager only stops owners on its renewal ticks,
// so between the instant the lease may have lapsed and the next tick the owner is still
// serving; only mayServe keeps it from handing out work then (the other node may have taken
// the shard over and leased the same jobs).
//
// The window is made with renewals that answer late and then hang: the lease is counted from
// when the last answered renewal left (T), so it may lapse at T + shardLeaseMs - safetyMarginMs,
// while the ticks run from when that renewal answered, 2 s later; the tick that stops the owner
// comes 2 s after the lease may have lapsed.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, type LeaseToken } from '../../protocol/job-rules.ts';
import { type Job } from '../../node/core/job/job.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import { DEFAULT_NODE_CONFIG, type KairosNode } from '../../node/core/node.ts';
import type { HeartbeatOutcome, OwnerMsg, Submission, SubmitOutcome, WorkerLink } from '../../node/core/owner/owner-messages.ts';
import type { EventQueue } from '../../sim/event-queue.ts';
import { MemoryStore } from '../../sim/memory-store.ts';
import { virtualNode } from '../support/virtual-node.ts';

const SHARDS = 1;
const RENEW_LATENCY_MS = 2_000;
const HOLDER = { tenant: 't1', worker: 'w1' };
const { shardLeaseMs, safetyMarginMs, renewEveryMs } = DEFAULT_NODE_CONFIG.shards;

class TestWorker implements WorkerLink {
  leases: Array<{ job: Job; token: LeaseToken }> = [];
  constructor(readonly id: string) {}
  lease(job: Job, token: LeaseToken): void {
    this.leases.push({ job, token });
  }
  revoke(): void {}
}

/** Renewals answer after RENEW_LATENCY_MS once `slow` is set; after one such answer every later
 * renewal hangs (a stalled connection). */
class LateRenewals extends MemoryStore {
  queue: EventQueue | null = null;
  slow = false;
  private hang = false;
  /** When the last renewal that answered was sent. */
  lastAnsweredSentAtMs: number | null = null;

  override async renewShards(...args: Parameters<MemoryStore['renewShards']>): Promise<number[]> {
    if (this.hang) return new Promise(() => {});
    if (!this.slow || this.queue === null) return super.renewShards(...args);
    const queue = this.queue;
    const sentAtMs = queue.nowMs;
    await new Promise<void>((resolve) => queue.schedule(RENEW_LATENCY_MS, resolve));
    const renewed = await super.renewShards(...args);
    this.lastAnsweredSentAtMs = sentAtMs;
    this.hang = true;
    return renewed;
  }
}

function submission(): Submission {
  return { queue: 'q', payload: new Uint8Array([1]), priority: 0, runAtMs: null, delayMs: 0, idempotencyKey: null, retry: DEFAULT_RETRY_POLICY };
}

function tellOwner<T>(node: KairosNode, build: (reply: (o: T) => void) => OwnerMsg): { outcome?: T } {
  const box: { outcome?: T } = {};
  node.routes.ownerOf(0)!.tell(build((o) => (box.outcome = o)));
  return box;
}

async function setup() {
  const ctx = virtualNode(SHARDS, {}, (backing) => new LateRenewals(backing));
  ctx.store.queue = ctx.queue;
  expect(await ctx.run(() => ctx.node.routes.served === SHARDS)).toBe(true);
  const joinWorker = (slots: number) => {
    const worker = new TestWorker(HOLDER.worker);
    ctx.node.dispatcher.tell({ kind: 'worker_joined', worker });
    ctx.node.dispatcher.tell({ kind: 'credit', workerId: worker.id, lane: laneOf(HOLDER.tenant, 'q'), slots });
    return worker;
  };
  const submitted = async () => {
    const box = tellOwner<SubmitOutcome>(ctx.node, (reply) => ({ kind: 'submit', tenant: HOLDER.tenant, submission: submission(), reply }));
    await ctx.run(() => box.outcome !== undefined);
    expect(box.outcome).toMatchObject({ ok: true });
    return (box.outcome as { jobId: string }).jobId;
  };
  /** Makes renewals late then hanging, and returns the instant the lease may have lapsed. */
  const leaseRunsOut = async () => {
    ctx.store.slow = true;
    expect(await ctx.run(() => ctx.store.lastAnsweredSentAtMs !== null, 2 * renewEveryMs + RENEW_LATENCY_MS)).toBe(true);
    return ctx.store.lastAnsweredSentAtMs! + shardLeaseMs - safetyMarginMs;
  };
  /** Advances virtual time to `atMs`, then checks the owner still serves: the window is open. */
  const until = async (atMs: number) => {
    await ctx.run(() => false, atMs - ctx.queue.nowMs);
    expect(ctx.queue.nowMs).toBe(atMs);
    expect(ctx.node.routes.served).toBe(SHARDS);
  };
  /** Runs until the shard manager's next tick stops the owner (it then acquires the shard
   * again, at a new epoch, and a new owner serves: what that one grants is no concern here). */
  const untilStopped = async () => {
    expect(await ctx.run(() => ctx.node.routes.served === 0, renewEveryMs)).toBe(true);
  };
  return { ...ctx, joinWorker, submitted, leaseRunsOut, until, untilStopped };
}

describe('an owner whose shard lease may have lapsed hands out no work', () => {
  it('refuses to extend a lease by heartbeat', async () => {
    const ctx = await setup();
    const worker = ctx.joinWorker(1);
    const jobId = await ctx.submitted();
    await ctx.run(() => worker.leases.length === 1 && ctx.backing.jobs.get(jobId)?.state === 'running');
    const { token } = worker.leases[0]!;
    const heartbeat = async () => {
      const box = tellOwner<HeartbeatOutcome>(ctx.node, (reply) => ({ kind: 'heartbeat', token, holder: HOLDER, reply }));
      await ctx.run(() => box.outcome !== undefined, 0);
      return box.outcome;
    };
    const lapseAtMs = await ctx.leaseRunsOut();

    await ctx.until(lapseAtMs - 1);
    expect(await heartbeat()).toMatchObject({ ok: true });
    await ctx.until(lapseAtMs);
    expect(await heartbeat()).toMatchObject({ ok: false, error: { code: 'unavailable' } });
  });

  it('grants no lease to a worker that offers a slot', async () => {
    const ctx = await setup();
    const jobId = await ctx.submitted();
    const lapseAtMs = await ctx.leaseRunsOut();

    await ctx.until(lapseAtMs);
    const worker = ctx.joinWorker(1);
    await ctx.untilStopped();
    expect(worker.leases).toEqual([]);
    expect(ctx.backing.jobs.get(jobId)?.state).toBe('pending');
  });

  it('inserts a new job as pending, not leased to an idle worker', async () => {
    const ctx = await setup();
    const worker = ctx.joinWorker(1);
    const lapseAtMs = await ctx.leaseRunsOut();

    await ctx.until(lapseAtMs);
    const jobId = await ctx.submitted();
    await ctx.untilStopped();
    expect(worker.leases).toEqual([]);
    expect(ctx.backing.jobs.get(jobId)?.state).toBe('pending');
  });
});
