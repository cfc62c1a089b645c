// Routed calls: a request on its way to the owner of its job's shard, on this node or
// forwarded to the node the ring names, and its answer on the way back to the connection.
// routed-call.ts holds what a call is and the table of forwards in flight; this is what the
// gateway does with them: `call` makes one, `attempt` sends it, `settle` takes its answer and
// tries again while the shard is between owners, `sweep` finds forwards whose answer is lost.
//
// It is where the outcome a client is told stays honest: a request whose answer was lost may
// have been applied, so it is asked again only where that is safe (a repeatable request, a
// submission with an idempotency key), and is otherwise, or out of time, "outcome unknown",
// never "not applied" (RoutedCall.unknown). Submissions are routed here too, one by one or, for
// a batch, together to each node, since they are the requests for which that rule bites.

import type { NodeToClient, SubmitSpec } from '../../../protocol/client-messages.ts';
import type { ForwardedRequest } from '../../../protocol/peer-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import type { NodeToWorker } from '../../../protocol/worker-messages.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { shardForSubmission, shardOfJobId } from '../../../protocol/job-id.ts';
import type { OwnerMsg } from '../owner/owner-messages.ts';
import { refusal } from '../refusal.ts';
import { RETRY_UNAVAILABLE_MS, type Connections, type ConnState } from './connections.ts';
import type { GatewayMsg, GatewayState } from './gateway.ts';
import { ForwardTable, type Answer, type ForwardHandlers, type RoutedCall } from './routed-call.ts';
import { submissionOf } from './submission.ts';

/** How long a routed call keeps trying while its shard is between owners: a graceful hand-off
 * takes well under this; a crashed owner's shards wait for their lease to lapse (longer), and
 * the client is told to retry. */
const ROUTE_DEADLINE_MS = 5_000;
/** Pause between tries of a routed call. */
const ROUTE_RETRY_MS = 100;
/** A forward with no answer after this long is taken as lost (its node crashed or was cut
 * off); the node leaving the ring says so sooner. */
const FORWARD_TIMEOUT_MS = 10_000;
const SWEEP_EVERY_MS = 1_000;

/** How patient a routed call is: how long it keeps trying, and the pause between tries. */
export interface Patience {
  deadlineMs: number;
  retryMs: number;
}

export class Router {
  private readonly forwards = new ForwardTable();
  /** Names the timers of routed calls waiting to try again. */
  private retries = 0;

  constructor(
    private readonly g: GatewayState,
    private readonly connections: Connections,
  ) {}

  /** A request for the owner of `jobId`'s shard, answered to the connection. */
  toOwner<T>(
    state: ConnState,
    request: ForwardedRequest,
    jobId: string,
    ctx: ActorContext<GatewayMsg>,
    build: (reply: (o: T) => void) => OwnerMsg,
    toReply: (o: T) => NodeToClient | NodeToWorker,
    /** Sees the final answer on the gateway's turn, before it goes to the connection. */
    settled: (answer: Answer) => void = () => {},
  ): void {
    const shard = shardOfJobId(jobId, this.g.deps.routes.shardCount);
    if (shard === null) return state.conn.send(errorReply(request.rid, refusal('not_found', `no job ${jobId}`)));
    this.toShard(state, request, shard, ctx, build, toReply, settled);
  }

  /** A request for the owner of `shard`, answered to the connection. */
  toShard<T>(
    state: ConnState,
    request: ForwardedRequest,
    shard: number,
    ctx: ActorContext<GatewayMsg>,
    build: (reply: (o: T) => void) => OwnerMsg,
    toReply: (o: T) => NodeToClient | NodeToWorker,
    settled: (answer: Answer) => void = () => {},
  ): void {
    // A worker's word about its lease is never refused for the bound (holding back a heartbeat
    // or an outcome could cost the lease); it counts, and is answered at once when the
    // connection holds no such lease, so a flood of them cannot pile up.
    const full = isLeaseMessage(request) ? null : this.connections.full(state, 1);
    if (full !== null) return this.connections.refuse(state, request.rid, full, ctx);
    state.inflight++;
    const connId = state.conn.id;
    this.attempt(
      this.call(state, shard, request, ctx, {
        repeatable: true,
        toOwner: (owner, answer) => owner.tell(build((o) => answer(toReply(o)))),
        finish: (answer) => {
          settled(answer);
          this.finishRequest(connId, answer, request.rid);
        },
      }),
      ctx,
    );
  }

  call(
    state: ConnState,
    shard: number,
    request: ForwardedRequest,
    ctx: ActorContext<GatewayMsg>,
    how: Pick<RoutedCall, 'repeatable' | 'toOwner' | 'finish'>,
    patience: Patience = { deadlineMs: ROUTE_DEADLINE_MS, retryMs: ROUTE_RETRY_MS },
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
  attempt(call: RoutedCall, ctx: ActorContext<GatewayMsg>): void {
    const owner = this.g.deps.routes.ownerOf(call.shard);
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

  /** An answer: final, or `unavailable` with time left to try again. Out of time, a call whose
   * earlier answer was lost is "outcome unknown": `unavailable` says nothing was applied. */
  settle(call: RoutedCall, answer: Answer, ctx: ActorContext<GatewayMsg>): void {
    const unavailableNow = answer.t === 'error' && answer.code === 'unavailable';
    if (unavailableNow && ctx.env.clock.monotonicMs() + call.retryMs < call.deadlineMs) {
      return ctx.startTimer(`retry-${++this.retries}`, call.retryMs, { kind: 'retry', call });
    }
    call.finish(unavailableNow && call.unknown ? errorReply(call.request.rid, outcomeUnknown()) : answer);
  }

  /** A routed request's answer, with the client's rid, to its connection if still open. */
  finishRequest(connId: string, answer: Answer, rid: number): void {
    const state = this.g.conns.get(connId);
    if (state === undefined) return;
    state.inflight--;
    state.conn.send('rid' in answer ? ({ ...answer, rid } as Answer) : answer);
  }

  /** The answer `from` sent to forward `fid`. */
  forwardAnswered(fid: number, from: string, reply: Answer): void {
    this.forwards.take(fid, from)?.answered(reply);
  }

  /** Forwards whose answer is lost. */
  sweep(ctx: ActorContext<GatewayMsg>): void {
    for (const forward of this.forwards.lost(ctx.env.clock.monotonicMs(), FORWARD_TIMEOUT_MS, this.g.ring)) forward.lost();
    if (this.forwards.size > 0) ctx.startTimer('sweep', SWEEP_EVERY_MS, { kind: 'sweep' });
  }

  /** One submission, to the owner of the shard it goes to. */
  submit(state: ConnState, spec: SubmitSpec, ctx: ActorContext<GatewayMsg>, finish: (answer: Answer) => void): void {
    this.routeSubmit(state, spec, this.submitShard(state, spec, ctx), ctx, finish);
  }

  /** The items of a batch, each to the owner of the shard it goes to; `finish(index)` takes the
   * answer for item `index`. */
  submitBatch(state: ConnState, jobs: SubmitSpec[], ctx: ActorContext<GatewayMsg>, finish: (index: number) => (answer: Answer) => void): void {
    // Items whose owner is on another node go there together, one forward per node.
    const elsewhere = new Map<string, number[]>();
    jobs.forEach((spec, index) => {
      const shard = this.submitShard(state, spec, ctx);
      const node = this.ownerElsewhere(state.forwardedBy !== null, shard, ctx);
      if (node === null) return this.routeSubmit(state, spec, shard, ctx, finish(index));
      if (!elsewhere.has(node)) elsewhere.set(node, []);
      elsewhere.get(node)!.push(index);
    });
    for (const [node, indices] of elsewhere) this.forwardBatch(state, node, jobs, indices, finish, ctx);
  }

  /** Sends `request` of connection `connId` to `node`; the connection remembers the node, which
   * must hear when it closes. */
  private sendForward(connId: string, tenant: string, node: string, request: ForwardedRequest, ctx: ActorContext<GatewayMsg>, handlers: ForwardHandlers): void {
    const kind = request.t;
    const counted: ForwardHandlers = {
      answered: (reply) => {
        ctx.env.metrics.inc('forwards_total', { kind, outcome: 'answered' });
        handlers.answered(reply);
      },
      lost: () => {
        ctx.env.metrics.inc('forwards_total', { kind, outcome: 'lost' });
        handlers.lost();
      },
    };
    const fid = this.forwards.add(node, ctx.env.clock.monotonicMs(), counted);
    this.g.conns.get(connId)?.forwardedTo.add(node);
    ctx.env.network.send(node, { t: 'forward', fid, conn: connId, tenant, request: { ...request, rid: fid } });
    if (!ctx.hasTimer('sweep')) ctx.startTimer('sweep', SWEEP_EVERY_MS, { kind: 'sweep' });
  }

  /** A keyed submission's shard follows from its key; a keyless one, or one whose key may go
   * anywhere (`anyShard`), goes to a shard served here. */
  private submitShard(state: ConnState, spec: SubmitSpec, ctx: ActorContext<GatewayMsg>): number {
    const { routes } = this.g.deps;
    const placingKey = spec.anyShard === true ? null : (spec.idempotencyKey ?? null);
    return shardForSubmission(state.conn.tenant, placingKey, routes.shardCount, () => routes.anyLocalShard((n) => ctx.env.random.int(n)));
  }

  /** The node to forward a request for `shard` to, or null to route it here (served here, no
   * owner known, or a forwarded request, which is never forwarded again). */
  private ownerElsewhere(localOnly: boolean, shard: number, ctx: ActorContext<GatewayMsg>): string | null {
    if (localOnly || this.g.deps.routes.ownerOf(shard) !== undefined) return null;
    const node = this.g.deps.routes.placedOn(shard);
    return node === undefined || node === ctx.env.nodeId ? null : node;
  }

  /** `unknown`: an earlier try's answer was lost (see RoutedCall.unknown). */
  private routeSubmit(state: ConnState, spec: SubmitSpec, shard: number, ctx: ActorContext<GatewayMsg>, finish: (answer: Answer) => void, unknown = false): void {
    const submission = submissionOf(spec);
    const { tenant } = state.conn;
    // A queue whose breaker is open and set to refuse meanwhile: refused like a 429, no job made.
    const refused = this.g.deps.breakers.refusal(tenant, spec.queue, ctx.env.clock.wallMs());
    if (refused !== null) {
      const why = `the circuit breaker of queue ${spec.queue} is ${refused.state.replace('_', '-')} and refuses submissions; try again in ${refused.waitMs} ms`;
      return finish(errorReply(0, refusal('circuit_open', why, refused.waitMs)));
    }
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
}

function isLeaseMessage(request: ForwardedRequest): boolean {
  return request.t === 'heartbeat' || request.t === 'complete' || request.t === 'fail' || request.t === 'return';
}

/** A forward's answer was lost: the request may or may not have been applied. */
function outcomeUnknown(): ErrorBody {
  return refusal('internal', "no answer from the owner's node: the request may or may not have been applied; retry it with the same idempotency key");
}

function unavailable(shard: number): ErrorBody {
  return refusal('unavailable', `shard ${shard} has no owner right now`, RETRY_UNAVAILABLE_MS);
}
