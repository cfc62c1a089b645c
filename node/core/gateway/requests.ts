// A greeted connection's requests, each handed to the part that serves it: reads to reads.ts,
// subscriptions to subscriptions.ts, worker verbs to workers.ts. What is left is served here:
// `cluster`, which the node answers itself, `cancel` and `dlq_requeue`, each one call to the
// job's owner, schedule changes and breakers' changes and reads, each one call to the owner of
// the shard the schedule or breaker lives on, `breaker_watch`, which the node's board serves, and
// submissions, which are admitted here (the connection's bounds and the tenant's rate) and
// routed by router.ts; a batch's answers are gathered here into its one reply. A forwarded request (peer-side.ts) comes in here too, on its virtual connection.

import type { ClientRequest, NodeToClient, ScheduleDelete, SchedulePause, ScheduleUpsert, SubmitBatch } from '../../../protocol/client-messages.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import { toJobView } from './views.ts';
import { toScheduleView } from './views.ts';
import { breakerConfigOf } from '../../../protocol/breaker-view.ts';
import { toBreakerView } from './views.ts';
import { breakerShard } from '../breaker/breaker.ts';
import type { BreakerOp, BreakerOutcome } from '../owner/breakers.ts';
import { REQUEUE_ATTEMPTS_DEFAULT } from '../../../protocol/limits.ts';
import type { WorkerToNode } from '../../../protocol/worker-messages.ts';
import type { ActorContext } from '../actor/runtime.ts';
import type { JobOutcome, ScheduleOp, ScheduleOutcome, SubmitOutcome } from '../owner/owner-messages.ts';
import { scheduleShard, type Schedule } from '../schedule/schedule.ts';
import { scheduleDraftOf } from './schedule-draft.ts';
import { refusal } from '../refusal.ts';
import type { Connections, ConnState } from './connections.ts';
import type { GatewayMsg, GatewayState } from './gateway.ts';
import type { Reads } from './reads.ts';
import type { Answer } from './routed-call.ts';
import type { Router } from './router.ts';
import type { Subscriptions } from './subscriptions.ts';
import type { Workers } from './workers.ts';

interface BatchState {
  rid: number;
  results: Array<SubmitOutcome | undefined>;
  remaining: number;
}

export class Requests {
  constructor(
    private readonly g: GatewayState,
    private readonly connections: Connections,
    private readonly router: Router,
    private readonly reads: Reads,
    private readonly subscriptions: Subscriptions,
    private readonly workers: Workers,
  ) {}

  request(state: ConnState, msg: ClientRequest | WorkerToNode, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    switch (msg.t) {
      case 'cluster':
        return state.conn.send(this.g.deps.clusterView(msg.rid));
      case 'submit': {
        const refused = this.connections.admit(state, 1, ctx);
        if (refused !== null) {
          this.countSubmissions(state, ctx, refused.code, 1);
          return this.connections.refuse(state, msg.rid, refused, ctx);
        }
        state.inflight++;
        const connId = state.conn.id;
        return this.router.submit(state, msg.job, ctx, (answer) => {
          this.countSubmissions(state, ctx, answer.t === 'error' ? answer.code : null, 1);
          this.router.finishRequest(connId, answer, msg.rid);
        });
      }
      case 'submit_batch':
        return this.submitBatch(state, msg, ctx);
      case 'get':
      case 'list':
      case 'dlq_list':
      case 'schedule_get':
      case 'schedule_list':
      case 'breaker_list':
        return this.reads.request(state, msg, ctx);
      case 'breaker_set':
        return this.toBreaker(state, msg, { kind: 'set', queue: msg.breaker.queue, config: breakerConfigOf(msg.breaker) }, ctx);
      case 'breaker_clear':
        return this.toBreaker(state, msg, { kind: 'clear', queue: msg.queue }, ctx);
      case 'breaker_get':
        return this.toBreaker(state, msg, { kind: 'get', queue: msg.queue }, ctx);
      case 'breaker_watch': {
        const connId = state.conn.id;
        state.watchesBreakers = true;
        this.g.deps.breakers.board.tell({
          kind: 'watch',
          conn: connId,
          tenant,
          push: (change) => this.g.conns.get(connId)?.conn.send({ t: 'breaker_changed', ...change }),
        });
        return state.conn.send({ t: 'ok', rid: msg.rid });
      }
      case 'schedule_upsert': {
        const draft = scheduleDraftOf(msg.schedule, ctx.env.calendar, ctx.env.clock.wallMs());
        if ('code' in draft) return this.connections.refuse(state, msg.rid, draft, ctx);
        return this.toSchedule(state, msg, msg.schedule.name, { kind: 'upsert', schedule: draft }, ctx, (s) => ({ t: 'schedule', rid: msg.rid, schedule: toScheduleView(s!) }));
      }
      case 'schedule_pause':
        return this.toSchedule(state, msg, msg.name, { kind: 'pause', name: msg.name, paused: msg.paused }, ctx, (s) => ({ t: 'schedule', rid: msg.rid, schedule: toScheduleView(s!) }));
      case 'schedule_delete':
        return this.toSchedule(state, msg, msg.name, { kind: 'delete', name: msg.name }, ctx, () => ({ t: 'ok', rid: msg.rid }));
      case 'cancel':
        return this.router.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
          (reply) => ({ kind: 'cancel', tenant, jobId: msg.jobId, reply }),
          (o) => (o.ok ? { t: 'cancelled', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'dlq_requeue':
        return this.router.toOwner<JobOutcome>(state, msg, msg.jobId, ctx,
          (reply) => ({ kind: 'requeue', tenant, jobId: msg.jobId, attemptsMore: msg.attempts ?? REQUEUE_ATTEMPTS_DEFAULT, reply }),
          (o) => (o.ok ? { t: 'requeued', rid: msg.rid, job: toJobView(o.job) } : errorReply(msg.rid, o.error)));
      case 'subscribe':
        return this.subscriptions.subscribe(state, msg, ctx);
      case 'unsubscribe':
        return this.subscriptions.unsubscribe(state, msg, ctx);
      case 'credit':
      case 'drain':
      case 'heartbeat':
      case 'complete':
      case 'fail':
      case 'return':
        return this.workers.request(state, msg, ctx);
    }
  }

  /** A change of a schedule, to the owner of the shard it lives on. */
  private toSchedule(
    state: ConnState,
    msg: ScheduleUpsert | SchedulePause | ScheduleDelete,
    name: string,
    op: ScheduleOp,
    ctx: ActorContext<GatewayMsg>,
    toReply: (schedule: Schedule | null) => NodeToClient,
  ): void {
    const { tenant } = state.conn;
    this.router.toShard<ScheduleOutcome>(state, msg, scheduleShard(tenant, name, this.g.deps.routes.shardCount), ctx,
      (reply) => ({ kind: 'schedule', tenant, op, reply }),
      (o) => (o.ok ? toReply(o.schedule) : errorReply(msg.rid, o.error)));
  }

  /** Counts submissions answered to a client attached here (`refusal` null: accepted); a
   * forwarded one is counted by the node its client is attached to. */
  private countSubmissions(state: ConnState, ctx: ActorContext<GatewayMsg>, refusal: string | null, n: number): void {
    if (state.forwardedBy !== null) return;
    ctx.env.metrics.inc('submissions_total', refusal === null ? { outcome: 'accepted', reason: '' } : { outcome: 'refused', reason: refusal }, n);
  }

  /** A change or read of a circuit breaker, to the owner of the shard it lives on. */
  private toBreaker(state: ConnState, msg: ClientRequest & { rid: number }, op: BreakerOp, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    this.router.toShard<BreakerOutcome>(state, msg, breakerShard(tenant, op.queue, this.g.deps.routes.shardCount), ctx,
      (reply) => ({ kind: 'breaker', tenant, op, reply }),
      (o) => (o.ok ? { t: 'breaker', rid: msg.rid, breaker: toBreakerView(o.reading.breaker, o.reading.config, o.reading.source, o.reading.window) } : errorReply(msg.rid, o.error)));
  }

  private submitBatch(state: ConnState, msg: SubmitBatch, ctx: ActorContext<GatewayMsg>): void {
    const refused = this.connections.tooBig(state, msg.jobs.length) ?? this.connections.admit(state, msg.jobs.length, ctx);
    if (refused !== null) {
      this.countSubmissions(state, ctx, refused.code, msg.jobs.length);
      return this.connections.refuse(state, msg.rid, refused, ctx);
    }
    if (msg.jobs.length === 0) return state.conn.send({ t: 'submitted_batch', rid: msg.rid, results: [] });
    const batch: BatchState = { rid: msg.rid, results: new Array(msg.jobs.length), remaining: msg.jobs.length };
    const connId = state.conn.id;
    state.inflight += msg.jobs.length;
    const finish = (index: number) => (answer: Answer) => {
      const outcome = submitOutcomeOf(answer);
      this.countSubmissions(state, ctx, outcome.ok ? null : outcome.error.code, 1);
      this.batchItem(connId, batch, index, outcome);
    };
    this.router.submitBatch(state, msg.jobs, ctx, finish);
  }

  private batchItem(connId: string, batch: BatchState, index: number, outcome: SubmitOutcome): void {
    batch.results[index] = outcome;
    if (--batch.remaining > 0) return;
    const state = this.g.conns.get(connId);
    if (state === undefined) return;
    state.inflight -= batch.results.length;
    state.conn.send({
      t: 'submitted_batch',
      rid: batch.rid,
      results: batch.results.map((o) => (o!.ok ? { jobId: o!.jobId, duplicate: o!.duplicate } : { error: o!.error })),
    });
  }
}

function submitOutcomeOf(answer: Answer): SubmitOutcome {
  if (answer.t === 'submitted') return { ok: true, jobId: answer.jobId, duplicate: answer.duplicate };
  if (answer.t === 'error') {
    const { t: _t, rid: _rid, ...error } = answer;
    return { ok: false, error };
  }
  return { ok: false, error: refusal('internal', `the owner answered a submission with ${answer.t}`) };
}
