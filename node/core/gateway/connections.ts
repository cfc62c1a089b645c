// One connection's life at the gateway and the bounds it is held to: its state, the hello and
// its deadline, the in-flight bound and the tenant's submission rate that admit its requests,
// the allowance of refusals it may earn before it is closed, the queue its store reads wait
// in, and its end, which every node that may hold something of it must hear of.
//
// Every bound lives here so that what one connection may cost the node is read in one place;
// the other parts ask here before they take a request on. A connection's state is a plain
// record that the other parts read and update (its subscriptions, its worker id, where it was
// forwarded): they all run on the gateway's turn, so sharing it needs no more than that.

import { errorReply } from '../../../protocol/client-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import { ADVERTISED_LIMITS, SUPPORTED_VERSIONS } from '../../../protocol/limits.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { shardOfJobId } from '../../../protocol/job-id.ts';
import { refusal } from '../refusal.ts';
import type { ClientConnection, GatewayMsg, GatewayState } from './gateway.ts';
import { TokenBuckets } from './token-bucket.ts';

export interface ConnState {
  conn: ClientConnection;
  greeted: boolean;
  /** What the connection may still be refused for its own mistakes before it is closed. */
  refusals: TokenBuckets;
  inflight: number;
  /** Store reads running, and those waiting for one of the connection's read slots. */
  reads: number;
  readsWaiting: Array<() => void>;
  /** The node closed the connection; the transport has not said it is closed yet. */
  closing: boolean;
  /** Queues the connection has credited as a worker. */
  creditedQueues: Set<string>;
  subscriptions: Set<string>;
  /** It sent `breaker_watch`: the board pushes it changes until it closes. */
  watchesBreakers: boolean;
  workerId: string | null;
  /** For a virtual connection, the node whose gateway forwards its requests, and the client's
   * connection there. */
  forwardedBy: { node: string; conn: string } | null;
  /** Nodes this connection's requests were forwarded to: told when it closes. */
  forwardedTo: Set<string>;
}

/** How long a client is told to wait before trying again, when a shard has no owner or the
 * store is unavailable, and when its connection is over its in-flight bound. */
export const RETRY_UNAVAILABLE_MS = 500;
const RETRY_OVERLOADED_MS = 100;
/** A connection's reads running at once: the rest of its reads wait their turn, so one
 * connection's flood takes at most this share of the read connections. */
const READS_RUNNING_MAX = 8;

export class Connections {
  private readonly buckets: TokenBuckets | null;

  constructor(private readonly g: GatewayState) {
    const { rateLimit } = g.deps.config;
    this.buckets = rateLimit === null ? null : new TokenBuckets(rateLimit);
  }

  newConnState(conn: ClientConnection, forwardedBy: ConnState['forwardedBy']): ConnState {
    return {
      conn,
      greeted: false,
      refusals: new TokenBuckets(this.g.deps.config.refusals),
      inflight: 0,
      reads: 0,
      readsWaiting: [],
      closing: false,
      creditedQueues: new Set(),
      subscriptions: new Set(),
      watchesBreakers: false,
      workerId: null,
      forwardedBy,
      forwardedTo: new Set(),
    };
  }

  opened(conn: ClientConnection, ctx: ActorContext<GatewayMsg>): void {
    this.g.conns.set(conn.id, this.newConnState(conn, null));
    ctx.startTimer(`hello-${conn.id}`, this.g.deps.config.helloDeadlineMs, { kind: 'hello_deadline', connId: conn.id });
  }

  helloDeadline(connId: string): void {
    const state = this.g.conns.get(connId);
    if (state !== undefined && !state.greeted) this.close(state, `no hello within ${this.g.deps.config.helloDeadlineMs} ms`);
  }

  hello(state: ConnState, versions: number[], ctx: ActorContext<GatewayMsg>): void {
    const common = SUPPORTED_VERSIONS.filter((v) => versions.includes(v));
    const version = common.at(-1);
    if (version === undefined) {
      state.conn.send(errorReply(null, refusal('unsupported_version', `this node speaks versions ${SUPPORTED_VERSIONS.join(', ')}`)));
      this.close(state, 'unsupported version', 1002); // WebSocket "protocol error", as PROTOCOL.md says
      return;
    }
    state.greeted = true;
    ctx.cancelTimer(`hello-${state.conn.id}`);
    state.conn.send({ t: 'welcome', version, node: ctx.env.nodeId, shardCount: this.g.deps.routes.shardCount, limits: { ...ADVERTISED_LIMITS, inflightMax: this.g.deps.config.connInflightMax } });
  }

  /** A batch that no wait would let through: the caller must split it. */
  tooBig(state: ConnState, jobs: number): ErrorBody | null {
    // A forwarded batch was admitted by the gateway that took it, under that node's limits.
    if (state.forwardedBy !== null) return null;
    const { connInflightMax, rateLimit } = this.g.deps.config;
    const max = Math.min(connInflightMax, rateLimit?.burst ?? Infinity);
    if (jobs <= max) return null;
    const why = max === connInflightMax ? `the connection's in-flight bound (inflightMax in welcome)` : `the tenant's rate-limit burst`;
    return { ...refusal('bad_request', `a batch of ${jobs} jobs is more than ${why}, ${max}: split it`), field: 'jobs' };
  }

  /** Backpressure, then the tenant's rate. A refusal here happens before anything is routed, so
   * it leaves nothing behind. A forwarded request was admitted by the gateway that took it. */
  admit(state: ConnState, jobs: number, ctx: ActorContext<GatewayMsg>): ErrorBody | null {
    const full = this.full(state, jobs);
    if (full !== null) return full;
    const waitMs = state.forwardedBy !== null ? 0 : this.buckets?.take(state.conn.tenant, jobs, ctx.env.clock.monotonicMs()) ?? 0;
    if (waitMs > 0) return refusal('rate_limited', `tenant ${state.conn.tenant} is over its submission rate`, waitMs);
    return null;
  }

  /** The connection's in-flight bound, for requests of every kind. */
  full(state: ConnState, requests: number): ErrorBody | null {
    if (state.forwardedBy !== null || state.inflight + requests <= this.g.deps.config.connInflightMax) return null;
    return refusal('overloaded', `connection has ${state.inflight} requests in flight`, RETRY_OVERLOADED_MS);
  }

  /** A refusal the connection earned by its own doing. Past its allowance it is closed: a client
   * that ignores refusals must not cost the node a reply per frame forever. */
  refuse(state: ConnState, rid: number | null, error: ErrorBody, ctx: ActorContext<GatewayMsg>): void {
    state.conn.send(errorReply(rid, error));
    if (state.refusals.take('', 1, ctx.env.clock.monotonicMs()) > 0) this.close(state, 'too many refused requests: honour retryAfterMs and the limits in welcome');
  }

  /** Closes a connection from this side. Its reads still waiting are dropped now, not served
   * while the transport finishes closing: nobody would read their answers. */
  close(state: ConnState, reason: string, code?: number): void {
    state.closing = true;
    state.inflight -= state.readsWaiting.length;
    state.readsWaiting.length = 0;
    state.conn.close(reason, code);
  }

  /** The connection's read bound: reads running or waiting. */
  readsFull(state: ConnState): ErrorBody | null {
    const reads = state.reads + state.readsWaiting.length;
    if (reads < this.g.deps.config.connReadsMax) return null;
    return refusal('overloaded', `connection has ${reads} reads in flight`, RETRY_OVERLOADED_MS);
  }

  /** Runs `read` now if one of the connection's read slots is free, else when one is, in order. */
  whenReadSlot(state: ConnState, read: () => void): void {
    const run = () => {
      state.reads++;
      read();
    };
    if (state.reads < READS_RUNNING_MAX) run();
    else state.readsWaiting.push(run);
  }

  /** A read finished: its slot goes to the next read waiting, if any. */
  readDone(state: ConnState): void {
    state.reads--;
    state.readsWaiting.shift()?.();
  }

  /** The transport says the connection closed. */
  transportClosed(connId: string, ctx: ActorContext<GatewayMsg>): void {
    ctx.cancelTimer(`hello-${connId}`);
    this.closed(connId, ctx);
  }

  closed(connId: string, ctx: ActorContext<GatewayMsg>): void {
    const { conns, ring, deps } = this.g;
    const state = conns.get(connId);
    if (state === undefined) return;
    conns.delete(connId);
    if (state.watchesBreakers) deps.breakers.board.tell({ kind: 'unwatch', conn: connId });
    // A worker's leases may be held by owners on any node (granted through offers, or moved
    // there by a hand-off): every member hears that it is gone.
    const told = new Set(state.forwardedTo);
    if (state.workerId !== null) {
      deps.dispatcher.tell({ kind: 'worker_left', workerId: state.workerId });
      for (const node of ring) if (node !== ctx.env.nodeId) told.add(node);
    }
    for (const jobId of state.subscriptions) {
      const shard = shardOfJobId(jobId, deps.routes.shardCount);
      if (shard !== null) deps.routes.ownerOf(shard)?.tell({ kind: 'unsubscribe', jobId, subscriberId: connId });
    }
    for (const node of told) ctx.env.network.send(node, { t: 'conn_closed', conn: connId });
  }
}
