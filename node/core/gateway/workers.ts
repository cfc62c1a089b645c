// Worker connections: a connection becomes a worker with its first `credit`, and the
// dispatcher then leases it jobs; its verbs (`credit`, `drain`, `heartbeat`, `complete`, `fail`,
// `return`) are served here. A lease belongs to the worker connection it was granted to, so
// every request about a lease names its holder (tenant and worker id), which owners check. A
// worker id is `<node>/<connection>` of the node the worker is attached to; a worker attached
// to another node gets leases from owners here through that node (`remoteWorker`).
//
// A worker connection's end (its leases end at once, on every node) is in connections.ts, with
// the end of every connection.

import type { Lease, NodeToWorker, WorkerToNode } from '../../../protocol/worker-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { homeOfWorker, workerIdOf } from '../dispatch/dispatcher.ts';
import type { Job } from '../job/job.ts';
import type { LeaseToken } from '../../../protocol/job-rules.ts';
import { laneOf } from '../job/lane.ts';
import type { AckOutcome, HeartbeatOutcome, LeaseHolder, WorkerLink } from '../owner/owner-messages.ts';
import type { Connections, ConnState } from './connections.ts';
import { refusal } from '../refusal.ts';
import type { GatewayMsg, GatewayState } from './gateway.ts';
import type { Router } from './router.ts';

/** Queues one worker connection may credit. */
export const CREDITED_QUEUES_MAX = 1_000;

export class Workers {
  constructor(
    private readonly g: GatewayState,
    private readonly router: Router,
    private readonly connections: Connections,
  ) {}

  request(state: ConnState, msg: WorkerToNode, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    switch (msg.t) {
      case 'credit':
        // Each queue a worker takes work from costs the dispatcher a lane: a bounded number.
        if (!state.creditedQueues.has(msg.queue) && state.creditedQueues.size >= CREDITED_QUEUES_MAX) {
          return this.connections.refuse(state, null, { ...refusal('bad_request', `a connection may take work from at most ${CREDITED_QUEUES_MAX} queues`), field: 'queue' }, ctx);
        }
        state.creditedQueues.add(msg.queue);
        this.ensureWorker(state, ctx);
        return this.g.deps.dispatcher.tell({ kind: 'credit', workerId: state.workerId!, lane: laneOf(tenant, msg.queue), slots: msg.slots });
      case 'drain':
        if (state.workerId !== null) {
          this.g.deps.dispatcher.tell({ kind: 'drain', workerId: state.workerId, lane: msg.queue === undefined ? null : laneOf(tenant, msg.queue) });
        }
        return;
      case 'heartbeat': {
        const holder = holderOf(state, ctx);
        return this.router.toOwner<HeartbeatOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'heartbeat', token: msg.token, holder, reply }),
          (o) => (o.ok ? { t: 'lease_extended', rid: msg.rid, token: msg.token, leaseMs: o.leaseMs } : errorReply(msg.rid, o.error)));
      }
      case 'complete': {
        const holder = holderOf(state, ctx);
        return this.router.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'complete', token: msg.token, holder, result: msg.result ?? null, reply }), ackOf(msg.rid));
      }
      case 'fail': {
        const holder = holderOf(state, ctx);
        return this.router.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx,
          (reply) => ({ kind: 'fail', token: msg.token, holder, error: msg.error, retryable: msg.retryable, downstream: msg.downstream ?? null, reply }), ackOf(msg.rid));
      }
      case 'return': {
        const holder = holderOf(state, ctx);
        return this.router.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'return', token: msg.token, holder, reply }), ackOf(msg.rid));
      }
    }
  }

  private ensureWorker(state: ConnState, ctx: ActorContext<GatewayMsg>): void {
    if (state.workerId !== null) return;
    const conn = state.conn;
    const id = workerIdOf(ctx.env.nodeId, conn.id);
    state.workerId = id;
    this.g.deps.dispatcher.tell({
      kind: 'worker_joined',
      worker: {
        id,
        lease: (job, token, leaseMs) => conn.send(leaseOf(job, token, leaseMs)),
        revoke: (token, reason) => conn.send({ t: 'revoke', token, reason }),
      },
    });
  }
}

/** Who a lease request speaks for: the connection's tenant and its worker id as owners know
 * it, `<node>/<connection>` of the node the worker is attached to (for a forwarded request,
 * the node that forwarded it). */
function holderOf(state: ConnState, ctx: ActorContext<GatewayMsg>): LeaseHolder {
  const worker = state.forwardedBy === null ? workerIdOf(ctx.env.nodeId, state.conn.id) : workerIdOf(state.forwardedBy.node, state.forwardedBy.conn);
  return { tenant: state.conn.tenant, worker };
}

/** A worker attached to another node, as owners here lease to it: through that node. */
export function remoteWorker(workerId: string, ctx: ActorContext<GatewayMsg>): WorkerLink {
  const home = homeOfWorker(workerId);
  const network = ctx.env.network;
  return {
    id: workerId,
    lease: (job, token, leaseMs) => network.send(home, { t: 'owner_relay', worker: workerId, message: leaseOf(job, token, leaseMs) }),
    revoke: (token, reason) => network.send(home, { t: 'owner_relay', worker: workerId, message: { t: 'revoke', token, reason } }),
  };
}

function leaseOf(job: Job, token: LeaseToken, leaseMs: number): Lease {
  return {
    t: 'lease',
    token,
    queue: job.queue,
    payload: job.payload,
    attemptsMax: job.retry.attemptsMax,
    leaseMs,
    job: { priority: job.priority, runAt: job.runAtMs, createdAt: job.createdAtMs, idempotencyKey: job.idempotencyKey, lastError: job.lastError },
  };
}

function ackOf(rid: number): (o: AckOutcome) => NodeToWorker {
  return (o) => (o.ok ? { t: 'ack', rid } : errorReply(rid, o.error));
}
