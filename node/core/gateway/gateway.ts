// The gateway: the node's side of every client and worker connection, after authentication
// and decoding (node/adapters/ws-gateway.ts does those). It negotiates the version, enforces
// the per-connection in-flight bound and the per-tenant rate, routes each request to the owner
// of its job's shard (on this node, or forwarded to the node the ring names: routed-call.ts),
// answers reads from the store, and turns owners' answers into replies. A tenant only ever
// reaches its own jobs: every request carries the connection's tenant.
//
// It is also the other end of forwarding: a request another node's gateway forwards is handled
// as if its client were attached here, on a virtual connection named after that node and
// client connection, and only by an owner on this node.

import type { ClientToNode, NodeToClient, SubmitSpec } from '../../../protocol/client-messages.ts';
import type { ForwardedRequest, PeerMessage } from '../../../protocol/peer-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import { toJobView } from '../../../protocol/job-view.ts';
import { ADVERTISED_LIMITS, CODEC_LIMITS, LIST_LIMIT_DEFAULT, REQUEUE_ATTEMPTS_DEFAULT, SUPPORTED_VERSIONS } from '../../../protocol/limits.ts';
import type { Lease, NodeToWorker, WorkerToNode } from '../../../protocol/worker-messages.ts';
import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { DispatcherMsg } from '../dispatch/dispatcher-messages.ts';
import { connOfWorker, homeOfWorker, workerIdOf } from '../dispatch/dispatcher.ts';
import type { Job, JobState, LeaseToken } from '../job/job.ts';
import { shardForSubmission, shardOfJobId } from '../job/job-id.ts';
import { laneOf } from '../job/lane.ts';
import type { AckOutcome, HeartbeatOutcome, JobOutcome, LeaseHolder, OwnerMsg, SubmitOutcome, Subscriber, WorkerLink } from '../owner/owner-messages.ts';
import { refusal } from '../refusal.ts';
import type { RoutingTable } from '../shards/routing-table.ts';
import { ForwardTable, type Answer, type ForwardHandlers, type RoutedCall } from './routed-call.ts';
import { submissionOf } from './submission.ts';
import { TokenBuckets, type RateLimit } from './token-bucket.ts';

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
  /** Store reads (`get`, `list`, `dlq_list`) per connection running at once; the connection's
   * further reads wait their turn here, so one connection's flood takes no more than this
   * share of the read connections. */
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
  connReadsMax: 16,
  helloDeadlineMs: 10_000,
  refusals: { perSecond: 100, burst: 1_000 },
  rateLimit: null,
};

interface ConnState {
  conn: ClientConnection;
  greeted: boolean;
  /** What the connection may still be refused for its own mistakes before it is closed. */
  refusals: TokenBuckets;
  inflight: number;
  /** Store reads running, and those waiting for one of the connection's read slots. */
  reads: number;
  readsWaiting: Array<() => void>;
  subscriptions: Set<string>;
  workerId: string | null;
  /** For a virtual connection, the node whose gateway forwards its requests, and the client's
   * connection there. */
  forwardedBy: { node: string; conn: string } | null;
  /** Nodes this connection's requests were forwarded to: told when it closes. */
  forwardedTo: Set<string>;
}

interface BatchState {
  rid: number;
  results: Array<SubmitOutcome | undefined>;
  remaining: number;
}

const RETRY_UNAVAILABLE_MS = 500;
const RETRY_OVERLOADED_MS = 100;
/** How long a routed call keeps trying while its shard is between owners: a graceful hand-off
 * takes well under this; a crashed owner's shards wait for their lease to lapse (longer), and
 * the client is told to retry. */
const ROUTE_DEADLINE_MS = 5_000;
/** Pause between tries of a routed call. */
const ROUTE_RETRY_MS = 100;
/** A subscription whose owner went away is made again with more patience: after a crash the
 * shard has no owner until its lease lapses (15 s), and nobody waits on the answer. */
const RESUBSCRIBE_PATIENCE = { deadlineMs: 60_000, retryMs: 1_000 };
/** A forward with no answer after this long is taken as lost (its node crashed or was cut
 * off); the node leaving the ring says so sooner. */
const FORWARD_TIMEOUT_MS = 10_000;
const SWEEP_EVERY_MS = 1_000;
/** Room left in a reply frame for everything but the jobs' bytes. */
const FRAME_OVERHEAD_BYTES = 64 * 1024;
const JOB_VIEW_OVERHEAD_BYTES = 1024;

export interface GatewayDeps {
  config: GatewayConfig;
  routes: RoutingTable;
  dispatcher: ActorRef<DispatcherMsg>;
  /** What `cluster` answers. */
  clusterView: (rid: number) => NodeToClient;
}

export class Gateway implements Actor<GatewayMsg> {
  private readonly conns = new Map<string, ConnState>();
  private readonly buckets: TokenBuckets | null;
  private readonly forwards = new ForwardTable();
  private ring = new Set<string>();
  /** The placement as of the last ring change. */
  private placementSeen: readonly string[] | null = null;
  /** Names the timers of routed calls waiting to try again. */
  private retries = 0;

  constructor(private readonly deps: GatewayDeps) {
    this.buckets = deps.config.rateLimit === null ? null : new TokenBuckets(deps.config.rateLimit);
  }

  receive(msg: GatewayMsg, ctx: ActorContext<GatewayMsg>): void {
    switch (msg.kind) {
      case 'opened':
        this.conns.set(msg.conn.id, this.newConnState(msg.conn, null));
        ctx.startTimer(`hello-${msg.conn.id}`, this.deps.config.helloDeadlineMs, { kind: 'hello_deadline', connId: msg.conn.id });
        return;
      case 'hello_deadline': {
        const state = this.conns.get(msg.connId);
        if (state !== undefined && !state.greeted) state.conn.close(`no hello within ${this.deps.config.helloDeadlineMs} ms`);
        return;
      }
      case 'closed':
        ctx.cancelTimer(`hello-${msg.connId}`);
        return this.closed(msg.connId, ctx);
      case 'bad_frame': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        return this.refuse(state, msg.rid, msg.error, ctx);
      }
      case 'reply': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        state.inflight -= msg.slots;
        state.reads--;
        state.readsWaiting.shift()?.();
        state.conn.send(msg.reply);
        return;
      }
      case 'answer':
        return this.settle(msg.call, msg.answer, ctx);
      case 'retry':
        return this.attempt(msg.call, ctx);
      case 'sweep':
        return this.sweep(ctx);
      case 'peer':
        return this.peer(msg.from, msg.message, ctx);
      case 'resubscribe':
        return this.resubscribe(msg.connId, msg.jobId, ctx);
      case 'ring': {
        this.ring = new Set(msg.members);
        for (const state of [...this.conns.values()]) {
          if (state.forwardedBy !== null && !this.ring.has(state.forwardedBy.node)) this.closed(state.conn.id, ctx);
        }
        const before = this.placementSeen;
        this.placementSeen = this.deps.routes.placement;
        this.resubscribeLost(before, ctx);
        return this.sweep(ctx);
      }
      case 'request': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        if (msg.msg.t === 'hello') {
          if (state.greeted) return this.refuse(state, null, refusal('illegal_state', 'hello was already answered on this connection'), ctx);
          return this.hello(state, msg.msg.versions, ctx);
        }
        if (!state.greeted) return this.refuse(state, ridOf(msg.msg), refusal('illegal_state', 'send hello first'), ctx);
        return this.request(state, msg.msg, ctx);
      }
    }
  }

  private hello(state: ConnState, versions: number[], ctx: ActorContext<GatewayMsg>): void {
    const common = SUPPORTED_VERSIONS.filter((v) => versions.includes(v));
    const version = common.at(-1);
    if (version === undefined) {
      state.conn.send(errorReply(null, refusal('unsupported_version', `this node speaks versions ${SUPPORTED_VERSIONS.join(', ')}`)));
      state.conn.close('unsupported version', 1002); // WebSocket "protocol error", as PROTOCOL.md says
      return;
    }
    state.greeted = true;
    ctx.cancelTimer(`hello-${state.conn.id}`);
    state.conn.send({ t: 'welcome', version, node: ctx.env.nodeId, shardCount: this.deps.routes.shardCount, limits: { ...ADVERTISED_LIMITS, inflightMax: this.deps.config.connInflightMax } });
  }

  private request(state: ConnState, msg: Exclude<ClientToNode, { t: 'hello' }> | WorkerToNode, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    switch (msg.t) {
      case 'cluster':
        return state.conn.send(this.deps.clusterView(msg.rid));
      case 'submit': {
        const refused = this.admit(state, 1, ctx);
        if (refused !== null) return this.refuse(state, msg.rid, refused, ctx);
        state.inflight++;
        const connId = state.conn.id;
        return this.routeSubmit(state, msg.job, this.submitShard(state, msg.job, ctx), ctx, (answer) => this.finishRequest(connId, answer, msg.rid));
      }
      case 'submit_batch': {
        const refused = this.tooBig(msg.jobs.length) ?? this.admit(state, msg.jobs.length, ctx);
        if (refused !== null) return this.refuse(state, msg.rid, refused, ctx);
        if (msg.jobs.length === 0) return state.conn.send({ t: 'submitted_batch', rid: msg.rid, results: [] });
        const batch: BatchState = { rid: msg.rid, results: new Array(msg.jobs.length), remaining: msg.jobs.length };
        const connId = state.conn.id;
        state.inflight += msg.jobs.length;
        const finish = (index: number) => (answer: Answer) => this.batchItem(connId, batch, index, submitOutcomeOf(answer));
        // Items whose owner is on another node go there together, one forward per node.
        const elsewhere = new Map<string, number[]>();
        msg.jobs.forEach((spec, index) => {
          const shard = this.submitShard(state, spec, ctx);
          const node = this.ownerElsewhere(state.forwardedBy !== null, shard, ctx);
          if (node === null) return this.routeSubmit(state, spec, shard, ctx, finish(index));
          if (!elsewhere.has(node)) elsewhere.set(node, []);
          elsewhere.get(node)!.push(index);
        });
        for (const [node, indices] of elsewhere) this.forwardBatch(state, node, msg.jobs, indices, finish, ctx);
        return;
      }
      case 'get':
        return this.read(state, ctx, msg.rid, async () => {
          const job = await ctx.env.store.getJob(msg.jobId);
          if (job === null || job.tenant !== tenant) return errorReply(msg.rid, refusal('not_found', `no job ${msg.jobId}`));
          return { t: 'job', rid: msg.rid, job: toJobView(job) };
        });
      case 'list':
        return this.listPage(state, ctx, msg.rid, tenant, msg.state, msg.queue, msg.limit, msg.after);
      case 'dlq_list':
        return this.listPage(state, ctx, msg.rid, tenant, 'dead', msg.queue, msg.limit, msg.after);
      case 'cancel':
        return this.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
          (reply) => ({ kind: 'cancel', tenant, jobId: msg.jobId, reply }),
          (o) => (o.ok ? { t: 'cancelled', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'dlq_requeue':
        return this.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
          (reply) => ({ kind: 'requeue', tenant, jobId: msg.jobId, attemptsMore: msg.attempts ?? REQUEUE_ATTEMPTS_DEFAULT, reply }),
          (o) => (o.ok ? { t: 'requeued', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'subscribe': {
        state.subscriptions.add(msg.jobId);
        const subscriber = this.subscriber(state, msg.jobId, ctx);
        return this.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
          (reply) => ({ kind: 'subscribe', tenant, jobId: msg.jobId, subscriber, reply }),
          (o) => (o.ok ? { t: 'subscribed', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      }
      case 'unsubscribe': {
        // Answered at once, in order with everything else on the connection ("ok, also when
        // there was no subscription"); the owner, here or elsewhere, is told on the side.
        state.subscriptions.delete(msg.jobId);
        state.conn.send({ t: 'ok', rid: msg.rid });
        const shard = shardOfJobId(msg.jobId, this.deps.routes.shardCount);
        if (shard === null) return;
        const subscriberId = state.conn.id;
        return this.attempt(
          this.call(state, shard, msg, ctx, {
            repeatable: true,
            toOwner: (owner) => owner.tell({ kind: 'unsubscribe', jobId: msg.jobId, subscriberId }),
            finish: () => {},
          }),
          ctx,
        );
      }
      case 'credit':
        this.ensureWorker(state, ctx);
        return this.deps.dispatcher.tell({ kind: 'credit', workerId: state.workerId!, lane: laneOf(tenant, msg.queue), slots: msg.slots });
      case 'drain':
        if (state.workerId !== null) {
          this.deps.dispatcher.tell({ kind: 'drain', workerId: state.workerId, lane: msg.queue === undefined ? null : laneOf(tenant, msg.queue) });
        }
        return;
      case 'heartbeat': {
        const holder = holderOf(state, ctx);
        return this.toOwner<HeartbeatOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'heartbeat', token: msg.token, holder, reply }),
          (o) => (o.ok ? { t: 'lease_extended', rid: msg.rid, token: msg.token, leaseMs: o.leaseMs } : errorReply(msg.rid, o.error)));
      }
      case 'complete': {
        const holder = holderOf(state, ctx);
        return this.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'complete', token: msg.token, holder, result: msg.result ?? null, reply }), ackOf(msg.rid));
      }
      case 'fail': {
        const holder = holderOf(state, ctx);
        return this.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx,
          (reply) => ({ kind: 'fail', token: msg.token, holder, error: msg.error, retryable: msg.retryable, reply }), ackOf(msg.rid));
      }
      case 'return': {
        const holder = holderOf(state, ctx);
        return this.toOwner<AckOutcome>(state, msg, msg.token.jobId, ctx, (reply) => ({ kind: 'return', token: msg.token, holder, reply }), ackOf(msg.rid));
      }
    }
  }

  /** A connection's subscription to one job, as an owner holds it. */
  private subscriber(state: ConnState, jobId: string, ctx: ActorContext<GatewayMsg>): Subscriber {
    const { conn } = state;
    const self = ctx.self;
    return {
      id: conn.id,
      changed: (job) => conn.send({ t: 'job_changed', jobId: job.id, job: toJobView(job) }),
      moved: () => self.tell({ kind: 'resubscribe', connId: conn.id, jobId }),
    };
  }

  /** The owner of a subscribed job stopped before the job finished. A forwarded subscription is
   * handed back to the gateway of its client, which subscribes again wherever the shard is now
   * served; the job's state then is pushed, since it may have changed meanwhile. */
  private resubscribe(connId: string, jobId: string, ctx: ActorContext<GatewayMsg>): void {
    const state = this.conns.get(connId);
    if (state === undefined || !state.subscriptions.has(jobId)) return;
    if (state.forwardedBy !== null) {
      state.subscriptions.delete(jobId);
      return ctx.env.network.send(state.forwardedBy.node, { t: 'subscription_moved', conn: state.forwardedBy.conn, jobId });
    }
    const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
    if (shard === null) return;
    const subscriber = this.subscriber(state, jobId, ctx);
    const { tenant } = state.conn;
    this.attempt(
      this.call(state, shard, { t: 'subscribe', rid: 0, jobId }, ctx, {
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

  /** After a ring change: a subscription held on a node that left the ring (it crashed, or
   * left before it could say so) is gone with it, so it is made again where the ring now
   * places the job's shard. */
  private resubscribeLost(before: readonly string[] | null, ctx: ActorContext<GatewayMsg>): void {
    if (before === null) return;
    for (const state of this.conns.values()) {
      if (state.forwardedBy !== null) continue;
      for (const jobId of state.subscriptions) {
        const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
        const held = shard === null ? undefined : before[shard];
        if (held !== undefined && held !== ctx.env.nodeId && !this.ring.has(held)) this.resubscribe(state.conn.id, jobId, ctx);
      }
    }
  }

  /** A batch that no wait would let through: the caller must split it. */
  private tooBig(jobs: number): ErrorBody | null {
    const { connInflightMax, rateLimit } = this.deps.config;
    const max = Math.min(connInflightMax, rateLimit?.burst ?? Infinity);
    if (jobs <= max) return null;
    const why = max === connInflightMax ? `the connection's in-flight bound (inflightMax in welcome)` : `the tenant's rate-limit burst`;
    return { ...refusal('bad_request', `a batch of ${jobs} jobs is more than ${why}, ${max}: split it`), field: 'jobs' };
  }

  /** Backpressure, then the tenant's rate. A refusal here happens before anything is routed, so
   * it leaves nothing behind. A forwarded request was admitted by the gateway that took it. */
  private admit(state: ConnState, jobs: number, ctx: ActorContext<GatewayMsg>): ErrorBody | null {
    const full = this.full(state, jobs);
    if (full !== null) return full;
    const waitMs = state.forwardedBy !== null ? 0 : this.buckets?.take(state.conn.tenant, jobs, ctx.env.clock.monotonicMs()) ?? 0;
    if (waitMs > 0) return refusal('rate_limited', `tenant ${state.conn.tenant} is over its submission rate`, waitMs);
    return null;
  }

  /** The connection's in-flight bound, for requests of every kind. */
  private full(state: ConnState, requests: number): ErrorBody | null {
    if (state.forwardedBy !== null || state.inflight + requests <= this.deps.config.connInflightMax) return null;
    return refusal('overloaded', `connection has ${state.inflight} requests in flight`, RETRY_OVERLOADED_MS);
  }

  /** A refusal the connection earned by its own doing. Past its allowance it is closed: a client
   * that ignores refusals must not cost the node a reply per frame forever. */
  private refuse(state: ConnState, rid: number | null, error: ErrorBody, ctx: ActorContext<GatewayMsg>): void {
    state.conn.send(errorReply(rid, error));
    if (state.refusals.take('', 1, ctx.env.clock.monotonicMs()) > 0) state.conn.close('too many refused requests: honour retryAfterMs and the limits in welcome');
  }

  /** A keyed submission's shard follows from its key; a keyless one goes to a shard served here. */
  private submitShard(state: ConnState, spec: SubmitSpec, ctx: ActorContext<GatewayMsg>): number {
    const { routes } = this.deps;
    return shardForSubmission(state.conn.tenant, spec.idempotencyKey ?? null, routes.shardCount, () => routes.anyLocalShard((n) => ctx.env.random.int(n)));
  }

  /** The node to forward a request for `shard` to, or null to route it here (served here, no
   * owner known, or a forwarded request, which is never forwarded again). */
  private ownerElsewhere(localOnly: boolean, shard: number, ctx: ActorContext<GatewayMsg>): string | null {
    if (localOnly || this.deps.routes.ownerOf(shard) !== undefined) return null;
    const node = this.deps.routes.placedOn(shard);
    return node === undefined || node === ctx.env.nodeId ? null : node;
  }

  /** `unknown`: an earlier try's answer was lost (see RoutedCall.unknown). */
  private routeSubmit(state: ConnState, spec: SubmitSpec, shard: number, ctx: ActorContext<GatewayMsg>, finish: (answer: Answer) => void, unknown = false): void {
    const submission = submissionOf(spec);
    const { tenant } = state.conn;
    const call = this.call(state, shard, { t: 'submit', rid: 0, job: spec }, ctx, {
      repeatable: submission.idempotencyKey !== null,
      toOwner: (owner, answer) =>
        owner.tell({
          kind: 'submit',
          tenant,
          submission,
          reply: (o) => answer(o.ok ? { t: 'submitted', rid: 0, jobId: o.jobId, duplicate: o.duplicate } : errorReply(0, o.error)),
        }),
      finish,
    });
    call.unknown = unknown;
    this.attempt(call, ctx);
  }

  /** Items of a batch whose owners are on `node`, in one forward. Items it answers
   * `unavailable` (their shard moved on), and all of them if the forward is refused whole, are
   * routed again one by one; if its answer is lost, so are those with an idempotency key, and
   * the others are answered "outcome unknown". */
  private forwardBatch(
    state: ConnState,
    node: string,
    jobs: SubmitSpec[],
    indices: number[],
    finish: (index: number) => (answer: Answer) => void,
    ctx: ActorContext<GatewayMsg>,
  ): void {
    const again = (index: number, unknown: boolean) =>
      this.routeSubmit(state, jobs[index]!, this.submitShard(state, jobs[index]!, ctx), ctx, finish(index), unknown);
    const request: ForwardedRequest = { t: 'submit_batch', rid: 0, jobs: indices.map((i) => jobs[i]!) };
    this.sendForward(state.conn.id, state.conn.tenant, node, request, ctx, {
      answered: (answer) => {
        if (answer.t === 'submitted_batch' && answer.results.length === indices.length) {
          return answer.results.forEach((result, k) => {
            const index = indices[k]!;
            if ('error' in result && result.error.code === 'unavailable') return again(index, false);
            finish(index)('error' in result ? errorReply(0, result.error) : { t: 'submitted', rid: 0, jobId: result.jobId, duplicate: result.duplicate });
          });
        }
        const refusedWhole = answer.t === 'error' && answer.code === 'unavailable';
        for (const index of indices) {
          if (refusedWhole) again(index, false);
          else finish(index)(answer.t === 'error' ? answer : errorReply(0, refusal('internal', `the node answered a batch with ${answer.t}`)));
        }
      },
      lost: () => {
        for (const index of indices) {
          if (jobs[index]!.idempotencyKey !== undefined) again(index, true);
          else finish(index)(errorReply(0, outcomeUnknown()));
        }
      },
    });
  }

  private batchItem(connId: string, batch: BatchState, index: number, outcome: SubmitOutcome): void {
    batch.results[index] = outcome;
    if (--batch.remaining > 0) return;
    const state = this.conns.get(connId);
    if (state === undefined) return;
    state.inflight -= batch.results.length;
    state.conn.send({
      t: 'submitted_batch',
      rid: batch.rid,
      results: batch.results.map((o) => (o!.ok ? { jobId: o!.jobId, duplicate: o!.duplicate } : { error: o!.error })),
    });
  }

  /** A request for the owner of `jobId`'s shard, answered to the connection. */
  private toOwner<T>(
    state: ConnState,
    request: ForwardedRequest,
    jobId: string,
    ctx: ActorContext<GatewayMsg>,
    build: (reply: (o: T) => void) => OwnerMsg,
    toReply: (o: T) => NodeToClient | NodeToWorker,
  ): void {
    // A worker's word about its lease is never refused for the bound (holding back a heartbeat
    // or an outcome could cost the lease); it counts, and is answered at once when the
    // connection holds no such lease, so a flood of them cannot pile up.
    const full = isLeaseMessage(request) ? null : this.full(state, 1);
    if (full !== null) return this.refuse(state, request.rid, full, ctx);
    const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
    if (shard === null) return state.conn.send(errorReply(request.rid, refusal('not_found', `no job ${jobId}`)));
    state.inflight++;
    const connId = state.conn.id;
    this.attempt(
      this.call(state, shard, request, ctx, {
        repeatable: true,
        toOwner: (owner, answer) => owner.tell(build((o) => answer(toReply(o)))),
        finish: (answer) => this.finishRequest(connId, answer, request.rid),
      }),
      ctx,
    );
  }

  private call(
    state: ConnState,
    shard: number,
    request: ForwardedRequest,
    ctx: ActorContext<GatewayMsg>,
    how: Pick<RoutedCall, 'repeatable' | 'toOwner' | 'finish'>,
    patience = { deadlineMs: ROUTE_DEADLINE_MS, retryMs: ROUTE_RETRY_MS },
  ): RoutedCall {
    const localOnly = state.forwardedBy !== null;
    return {
      connId: state.conn.id,
      tenant: state.conn.tenant,
      shard,
      request,
      localOnly,
      deadlineMs: ctx.env.clock.monotonicMs() + (localOnly ? 0 : patience.deadlineMs),
      retryMs: patience.retryMs,
      unknown: false,
      ...how,
    };
  }

  /** Sends a routed call to the owner of its shard: here, or on the node the ring names. */
  private attempt(call: RoutedCall, ctx: ActorContext<GatewayMsg>): void {
    const owner = this.deps.routes.ownerOf(call.shard);
    if (owner !== undefined) {
      const self = ctx.self;
      return call.toOwner(owner, (answer) => self.tell({ kind: 'answer', call, answer }));
    }
    const node = this.ownerElsewhere(call.localOnly, call.shard, ctx);
    if (node === null) return this.settle(call, errorReply(call.request.rid, unavailable(call.shard)), ctx);
    this.sendForward(call.connId, call.tenant, node, call.request, ctx, {
      answered: (answer) => this.settle(call, answer, ctx),
      // Asked again where that is safe, else answered "unknown".
      lost: () => {
        call.unknown = true;
        if (call.repeatable && ctx.env.clock.monotonicMs() < call.deadlineMs) this.attempt(call, ctx);
        else call.finish(errorReply(call.request.rid, outcomeUnknown()));
      },
    });
  }

  /** Sends `request` of connection `connId` to `node`; the connection remembers the node, which
   * must hear when it closes. */
  private sendForward(connId: string, tenant: string, node: string, request: ForwardedRequest, ctx: ActorContext<GatewayMsg>, handlers: ForwardHandlers): void {
    const fid = this.forwards.add(node, ctx.env.clock.monotonicMs(), handlers);
    this.conns.get(connId)?.forwardedTo.add(node);
    ctx.env.network.send(node, { t: 'forward', fid, conn: connId, tenant, request: { ...request, rid: fid } });
    if (!ctx.hasTimer('sweep')) ctx.startTimer('sweep', SWEEP_EVERY_MS, { kind: 'sweep' });
  }

  /** An answer: final, or `unavailable` with time left to try again. Out of time, a call whose
   * earlier answer was lost is "outcome unknown": `unavailable` says nothing was applied. */
  private settle(call: RoutedCall, answer: Answer, ctx: ActorContext<GatewayMsg>): void {
    const unavailableNow = answer.t === 'error' && answer.code === 'unavailable';
    if (unavailableNow && ctx.env.clock.monotonicMs() + call.retryMs < call.deadlineMs) {
      return ctx.startTimer(`retry-${++this.retries}`, call.retryMs, { kind: 'retry', call });
    }
    call.finish(unavailableNow && call.unknown ? errorReply(call.request.rid, outcomeUnknown()) : answer);
  }

  /** A routed request's answer, with the client's rid, to its connection if still open. */
  private finishRequest(connId: string, answer: Answer, rid: number): void {
    const state = this.conns.get(connId);
    if (state === undefined) return;
    state.inflight--;
    state.conn.send('rid' in answer ? ({ ...answer, rid } as Answer) : answer);
  }

  /** Forwards whose answer is lost. */
  private sweep(ctx: ActorContext<GatewayMsg>): void {
    for (const forward of this.forwards.lost(ctx.env.clock.monotonicMs(), FORWARD_TIMEOUT_MS, this.ring)) forward.lost();
    if (this.forwards.size > 0) ctx.startTimer('sweep', SWEEP_EVERY_MS, { kind: 'sweep' });
  }

  private peer(from: string, message: PeerMessage, ctx: ActorContext<GatewayMsg>): void {
    switch (message.t) {
      case 'forward': {
        const id = `${from}/${message.conn}`;
        let state = this.conns.get(id);
        if (state === undefined || state.conn.tenant !== message.tenant) {
          state = this.newConnState(this.virtualConn(id, from, message.conn, message.tenant, ctx), { node: from, conn: message.conn });
          state.greeted = true;
          this.conns.set(id, state);
        }
        return this.request(state, message.request, ctx);
      }
      case 'forward_reply': {
        this.forwards.take(message.fid, from)?.answered(message.reply);
        return;
      }
      case 'forward_push': {
        const state = this.conns.get(message.conn);
        // A subscription of a connection since closed (whose id may be reused) is not passed on.
        if (state?.subscriptions.has(message.push.jobId) === true) state.conn.send(message.push);
        return;
      }
      case 'conn_closed':
        // Any leases owners here granted to it, as a worker of that node, end now.
        this.deps.dispatcher.tell({ kind: 'worker_left', workerId: workerIdOf(from, message.conn) });
        return this.closed(`${from}/${message.conn}`, ctx);
      case 'subscription_moved':
        return this.resubscribe(message.conn, message.jobId, ctx);
      case 'owner_relay': {
        const state = this.conns.get(connOfWorker(message.worker));
        // A lease for a worker whose connection closed runs out at its owner.
        if (state === undefined || state.workerId !== message.worker) return;
        state.conn.send(message.message);
        if (message.message.t === 'lease') {
          this.deps.dispatcher.tell({ kind: 'remote_leased', node: from, workerId: message.worker, lane: laneOf(state.conn.tenant, message.message.queue) });
        }
        return;
      }
      case 'credit_offer':
        return this.deps.dispatcher.tell({
          kind: 'remote_credit',
          worker: remoteWorker(message.worker, ctx),
          lane: laneOf(message.tenant, message.queue),
          slots: message.slots,
        });
      case 'credit_return':
        return this.deps.dispatcher.tell({
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

  /** A read served by the store directly: everything acknowledged is committed there. At most
   * `connReadsMax` of a connection's reads run at once; the rest wait here, in order. */
  private read(state: ConnState, ctx: ActorContext<GatewayMsg>, rid: number, query: () => Promise<NodeToClient>): void {
    const full = this.full(state, 1);
    if (full !== null) return this.refuse(state, rid, full, ctx);
    const connId = state.conn.id;
    state.inflight++;
    const run = () => {
      state.reads++;
      ctx.pipe(
        query,
        (reply) => ({ kind: 'reply', connId, reply, slots: 1 }),
        (error) => ({ kind: 'reply', connId, reply: errorReply(rid, readRefusal(error)), slots: 1 }),
      );
    };
    if (state.reads < this.deps.config.connReadsMax) run();
    else state.readsWaiting.push(run);
  }

  private listPage(
    state: ConnState,
    ctx: ActorContext<GatewayMsg>,
    rid: number,
    tenant: string,
    jobState: JobState | undefined,
    queue: string | undefined,
    limit: number | undefined,
    after: string | undefined,
  ): void {
    this.read(state, ctx, rid, async () => {
        // A page must fit in one frame; payloads are up to 256 KiB each, so a page of large
        // jobs is fetched again, smaller, until it fits.
        for (let pageLimit = limit ?? LIST_LIMIT_DEFAULT; ; pageLimit = Math.max(1, Math.floor(pageLimit / 2))) {
          const page = await ctx.env.store.listJobs(tenant, { state: jobState, queue, limit: pageLimit, after: after ?? null });
          const bytes = page.items.reduce((n, job) => n + job.payload.length + (job.result?.length ?? 0) + JOB_VIEW_OVERHEAD_BYTES, 0);
          if (bytes + FRAME_OVERHEAD_BYTES <= CODEC_LIMITS.frameBytesMax || pageLimit === 1) {
            return { t: 'job_page', rid, jobs: page.items.map(toJobView), next: page.next };
          }
        }
    });
  }

  private ensureWorker(state: ConnState, ctx: ActorContext<GatewayMsg>): void {
    if (state.workerId !== null) return;
    const conn = state.conn;
    const id = workerIdOf(ctx.env.nodeId, conn.id);
    state.workerId = id;
    this.deps.dispatcher.tell({
      kind: 'worker_joined',
      worker: {
        id,
        lease: (job, token, leaseMs) => conn.send(leaseOf(job, token, leaseMs)),
        revoke: (token, reason) => conn.send({ t: 'revoke', token, reason }),
      },
    });
  }

  private newConnState(conn: ClientConnection, forwardedBy: ConnState['forwardedBy']): ConnState {
    return {
      conn,
      greeted: false,
      refusals: new TokenBuckets(this.deps.config.refusals),
      inflight: 0,
      reads: 0,
      readsWaiting: [],
      subscriptions: new Set(),
      workerId: null,
      forwardedBy,
      forwardedTo: new Set(),
    };
  }

  private closed(connId: string, ctx: ActorContext<GatewayMsg>): void {
    const state = this.conns.get(connId);
    if (state === undefined) return;
    this.conns.delete(connId);
    // A worker's leases may be held by owners on any node (granted through offers, or moved
    // there by a hand-off): every member hears that it is gone.
    const told = new Set(state.forwardedTo);
    if (state.workerId !== null) {
      this.deps.dispatcher.tell({ kind: 'worker_left', workerId: state.workerId });
      for (const node of this.ring) if (node !== ctx.env.nodeId) told.add(node);
    }
    for (const jobId of state.subscriptions) {
      const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
      if (shard !== null) this.deps.routes.ownerOf(shard)?.tell({ kind: 'unsubscribe', jobId, subscriberId: connId });
    }
    for (const node of told) ctx.env.network.send(node, { t: 'conn_closed', conn: connId });
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
function remoteWorker(workerId: string, ctx: ActorContext<GatewayMsg>): WorkerLink {
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

function submitOutcomeOf(answer: Answer): SubmitOutcome {
  if (answer.t === 'submitted') return { ok: true, jobId: answer.jobId, duplicate: answer.duplicate };
  if (answer.t === 'error') {
    const { t: _t, rid: _rid, ...error } = answer;
    return { ok: false, error };
  }
  return { ok: false, error: refusal('internal', `the owner answered a submission with ${answer.t}`) };
}

/** Why a read failed: a cursor the store did not make (the stores throw RangeError for it), or
 * the store itself. */
function readRefusal(error: unknown): ErrorBody {
  if (error instanceof RangeError) return { ...refusal('bad_request', 'after: not a cursor this node made'), field: 'after' };
  return refusal('unavailable', 'store unavailable', RETRY_UNAVAILABLE_MS);
}

/** A forward's answer was lost: the request may or may not have been applied. */
function outcomeUnknown(): ErrorBody {
  return refusal('internal', "no answer from the owner's node: the request may or may not have been applied; retry it with the same idempotency key");
}

function unavailable(shard: number): ErrorBody {
  return refusal('unavailable', `shard ${shard} has no owner right now`, RETRY_UNAVAILABLE_MS);
}

function ackOf(rid: number): (o: AckOutcome) => NodeToWorker {
  return (o) => (o.ok ? { t: 'ack', rid } : errorReply(rid, o.error));
}

function isLeaseMessage(request: ForwardedRequest): boolean {
  return request.t === 'heartbeat' || request.t === 'complete' || request.t === 'fail' || request.t === 'return';
}

function ridOf(msg: ClientToNode | WorkerToNode): number | null {
  return 'rid' in msg ? msg.rid : null;
}
