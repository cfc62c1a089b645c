// Reads served from the store directly, never by an owner: `get`, `list`, `dlq_list`,
// `schedule_get`, `schedule_list` and `breaker_list` (a breaker's live window is its owner's:
// `breaker_get` goes there, requests.ts).
// Everything acknowledged is committed there, so the store's answer is as current as an
// owner's, and reads of every shard need no routing. A read runs off the gateway's turn (the
// store is awaited in a piped effect) and returns as a `reply` message; each takes an in-flight
// slot and one of the connection's read slots (connections.ts) until then.
//
// A page of a list must fit in one frame, so it is fitted here to the jobs' sizes.

import type { BreakerList, Get, DlqList, List, NodeToClient, ScheduleGet, ScheduleList } from '../../../protocol/client-messages.ts';
import { toBreakerView } from './views.ts';
import { errorReply } from '../../../protocol/client-messages.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import { toJobView } from './views.ts';
import { toScheduleView } from './views.ts';
import { CODEC_LIMITS, LIST_LIMIT_DEFAULT } from '../../../protocol/limits.ts';
import type { NodeToWorker } from '../../../protocol/worker-messages.ts';
import type { ActorContext } from '../actor/runtime.ts';
import type { JobState } from '../../../protocol/job-rules.ts';
import type { Page } from '../store.ts';
import { refusal } from '../refusal.ts';
import { RETRY_UNAVAILABLE_MS, type Connections, type ConnState } from './connections.ts';
import type { GatewayMsg, GatewayState } from './gateway.ts';

/** Room left in a reply frame for everything but the jobs' (or schedules') bytes. */
const FRAME_OVERHEAD_BYTES = 64 * 1024;
const VIEW_OVERHEAD_BYTES = 1024;

export class Reads {
  constructor(
    private readonly g: GatewayState,
    private readonly connections: Connections,
  ) {}

  request(state: ConnState, msg: Get | List | DlqList | ScheduleGet | ScheduleList | BreakerList, ctx: ActorContext<GatewayMsg>): void {
    const { tenant } = state.conn;
    switch (msg.t) {
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
      case 'schedule_get':
        return this.read(state, ctx, msg.rid, async () => {
          const schedule = await ctx.env.store.getSchedule(tenant, msg.name);
          if (schedule === null) return errorReply(msg.rid, refusal('not_found', `no schedule ${msg.name}`));
          return { t: 'schedule', rid: msg.rid, schedule: toScheduleView(schedule) };
        });
      case 'schedule_list':
        return this.read(state, ctx, msg.rid, async () => {
          const page = await fitted(msg.limit, (limit) => ctx.env.store.listSchedules(tenant, limit, msg.after ?? null), (s) => s.payload.length);
          return { t: 'schedule_page', rid: msg.rid, schedules: page.items.map(toScheduleView), next: page.next };
        });
      case 'breaker_list':
        return this.read(state, ctx, msg.rid, async () => {
          const page = await ctx.env.store.listBreakers(tenant, msg.limit ?? LIST_LIMIT_DEFAULT, msg.after ?? null);
          const fallback = this.g.deps.breakers.defaultConfig;
          // A row that follows the default, on a node without one, is no breaker here.
          const breakers = page.items.flatMap((b) => {
            const config = b.config ?? fallback;
            return config === null ? [] : [toBreakerView(b, config, b.config === null ? 'default' : 'queue', null)];
          });
          return { t: 'breaker_page', rid: msg.rid, breakers, next: page.next };
        });
    }
  }

  /** A read finished (the `reply` message): its slots are free, and its reply goes out. */
  replied(connId: string, reply: NodeToClient | NodeToWorker, slots: number): void {
    const state = this.g.conns.get(connId);
    if (state === undefined) return;
    state.inflight -= slots;
    this.connections.readDone(state);
    state.conn.send(reply);
  }

  /** A read served by the store directly: everything acknowledged is committed there. A
   * connection has at most `connReadsMax` reads in flight, a few of them running at once. */
  private read(state: ConnState, ctx: ActorContext<GatewayMsg>, rid: number, query: () => Promise<NodeToClient>): void {
    const full = this.connections.full(state, 1) ?? this.connections.readsFull(state);
    if (full !== null) return this.connections.refuse(state, rid, full, ctx);
    const connId = state.conn.id;
    state.inflight++;
    this.connections.whenReadSlot(state, () =>
      ctx.pipe(
        query,
        (reply) => ({ kind: 'reply', connId, reply, slots: 1 }),
        (error) => ({ kind: 'reply', connId, reply: errorReply(rid, readRefusal(error)), slots: 1 }),
      ),
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
      const page = await fitted(
        limit,
        (pageLimit) => ctx.env.store.listJobs(tenant, { state: jobState, queue, limit: pageLimit, after: after ?? null }),
        (job) => job.payload.length + (job.result?.length ?? 0),
      );
      return { t: 'job_page', rid, jobs: page.items.map(toJobView), next: page.next };
    });
  }
}

/** A page that fits in one frame: payloads are up to 256 KiB each, so a page of large items is
 * fetched again, smaller, until it fits. */
async function fitted<T>(limit: number | undefined, fetch: (limit: number) => Promise<Page<T>>, bytesOf: (item: T) => number): Promise<Page<T>> {
  for (let pageLimit = limit ?? LIST_LIMIT_DEFAULT; ; pageLimit = Math.max(1, Math.floor(pageLimit / 2))) {
    const page = await fetch(pageLimit);
    const bytes = page.items.reduce((n, item) => n + bytesOf(item) + VIEW_OVERHEAD_BYTES, 0);
    if (bytes + FRAME_OVERHEAD_BYTES <= CODEC_LIMITS.frameBytesMax || pageLimit === 1) return page;
  }
}

/** Why a read failed: a cursor the store did not make (the stores throw RangeError for it), or
 * the store itself. */
function readRefusal(error: unknown): ErrorBody {
  if (error instanceof RangeError) return { ...refusal('bad_request', 'after: not a cursor this node made'), field: 'after' };
  return refusal('unavailable', 'store unavailable', RETRY_UNAVAILABLE_MS);
}
