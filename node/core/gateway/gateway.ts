// The gateway: the node's side of every client and worker connection, after authentication
// and decoding (node/adapters/ws-gateway.ts does those). It negotiates the version, enforces
// the per-connection in-flight bound and the per-tenant rate, routes each request to the owner
// of its job's shard, answers reads from the store, and turns owners' answers into replies.
// A tenant only ever reaches its own jobs: every request carries the connection's tenant.

import type { ClientToNode, NodeToClient, SubmitSpec } from '../../../protocol/client-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import { toJobView } from '../../../protocol/job-view.ts';
import { ADVERTISED_LIMITS, CODEC_LIMITS, LIST_LIMIT_DEFAULT, REQUEUE_ATTEMPTS_DEFAULT, SUPPORTED_VERSIONS } from '../../../protocol/limits.ts';
import type { NodeToWorker, WorkerToNode } from '../../../protocol/worker-messages.ts';
import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { DispatcherMsg } from '../dispatch/dispatcher-messages.ts';
import type { Job, JobState, LeaseToken } from '../job/job.ts';
import { shardForSubmission, shardOfJobId } from '../job/job-id.ts';
import { laneOf } from '../job/lane.ts';
import type { AckOutcome, HeartbeatOutcome, JobOutcome, OwnerMsg, SubmitOutcome } from '../owner/owner-messages.ts';
import { refusal } from '../refusal.ts';
import type { RoutingTable } from '../shards/routing-table.ts';
import { submissionOf } from './submission.ts';
import { TokenBuckets, type RateLimit } from './token-bucket.ts';

/** One authenticated connection, as the transport adapter presents it. */
export interface ClientConnection {
  readonly id: string;
  readonly tenant: string;
  send(message: NodeToClient | NodeToWorker): void;
  /** Closes the connection (protocol abuse, version mismatch). */
  close(reason: string): void;
}

export type GatewayMsg =
  | { kind: 'opened'; conn: ClientConnection }
  | { kind: 'request'; connId: string; msg: ClientToNode | WorkerToNode }
  | { kind: 'closed'; connId: string }
  /** A frame that was not a valid message: answered in order with the others. */
  | { kind: 'bad_frame'; connId: string; rid: number | null; error: ErrorBody }
  /** A request finished: send its reply and free its in-flight slots. */
  | { kind: 'reply'; connId: string; reply: NodeToClient | NodeToWorker; slots: number }
  | { kind: 'batch_item'; connId: string; batch: BatchState; index: number; outcome: SubmitOutcome };

export interface GatewayConfig {
  /** Requests (jobs, for a batch) in flight per connection past which submissions are refused. */
  connInflightMax: number;
  /** Per-tenant submission rate; null for none. */
  rateLimit: RateLimit | null;
}

export const DEFAULT_GATEWAY_CONFIG: GatewayConfig = {
  connInflightMax: 20_000,
  rateLimit: null,
};

interface ConnState {
  conn: ClientConnection;
  greeted: boolean;
  badFrames: number;
  inflight: number;
  subscriptions: Set<string>;
  workerId: string | null;
}

interface BatchState {
  rid: number;
  results: Array<SubmitOutcome | undefined>;
  remaining: number;
}

/** Bad frames a connection may send before it is closed as abusive. */
const BAD_FRAMES_MAX = 100;
const RETRY_UNAVAILABLE_MS = 500;
const RETRY_OVERLOADED_MS = 100;
/** Room left in a reply frame for everything but the jobs' bytes. */
const FRAME_OVERHEAD_BYTES = 64 * 1024;
const JOB_VIEW_OVERHEAD_BYTES = 1024;

export interface GatewayDeps {
  config: GatewayConfig;
  routes: RoutingTable;
  dispatcher: ActorRef<DispatcherMsg>;
}

export class Gateway implements Actor<GatewayMsg> {
  private readonly conns = new Map<string, ConnState>();
  private readonly buckets: TokenBuckets | null;

  constructor(private readonly deps: GatewayDeps) {
    this.buckets = deps.config.rateLimit === null ? null : new TokenBuckets(deps.config.rateLimit);
  }

  receive(msg: GatewayMsg, ctx: ActorContext<GatewayMsg>): void {
    switch (msg.kind) {
      case 'opened':
        this.conns.set(msg.conn.id, { conn: msg.conn, greeted: false, badFrames: 0, inflight: 0, subscriptions: new Set(), workerId: null });
        return;
      case 'closed':
        return this.closed(msg.connId);
      case 'bad_frame': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        state.conn.send(errorReply(msg.rid, msg.error));
        if (++state.badFrames === BAD_FRAMES_MAX) state.conn.close('too many bad frames');
        return;
      }
      case 'reply': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        state.inflight -= msg.slots;
        state.conn.send(msg.reply);
        return;
      }
      case 'batch_item':
        return this.batchItem(msg.connId, msg.batch, msg.index, msg.outcome);
      case 'request': {
        const state = this.conns.get(msg.connId);
        if (state === undefined) return;
        if (msg.msg.t === 'hello') return this.hello(state, msg.msg.versions, ctx);
        if (!state.greeted) {
          state.conn.send(errorReply(ridOf(msg.msg), refusal('illegal_state', 'send hello first')));
          return;
        }
        return this.request(state, msg.msg, ctx);
      }
    }
  }

  private hello(state: ConnState, versions: number[], ctx: ActorContext<GatewayMsg>): void {
    const common = SUPPORTED_VERSIONS.filter((v) => versions.includes(v));
    const version = common.at(-1);
    if (version === undefined) {
      state.conn.send(errorReply(null, refusal('unsupported_version', `this node speaks versions ${SUPPORTED_VERSIONS.join(', ')}`)));
      state.conn.close('unsupported version');
      return;
    }
    state.greeted = true;
    state.conn.send({ t: 'welcome', version, node: ctx.env.nodeId, shardCount: this.deps.routes.shardCount, limits: { ...ADVERTISED_LIMITS } });
  }

  private request(state: ConnState, msg: Exclude<ClientToNode, { t: 'hello' }> | WorkerToNode, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    switch (msg.t) {
      case 'submit': {
        const refused = this.admit(state, 1, ctx);
        if (refused !== null) return state.conn.send(errorReply(msg.rid, refused));
        return this.submitOne(state, tenant, msg.job, ctx, (outcome) =>
          outcome.ok
            ? { t: 'submitted', rid: msg.rid, jobId: outcome.jobId, duplicate: outcome.duplicate }
            : errorReply(msg.rid, outcome.error),
        );
      }
      case 'submit_batch': {
        const refused = this.admit(state, msg.jobs.length, ctx);
        if (refused !== null) return state.conn.send(errorReply(msg.rid, refused));
        const batch: BatchState = { rid: msg.rid, results: new Array(msg.jobs.length), remaining: msg.jobs.length };
        if (msg.jobs.length === 0) return state.conn.send({ t: 'submitted_batch', rid: msg.rid, results: [] });
        const self = ctx.self;
        const connId = state.conn.id;
        msg.jobs.forEach((spec, index) =>
          this.routeSubmit(tenant, spec, ctx, (outcome) => self.tell({ kind: 'batch_item', connId, batch, index, outcome })),
        );
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
        return this.toOwner<JobOutcome>(state, msg.rid, msg.jobId, ctx,
          (reply) => ({ kind: 'cancel', tenant, jobId: msg.jobId, reply }),
          (o) => (o.ok ? { t: 'cancelled', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'dlq_requeue':
        return this.toOwner<JobOutcome>(state, msg.rid, msg.jobId, ctx,
          (reply) => ({ kind: 'requeue', tenant, jobId: msg.jobId, attemptsMore: msg.attempts ?? REQUEUE_ATTEMPTS_DEFAULT, reply }),
          (o) => (o.ok ? { t: 'requeued', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'subscribe': {
        const conn = state.conn;
        state.subscriptions.add(msg.jobId);
        const subscriber = { id: conn.id, changed: (job: Job) => conn.send({ t: 'job_changed', jobId: job.id, job: toJobView(job) }) };
        return this.toOwner<JobOutcome>(state, msg.rid, msg.jobId, ctx,
          (reply) => ({ kind: 'subscribe', tenant, jobId: msg.jobId, subscriber, reply }),
          (o) => (o.ok ? { t: 'subscribed', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      }
      case 'unsubscribe': {
        state.subscriptions.delete(msg.jobId);
        const shard = shardOfJobId(msg.jobId, this.deps.routes.shardCount);
        if (shard !== null) this.deps.routes.ownerOf(shard)?.tell({ kind: 'unsubscribe', jobId: msg.jobId, subscriberId: state.conn.id });
        return state.conn.send({ t: 'ok', rid: msg.rid });
      }
      case 'credit':
        this.ensureWorker(state, ctx);
        return this.deps.dispatcher.tell({ kind: 'credit', workerId: state.workerId!, lane: laneOf(tenant, msg.queue), slots: msg.slots });
      case 'drain':
        if (state.workerId !== null) {
          this.deps.dispatcher.tell({ kind: 'drain', workerId: state.workerId, lane: msg.queue === undefined ? null : laneOf(tenant, msg.queue) });
        }
        return;
      case 'heartbeat':
        return this.toOwner<HeartbeatOutcome>(state, msg.rid, msg.token.jobId, ctx, (reply) => ({ kind: 'heartbeat', token: msg.token, reply }),
          (o) => (o.ok ? { t: 'lease_extended', rid: msg.rid, token: msg.token, leaseMs: o.leaseMs } : errorReply(msg.rid, o.error)));
      case 'complete':
        return this.toOwner<AckOutcome>(state, msg.rid, msg.token.jobId, ctx, (reply) => ({ kind: 'complete', token: msg.token, result: msg.result ?? null, reply }), ackOf(msg.rid));
      case 'fail':
        return this.toOwner<AckOutcome>(state, msg.rid, msg.token.jobId, ctx,
          (reply) => ({ kind: 'fail', token: msg.token, error: msg.error, retryable: msg.retryable, reply }), ackOf(msg.rid));
      case 'return':
        return this.toOwner<AckOutcome>(state, msg.rid, msg.token.jobId, ctx, (reply) => ({ kind: 'return', token: msg.token, reply }), ackOf(msg.rid));
    }
  }

  /** Backpressure, then the tenant's rate. A refusal here happens before anything is routed, so
   * it leaves nothing behind. */
  private admit(state: ConnState, jobs: number, ctx: ActorContext<GatewayMsg>): ErrorBody | null {
    if (state.inflight + jobs > this.deps.config.connInflightMax) {
      return refusal('overloaded', `connection has ${state.inflight} requests in flight`, RETRY_OVERLOADED_MS);
    }
    const waitMs = this.buckets?.take(state.conn.tenant, jobs, ctx.env.clock.monotonicMs()) ?? 0;
    if (waitMs > 0) return refusal('rate_limited', `tenant ${state.conn.tenant} is over its submission rate`, waitMs);
    return null;
  }

  private submitOne(
    state: ConnState,
    tenant: string,
    spec: SubmitSpec,
    ctx: ActorContext<GatewayMsg>,
    toReply: (o: SubmitOutcome) => NodeToClient,
  ): void {
    const self = ctx.self;
    const connId = state.conn.id;
    state.inflight++;
    this.routeSubmit(tenant, spec, ctx, (outcome) => self.tell({ kind: 'reply', connId, reply: toReply(outcome), slots: 1 }));
  }

  private routeSubmit(tenant: string, spec: SubmitSpec, ctx: ActorContext<GatewayMsg>, reply: (o: SubmitOutcome) => void): void {
    const submission = submissionOf(spec);
    const { shardCount } = this.deps.routes;
    const { routes } = this.deps;
    const shard = shardForSubmission(tenant, submission.idempotencyKey, shardCount, () => routes.anyLocalShard((n) => ctx.env.random.int(n)));
    const owner = this.deps.routes.ownerOf(shard);
    if (owner === undefined) return reply({ ok: false, error: unavailable(shard) });
    owner.tell({ kind: 'submit', tenant, submission, reply });
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

  private toOwner<T>(
    state: ConnState,
    rid: number,
    jobId: string,
    ctx: ActorContext<GatewayMsg>,
    build: (reply: (o: T) => void) => OwnerMsg,
    toReply: (o: T) => NodeToClient | NodeToWorker,
  ): void {
    const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
    if (shard === null) return state.conn.send(errorReply(rid, refusal('not_found', `no job ${jobId}`)));
    const owner = this.deps.routes.ownerOf(shard);
    if (owner === undefined) return state.conn.send(errorReply(rid, unavailable(shard)));
    const self = ctx.self;
    const connId = state.conn.id;
    state.inflight++;
    owner.tell(build((o) => self.tell({ kind: 'reply', connId, reply: toReply(o), slots: 1 })));
  }

  /** A read served by the store directly: everything acknowledged is committed there. */
  private read(state: ConnState, ctx: ActorContext<GatewayMsg>, rid: number, query: () => Promise<NodeToClient>): void {
    const connId = state.conn.id;
    state.inflight++;
    ctx.pipe(
      query,
      (reply) => ({ kind: 'reply', connId, reply, slots: 1 }),
      (error) => ({ kind: 'reply', connId, reply: errorReply(rid, readRefusal(error)), slots: 1 }),
    );
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
    const id = `${ctx.env.nodeId}/${conn.id}`;
    state.workerId = id;
    this.deps.dispatcher.tell({
      kind: 'worker_joined',
      worker: {
        id,
        lease: (job, token, leaseMs) =>
          conn.send({
            t: 'lease',
            token,
            queue: job.queue,
            payload: job.payload,
            attemptsMax: job.retry.attemptsMax,
            leaseMs,
            job: { priority: job.priority, runAt: job.runAtMs, createdAt: job.createdAtMs, idempotencyKey: job.idempotencyKey, lastError: job.lastError },
          }),
        revoke: (token, reason) => conn.send({ t: 'revoke', token, reason }),
      },
    });
  }

  private closed(connId: string): void {
    const state = this.conns.get(connId);
    if (state === undefined) return;
    this.conns.delete(connId);
    if (state.workerId !== null) this.deps.dispatcher.tell({ kind: 'worker_left', workerId: state.workerId });
    for (const jobId of state.subscriptions) {
      const shard = shardOfJobId(jobId, this.deps.routes.shardCount);
      if (shard !== null) this.deps.routes.ownerOf(shard)?.tell({ kind: 'unsubscribe', jobId, subscriberId: connId });
    }
  }
}

/** Why a read failed: a cursor the store did not make (the stores throw RangeError for it), or
 * the store itself. */
function readRefusal(error: unknown): ErrorBody {
  if (error instanceof RangeError) return { ...refusal('bad_request', 'after: not a cursor this node made'), field: 'after' };
  return refusal('unavailable', 'store unavailable', RETRY_UNAVAILABLE_MS);
}

function unavailable(shard: number): ErrorBody {
  return refusal('unavailable', `shard ${shard} has no owner here right now`, RETRY_UNAVAILABLE_MS);
}

function ackOf(rid: number): (o: AckOutcome) => NodeToWorker {
  return (o) => (o.ok ? { t: 'ack', rid } : errorReply(rid, o.error));
}

function ridOf(msg: ClientToNode | WorkerToNode): number | null {
  return 'rid' in msg ? msg.rid : null;
}
