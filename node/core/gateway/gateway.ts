// The gateway: the node's side of every client and worker connection, after authentication
// and decoding (node/adapters/ws-gateway.ts does those). It negotiates the version, enforces
// the per-connection in-flight bound and the per-tenant rate, routes each request to the owner
// of its job's shard (on this node, or forwarded to the node the ring names: router.ts),
// answers reads from the store, and turns owners' answers into replies. A tenant only ever
// reaches its own jobs: every request carries the connection's tenant.
//
// It is also the other end of forwarding: a request another node's gateway forwards is handled
// as if its client were attached here, on a virtual connection named after that node and
// client connection, and only by an owner on this node.
//
// This file is the actor itself and its wiring only: the messages it takes, its config, and
// `receive`, which hands each message to the part that serves it. The parts are plain classes
// the actor owns, each in a file named for its concern:
//   connections.ts    one connection's state, its hello and its bounds, and its end
//   requests.ts       a greeted connection's requests, each to the part that serves it
//   router.ts         routed calls: to the owner of a shard, here or forwarded, and back
//   reads.ts          get, list, dlq_list and the schedules' and breakers' lists, from the store
//   subscriptions.ts  subscribe, unsubscribe, and subscribing again when an owner goes
//   workers.ts        worker connections: attachment, their verbs, the leases they get
//   peer-side.ts      what other nodes' gateways send, and their clients' virtual connections
// An actor does not await, and the gateway is one actor: every part runs on its turn, so they
// share its state through one explicit object (GatewayState), not through the actor's `this`,
// and the order of their effects (sends, timers, tells, random draws) is the order of the
// calls, which the simulator replays exactly.

import type { ClientToNode, NodeToClient } from '../../../protocol/client-messages.ts';
import type { PeerMessage } from '../../../protocol/peer-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import type { NodeToWorker, WorkerToNode } from '../../../protocol/worker-messages.ts';
import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { DispatcherMsg } from '../dispatch/dispatcher-messages.ts';
import type { BoardMsg } from '../breaker/breaker-board.ts';
import type { BreakerConfig } from '../../../protocol/breaker-view.ts';
import { refusal } from '../refusal.ts';
import type { RoutingTable } from '../shards/routing-table.ts';
import { Connections, type ConnState } from './connections.ts';
import { PeerSide } from './peer-side.ts';
import { Reads } from './reads.ts';
import { Requests } from './requests.ts';
import type { Answer, RoutedCall } from './routed-call.ts';
import { Router } from './router.ts';
import { Subscriptions } from './subscriptions.ts';
import type { RateLimit } from './token-bucket.ts';
import { Workers } from './workers.ts';

/** One authenticated connection, as the transport adapter presents it. */
export interface ClientConnection {
  readonly id: string;
  readonly tenant: string;
  send(message: NodeToClient | NodeToWorker): void;
  /** Closes the connection (protocol abuse, version mismatch) with a WebSocket close code;
   * the adapter's default is 1008 (policy violation). */
  close(reason: string, code?: number): void;
}

export type GatewayMsg =
  | { kind: 'opened'; conn: ClientConnection }
  | { kind: 'request'; connId: string; msg: ClientToNode | WorkerToNode }
  | { kind: 'closed'; connId: string }
  /** A frame that was not a valid message: answered in order with the others. */
  | { kind: 'bad_frame'; connId: string; rid: number | null; error: ErrorBody }
  /** A store read finished: send its reply and free its in-flight slot. */
  | { kind: 'reply'; connId: string; reply: NodeToClient | NodeToWorker; slots: number }
  /** An owner on this node answered a routed call. */
  | { kind: 'answer'; call: RoutedCall; answer: Answer }
  /** Try a routed call again (its shard was between owners). */
  | { kind: 'retry'; call: RoutedCall }
  /** Look for forwards whose answer is lost. */
  | { kind: 'sweep' }
  /** From another node's gateway or owners (node.ts passes them on). */
  | { kind: 'peer'; from: string; message: PeerMessage }
  /** A connection's time to send `hello` is up. */
  | { kind: 'hello_deadline'; connId: string }
  /** The members shards are placed on changed. */
  | { kind: 'ring'; members: readonly string[] }
  /** The owner holding a subscription of the connection stopped before the job finished. */
  | { kind: 'resubscribe'; connId: string; jobId: string };

export interface GatewayConfig {
  /** Requests of every kind (jobs, for a batch) in flight per connection past which requests
   * are refused as overloaded. */
  connInflightMax: number;
  /** Store reads (`get`, `list`, `dlq_list`) in flight per connection, running or waiting their
   * turn (connections.ts runs a few at once); past it a read is refused as overloaded. Reads are
   * far dearer than submissions (a query each, where submissions share a commit), so they get a
   * bound of their own, well below `connInflightMax`. */
  connReadsMax: number;
  /** How long a new connection may take to send `hello` before it is closed. */
  helloDeadlineMs: number;
  /** Refusals a connection may earn for its own mistakes (undecodable frames, bad requests,
   * requests over its bounds) in a burst, and per second after that, before it is closed. */
  refusals: RateLimit;
  /** Per-tenant submission rate; null for none. */
  rateLimit: RateLimit | null;
}

export const DEFAULT_GATEWAY_CONFIG: GatewayConfig = {
  connInflightMax: 20_000,
  connReadsMax: 256,
  helloDeadlineMs: 10_000,
  refusals: { perSecond: 100, burst: 1_000 },
  rateLimit: null,
};

export interface GatewayDeps {
  config: GatewayConfig;
  routes: RoutingTable;
  dispatcher: ActorRef<DispatcherMsg>;
  /** What `cluster` answers. */
  clusterView: (rid: number) => NodeToClient;
  /** The node's circuit breakers (breaker/breaker-board.ts). */
  breakers: GatewayBreakers;
}

export interface GatewayBreakers {
  /** The lane's breaker's state and how long a submission should wait, when the breaker
   * refuses them now; else null (the board's synchronous answer). */
  refusal(tenant: string, queue: string, nowMs: number): { state: string; waitMs: number } | null;
  board: ActorRef<BoardMsg>;
  /** The node's default breaker, for the views of breakers that follow it. */
  defaultConfig: BreakerConfig | null;
}

/** What the gateway's parts share, on the actor's turn. */
export interface GatewayState {
  readonly deps: GatewayDeps;
  /** Every connection, attached here or virtual (a forwarded client's), by id. */
  readonly conns: Map<string, ConnState>;
  /** The members shards are placed on, as of the last `ring` message. */
  ring: ReadonlySet<string>;
}

export class Gateway implements Actor<GatewayMsg> {
  private readonly state: GatewayState;
  private readonly connections: Connections;
  private readonly router: Router;
  private readonly reads: Reads;
  private readonly subscriptions: Subscriptions;
  private readonly requests: Requests;
  private readonly peers: PeerSide;

  constructor(deps: GatewayDeps) {
    this.state = { deps, conns: new Map(), ring: new Set() };
    this.connections = new Connections(this.state);
    this.router = new Router(this.state, this.connections);
    this.reads = new Reads(this.state, this.connections);
    this.subscriptions = new Subscriptions(this.state, this.router, this.connections);
    const workers = new Workers(this.state, this.router, this.connections);
    this.requests = new Requests(this.state, this.connections, this.router, this.reads, this.subscriptions, workers);
    this.peers = new PeerSide(this.state, this.connections, this.router, this.requests, this.subscriptions);
  }

  receive(msg: GatewayMsg, ctx: ActorContext<GatewayMsg>): void {
    switch (msg.kind) {
      case 'opened':
        return this.connections.opened(msg.conn, ctx);
      case 'hello_deadline':
        return this.connections.helloDeadline(msg.connId);
      case 'closed':
        return this.connections.transportClosed(msg.connId, ctx);
      case 'bad_frame': {
        const state = this.state.conns.get(msg.connId);
        if (state === undefined || state.closing) return;
        return this.connections.refuse(state, msg.rid, msg.error, ctx);
      }
      case 'reply':
        return this.reads.replied(msg.connId, msg.reply, msg.slots);
      case 'answer':
        return this.router.settle(msg.call, msg.answer, ctx);
      case 'retry':
        return this.router.attempt(msg.call, ctx);
      case 'sweep':
        return this.router.sweep(ctx);
      case 'peer':
        return this.peers.receive(msg.from, msg.message, ctx);
      case 'resubscribe':
        return this.subscriptions.resubscribe(msg.connId, msg.jobId, ctx);
      case 'ring':
        this.state.ring = new Set(msg.members);
        this.peers.ringChanged(ctx);
        this.subscriptions.ringChanged(ctx);
        return this.router.sweep(ctx);
      case 'request': {
        const state = this.state.conns.get(msg.connId);
        // What a connection the node is closing still sends is dropped unread.
        if (state === undefined || state.closing) return;
        if (msg.msg.t === 'hello') {
          if (state.greeted) return this.connections.refuse(state, null, refusal('illegal_state', 'hello was already answered on this connection'), ctx);
          return this.connections.hello(state, msg.msg.versions, ctx);
        }
        if (!state.greeted) return this.connections.refuse(state, ridOf(msg.msg), refusal('illegal_state', 'send hello first'), ctx);
        return this.requests.request(state, msg.msg, ctx);
      }
    }
  }
}

function ridOf(msg: ClientToNode | WorkerToNode): number | null {
  return 'rid' in msg ? msg.rid : null;
}
