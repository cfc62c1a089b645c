// The gateway's side of the peer protocol: what other nodes' gateways and owners send it
// (node.ts passes them on). A `forward` is a request of a client attached to another node; it
// is handled as if that client were attached here, on a virtual connection named
// `<node>/<connection>` whose replies and pushes go back to that node, and only by an owner on
// this node (the forwarding gateway does the routing and the retrying). The rest are answers
// to this node's forwards, news of connections and subscriptions on either side, and the
// relaying of leases and credit between owners here and workers attached elsewhere.
//
// Virtual connections live in the gateway's table with the others, so every other part serves
// them alike; what differs is read from their `forwardedBy`.

import type { PeerMessage } from '../../../protocol/peer-messages.ts';
import { isTerminal } from '../../../protocol/job-rules.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { connOfWorker, workerIdOf } from '../dispatch/dispatcher.ts';
import { laneOf } from '../job/lane.ts';
import type { Connections } from './connections.ts';
import type { ClientConnection, GatewayMsg, GatewayState } from './gateway.ts';
import type { Requests } from './requests.ts';
import type { Router } from './router.ts';
import type { Subscriptions } from './subscriptions.ts';
import { remoteWorker } from './workers.ts';

export class PeerSide {
  constructor(
    private readonly g: GatewayState,
    private readonly connections: Connections,
    private readonly router: Router,
    private readonly requests: Requests,
    private readonly subscriptions: Subscriptions,
  ) {}

  receive(from: string, message: PeerMessage, ctx: ActorContext<GatewayMsg>): void {
    const { conns, deps } = this.g;
    switch (message.t) {
      case 'forward': {
        const id = `${from}/${message.conn}`;
        let state = conns.get(id);
        if (state === undefined || state.conn.tenant !== message.tenant) {
          state = this.connections.newConnState(this.virtualConn(id, from, message.conn, message.tenant, ctx), { node: from, conn: message.conn });
          state.greeted = true;
          conns.set(id, state);
        }
        return this.requests.request(state, message.request, ctx);
      }
      case 'forward_reply': {
        this.router.forwardAnswered(message.fid, from, message.reply);
        return;
      }
      case 'forward_push': {
        const state = conns.get(message.conn);
        // A subscription of a connection since closed (whose id may be reused) is not passed on.
        if (state?.subscriptions.has(message.push.jobId) !== true) return;
        state.conn.send(message.push);
        if (isTerminal(message.push.job.state)) state.subscriptions.delete(message.push.jobId);
        return;
      }
      case 'conn_closed':
        // Any leases owners here granted to it, as a worker of that node, end now.
        deps.dispatcher.tell({ kind: 'worker_left', workerId: workerIdOf(from, message.conn) });
        return this.connections.closed(`${from}/${message.conn}`, ctx);
      case 'subscription_moved':
        return this.subscriptions.resubscribe(message.conn, message.jobId, ctx);
      case 'owner_relay': {
        const state = conns.get(connOfWorker(message.worker));
        if (state === undefined || state.workerId !== message.worker) {
          // A lease for a worker whose connection has closed: granted from an offer that left
          // before the close but reached the owner after `conn_closed` did. Said again, so the
          // owner ends the lease now rather than when it runs out.
          if (message.message.t === 'lease') ctx.env.network.send(from, { t: 'conn_closed', conn: connOfWorker(message.worker) });
          return;
        }
        state.conn.send(message.message);
        if (message.message.t === 'lease') {
          deps.dispatcher.tell({ kind: 'remote_leased', node: from, workerId: message.worker, lane: laneOf(state.conn.tenant, message.message.queue) });
        }
        return;
      }
      case 'credit_offer':
        return deps.dispatcher.tell({
          kind: 'remote_credit',
          worker: remoteWorker(message.worker, ctx),
          lane: laneOf(message.tenant, message.queue),
          slots: message.slots,
        });
      case 'credit_return':
        return deps.dispatcher.tell({
          kind: 'remote_credit_returned',
          node: from,
          workerId: message.worker,
          lane: laneOf(message.tenant, message.queue),
          slots: message.slots,
        });
      default:
        return;
    }
  }

  /** The ring changed (GatewayState.ring is the new one): the virtual connections of a node
   * that left it are closed. */
  ringChanged(ctx: ActorContext<GatewayMsg>): void {
    for (const state of [...this.g.conns.values()]) {
      if (state.forwardedBy !== null && !this.g.ring.has(state.forwardedBy.node)) this.connections.closed(state.conn.id, ctx);
    }
  }

  /** The connection of a client attached to `node`, as its forwarded requests see it here. */
  private virtualConn(id: string, node: string, originConn: string, tenant: string, ctx: ActorContext<GatewayMsg>): ClientConnection {
    const network = ctx.env.network;
    return {
      id,
      tenant,
      send(message) {
        if (message.t === 'job_changed') return network.send(node, { t: 'forward_push', conn: originConn, push: message });
        if ('rid' in message && message.rid !== null) network.send(node, { t: 'forward_reply', fid: message.rid, reply: message });
      },
      close() {},
    };
  }
}
