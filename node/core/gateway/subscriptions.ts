// A connection's subscriptions to jobs' changes: `subscribe` and `unsubscribe`, and making a
// subscription again when the owner holding it goes away before the job finished (it handed
// the shard off, or its node left the ring). Owners hold subscriptions; the connection's state
// keeps the jobs it follows, and a push forwarded from another node, or a subscription made
// again, reaches the client only while it still follows the job.
//
// Subscribing again is patient and nobody waits on its answer, so it is a routed call of its
// own (router.ts) with a longer deadline; the job's state is pushed once it is made, since the
// job may have changed meanwhile.

import type { Subscribe, Unsubscribe } from '../../../protocol/client-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import { toJobView } from './views.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { isTerminal } from '../../../protocol/job-rules.ts';
import { refusal } from '../refusal.ts';
import { shardOfJobId } from '../../../protocol/job-id.ts';
import type { JobOutcome, Subscriber } from '../owner/owner-messages.ts';
import type { Connections, ConnState } from './connections.ts';
import type { GatewayMsg, GatewayState } from './gateway.ts';
import type { Router } from './router.ts';

/** Jobs one connection may follow at once. A job stops counting when it finishes, when the
 * client unsubscribes, or when its subscription is refused. */
export const SUBSCRIPTIONS_MAX = 10_000;
const RETRY_SUBSCRIBE_MS = 1_000;

/** A subscription whose owner went away is made again with more patience: after a crash the
 * shard has no owner until its lease lapses (15 s), and nobody waits on the answer. */
const RESUBSCRIBE_PATIENCE = { deadlineMs: 60_000, retryMs: 1_000 };

export class Subscriptions {
  /** The placement as of the last ring change. */
  private placementSeen: readonly string[] | null = null;

  constructor(
    private readonly g: GatewayState,
    private readonly router: Router,
    private readonly connections: Connections,
  ) {}

  subscribe(state: ConnState, msg: Subscribe, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    if (!state.subscriptions.has(msg.jobId) && state.subscriptions.size >= SUBSCRIPTIONS_MAX) {
      return this.connections.refuse(state, msg.rid, refusal('overloaded', `this connection follows ${SUBSCRIPTIONS_MAX} jobs already`, RETRY_SUBSCRIBE_MS), ctx);
    }
    // Followed from now on, so that a change pushed before the owner's answer reaches the client.
    state.subscriptions.add(msg.jobId);
    const subscriber = this.subscriber(state, msg.jobId, ctx);
    return this.router.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
      (reply) => ({ kind: 'subscribe', tenant, jobId: msg.jobId, subscriber, reply }),
      (o) => (o.ok ? { t: 'subscribed', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)),
      (answer) => {
        // A refused subscription, or one whose job had already finished, follows nothing.
        if (answer.t !== 'subscribed' || isTerminal(answer.job.state)) state.subscriptions.delete(msg.jobId);
      });
  }

  unsubscribe(state: ConnState, msg: Unsubscribe, ctx: ActorContext<GatewayMsg>): void {
    // Answered at once, in order with everything else on the connection ("ok, also when
    // there was no subscription"); the owner, here or elsewhere, is told on the side, and only
    // when there was one, so a flood of unsubscribes costs no owner (or node) anything.
    const followed = state.subscriptions.delete(msg.jobId);
    state.conn.send({ t: 'ok', rid: msg.rid });
    if (!followed) return;
    const shard = shardOfJobId(msg.jobId, this.g.deps.routes.shardCount);
    if (shard === null) return;
    const subscriberId = state.conn.id;
    return this.router.attempt(
      this.router.call(state, shard, msg, ctx, {
        repeatable: true,
        toOwner: (owner) => owner.tell({ kind: 'unsubscribe', jobId: msg.jobId, subscriberId }),
        finish: () => {},
      }),
      ctx,
    );
  }

  /** The owner of a subscribed job stopped before the job finished. A forwarded subscription is
   * handed back to the gateway of its client, which subscribes again wherever the shard is now
   * served; the job's state then is pushed, since it may have changed meanwhile. */
  resubscribe(connId: string, jobId: string, ctx: ActorContext<GatewayMsg>): void {
    const state = this.g.conns.get(connId);
    if (state === undefined || !state.subscriptions.has(jobId)) return;
    if (state.forwardedBy !== null) {
      state.subscriptions.delete(jobId);
      return ctx.env.network.send(state.forwardedBy.node, { t: 'subscription_moved', conn: state.forwardedBy.conn, jobId });
    }
    const shard = shardOfJobId(jobId, this.g.deps.routes.shardCount);
    if (shard === null) return;
    const subscriber = this.subscriber(state, jobId, ctx);
    const { tenant } = state.conn;
    this.router.attempt(
      this.router.call(state, shard, { t: 'subscribe', rid: 0, jobId }, ctx, {
        repeatable: true,
        toOwner: (owner, answer) =>
          owner.tell({ kind: 'subscribe', tenant, jobId, subscriber, reply: (o) => answer(o.ok ? { t: 'subscribed', rid: 0, job: toJobView(o.job) } : errorReply(0, o.error)) }),
        finish: (answer) => {
          if (answer.t === 'subscribed' && state.subscriptions.has(jobId)) state.conn.send({ t: 'job_changed', jobId, job: answer.job });
        },
      }, RESUBSCRIBE_PATIENCE),
      ctx,
    );
  }

  /** The ring changed (GatewayState.ring is the new one): subscriptions lost with a node that
   * left are made again. */
  ringChanged(ctx: ActorContext<GatewayMsg>): void {
    const before = this.placementSeen;
    this.placementSeen = this.g.deps.routes.placement;
    this.resubscribeLost(before, ctx);
  }

  /** A connection's subscription to one job, as an owner holds it. */
  private subscriber(state: ConnState, jobId: string, ctx: ActorContext<GatewayMsg>): Subscriber {
    const { conn } = state;
    const self = ctx.self;
    return {
      id: conn.id,
      changed: (job) => {
        conn.send({ t: 'job_changed', jobId: job.id, job: toJobView(job) });
        // A finished job changes no more: the connection stops following it. (The owner calls
        // this on its turn; gateway and owners share one thread, as they share the routing
        // table, and the owner drops the subscriber at the same moment.)
        if (isTerminal(job.state)) state.subscriptions.delete(jobId);
      },
      moved: () => self.tell({ kind: 'resubscribe', connId: conn.id, jobId }),
    };
  }

  /** After a ring change: a subscription held on a node that left the ring (it crashed, or
   * left before it could say so) is gone with it, so it is made again where the ring now
   * places the job's shard. */
  private resubscribeLost(before: readonly string[] | null, ctx: ActorContext<GatewayMsg>): void {
    if (before === null) return;
    for (const state of this.g.conns.values()) {
      if (state.forwardedBy !== null) continue;
      for (const jobId of state.subscriptions) {
        const shard = shardOfJobId(jobId, this.g.deps.routes.shardCount);
        const held = shard === null ? undefined : before[shard];
        if (held !== undefined && held !== ctx.env.nodeId && !this.g.ring.has(held)) this.resubscribe(state.conn.id, jobId, ctx);
      }
    }
  }
}
