// Client ↔ node: what a client (the SDK, the CLI, a program in any language) sends to the node
// it is connected to, its gateway, and what comes back. Requests carry a `rid` the client
// chooses; the reply echoes it, so a client may have many requests in flight on one
// connection and match replies in any order. Any request may be answered with `error` instead
// of its reply. PROTOCOL.md documents every field.

import type { JobState, RetryPolicy } from './job-rules.ts';
import { ATTEMPTS_MAX_LIMIT, DEFAULT_RETRY_POLICY, ERROR_CHARS_MAX, JOB_STATES } from './job-rules.ts';
import { retryPolicyProblem } from './job-rules.ts';
import { ERROR_CODE_NAMES, type ErrorBody } from './errors.ts';
import type { BreakerState } from './breaker-view.ts';
import { breakerSpecSchema, breakerStateSchema, breakerViewSchema, type BreakerSpec, type BreakerView } from './breaker-view.ts';
import { MISSED_POLICIES } from './schedule-view.ts';
import {
  idempotencyKeySchema,
  jobIdSchema,
  jobViewSchema,
  payloadSchema,
  prioritySchema,
  queueSchema,
  timeSchema,
  type JobView,
} from './job-view.ts';
import {
  ADDRS_MAX,
  BATCH_MAX,
  CURSOR_CHARS_MAX,
  DELAY_MS_MAX,
  DURATION_MS_MAX,
  FIELD_PATH_CHARS_MAX,
  LABEL_CHARS_MAX,
  LIST_LIMIT_MAX,
  MEMBERS_MAX,
  RID_MAX,
  SHARD_COUNT_MAX,
  URL_CHARS_MAX,
  type AdvertisedLimits,
} from './limits.ts';
import {
  cronSchema,
  everyMsSchema,
  missedMaxSchema,
  scheduleNameSchema,
  scheduleViewSchema,
  timezoneSchema,
  type ScheduleSpec,
  type ScheduleView,
} from './schedule-view.ts';
import {
  arr,
  bin,
  bool,
  int,
  Invalid,
  keyed,
  literal,
  nullable,
  num,
  obj,
  oneOf,
  opt,
  refine,
  str,
  type Schema,
  type SchemaTable,
} from './schema.ts';

// ---- Parts -------------------------------------------------------------------------------

/** The retry policy a submission may set. Absent fields take their defaults (retryPolicyOf). */
export interface RetrySpec {
  attemptsMax?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  jitter?: number;
}

/** One job to submit. */
export interface SubmitSpec {
  queue: string;
  payload: Uint8Array;
  /** Higher runs first; default 0. */
  priority?: number;
  /** Run no earlier than this instant. Exclusive with delayMs; default: now. */
  runAt?: number;
  /** Run no earlier than this long after the node accepts the job. */
  delayMs?: number;
  /** Submissions of one tenant with the same key map to one job. */
  idempotencyKey?: string;
  /** The key only makes resending this submission safe (the SDK sets this for the keys it
   * generates): the node may place the job on a shard it serves itself instead of the one
   * the key hashes to, which saves forwarding it to another node. One key still yields one
   * job: keys are unique per tenant in the store, whichever shard claims them. */
  anyShard?: boolean;
  retry?: RetrySpec;
}

/** The policy a job gets: DEFAULT_RETRY_POLICY with the fields the spec sets. An unset
 * backoffMaxMs is raised to backoffBaseMs when that is larger, so setting only a long base
 * backoff does not fail against the default cap. */
export function retryPolicyOf(spec: RetrySpec | undefined): RetryPolicy {
  const backoffBaseMs = spec?.backoffBaseMs ?? DEFAULT_RETRY_POLICY.backoffBaseMs;
  return {
    attemptsMax: spec?.attemptsMax ?? DEFAULT_RETRY_POLICY.attemptsMax,
    backoffBaseMs,
    backoffMaxMs: spec?.backoffMaxMs ?? Math.max(DEFAULT_RETRY_POLICY.backoffMaxMs, backoffBaseMs),
    jitter: spec?.jitter ?? DEFAULT_RETRY_POLICY.jitter,
  };
}

/** Outcome of one job of a `submit_batch`, at the same index as the job. */
export type BatchResult = { jobId: string; duplicate: boolean } | { error: ErrorBody };

// ---- Client → node -----------------------------------------------------------------------

/** Client → node, first frame on every connection, once. The node answers `welcome` with the
 * highest version both speak, or `error unsupported_version` and closes. Any other frame
 * before `hello` is answered with `error illegal_state`. */
export interface Hello {
  t: 'hello';
  /** Versions the client speaks. */
  versions: number[];
  /** Free-form client name and version, for the node's logs. */
  client?: string;
}

/** Client → node: create one job. The node routes it to the owner of the job's shard, which
 * commits it and only then replies `submitted`: an acknowledged job is durable. With an
 * idempotency key the node returns the existing job (`duplicate: true`) instead of creating
 * one. Refusals (`overloaded`, `rate_limited`, `unavailable`, `bad_request`, and `circuit_open`
 * when the queue's breaker is open and set to refuse) leave no job. */
export interface Submit {
  t: 'submit';
  rid: number;
  job: SubmitSpec;
}

/** Client → node: create up to batchMax jobs in one frame. The whole frame is validated first;
 * one invalid job refuses the frame with `bad_request` naming it (`jobs[3].queue`). After
 * that each job is accepted or refused on its own (jobs go to different shards), and
 * `submitted_batch` reports each at its index. */
export interface SubmitBatch {
  t: 'submit_batch';
  rid: number;
  jobs: SubmitSpec[];
}

/** Client → node: read one job. Reply `job`, or `error not_found`. */
export interface Get {
  t: 'get';
  rid: number;
  jobId: string;
}

/** Client → node: list the tenant's jobs, newest first, optionally filtered. Reply `job_page`. */
export interface List {
  t: 'list';
  rid: number;
  state?: JobState;
  queue?: string;
  /** Jobs per page; default 100. */
  limit?: number;
  /** The `next` cursor of the previous page. */
  after?: string;
}

/** Client → node: cancel a job that is pending or running. A running attempt's worker gets
 * `revoke`. Reply `cancelled` once committed, or `error illegal_state` for a finished job. */
export interface Cancel {
  t: 'cancel';
  rid: number;
  jobId: string;
}

/** Client → node: follow a job. Reply `subscribed` with its current view; then the node pushes
 * `job_changed` after every committed change until the job is terminal (that push is the
 * last) or the client sends `unsubscribe`. */
export interface Subscribe {
  t: 'subscribe';
  rid: number;
  jobId: string;
}

/** Client → node: stop the pushes of `subscribe`. Reply `ok`, also when there was no
 * subscription. */
export interface Unsubscribe {
  t: 'unsubscribe';
  rid: number;
  jobId: string;
}

/** Client → node: list dead jobs (the dead-letter queue), newest first. Reply `job_page`. */
export interface DlqList {
  t: 'dlq_list';
  rid: number;
  queue?: string;
  limit?: number;
  after?: string;
}

/** Client → node: send a dead job back to its queue with `attempts` more attempts (default 1).
 * Reply `requeued` once committed, or `error illegal_state` when the job is not dead. */
export interface DlqRequeue {
  t: 'dlq_requeue';
  rid: number;
  jobId: string;
  attempts?: number;
}

/** Client → node: create a recurring schedule, or replace the tenant's schedule of that name
 * (its next tick is then the first after now). Reply `schedule` once committed; `error
 * bad_request` for a cron expression or time zone the node cannot use, or one that never
 * fires; `error illegal_state` when the tenant has SCHEDULES_PER_TENANT_MAX schedules. */
export interface ScheduleUpsert {
  t: 'schedule_upsert';
  rid: number;
  schedule: ScheduleSpec;
}

/** Client → node: read one schedule. Reply `schedule`, or `error not_found`. */
export interface ScheduleGet {
  t: 'schedule_get';
  rid: number;
  name: string;
}

/** Client → node: the tenant's schedules by name. Reply `schedule_page`. */
export interface ScheduleList {
  t: 'schedule_list';
  rid: number;
  limit?: number;
  after?: string;
}

/** Client → node: pause (no tick fires) or resume (the next tick is the first after now: ticks
 * that fell while paused are not run). Reply `schedule`, or `error not_found`. */
export interface SchedulePause {
  t: 'schedule_pause';
  rid: number;
  name: string;
  paused: boolean;
}

/** Client → node: delete a schedule; jobs it already made stay. Reply `ok`, or `error
 * not_found`. */
export interface ScheduleDelete {
  t: 'schedule_delete';
  rid: number;
  name: string;
}

/** Client → node: set the circuit breaker of one of the tenant's queues (its own settings, which
 * replace any it had; omitted fields take the defaults). Reply `breaker` once committed; `error
 * illegal_state` when the queue has no breaker row yet and the tenant has
 * BREAKERS_PER_TENANT_MAX. */
export interface BreakerSet {
  t: 'breaker_set';
  rid: number;
  breaker: BreakerSpec;
}

/** Client → node: drop the queue's own breaker settings; the node's default breaker applies to
 * it again. Reply `breaker` once committed. */
export interface BreakerClear {
  t: 'breaker_clear';
  rid: number;
  queue: string;
}

/** Client → node: read one queue's breaker, with its live window. Reply `breaker`, or `error
 * not_found` when the queue has no breaker (no settings of its own and the node has no
 * default). */
export interface BreakerGet {
  t: 'breaker_get';
  rid: number;
  queue: string;
}

/** Client → node: the tenant's breakers by queue. Reply `breaker_page`. */
export interface BreakerList {
  t: 'breaker_list';
  rid: number;
  limit?: number;
  after?: string;
}

/** Client → node: follow the state of the tenant's breakers. Reply `ok`; then the node pushes
 * `breaker_changed` for every change of state it sees, until the connection closes. */
export interface BreakerWatch {
  t: 'breaker_watch';
  rid: number;
}

/** Client → node: who is in the cluster, and which node the ring names owner of each shard,
 * as the node that answers sees it. Reply `cluster_view`. Clients use the members' `clientUrl`
 * to fail over to another node. */
export interface ClusterQuery {
  t: 'cluster';
  rid: number;
}

export type ClientToNode =
  | Hello
  | ClusterQuery
  | Submit
  | SubmitBatch
  | Get
  | List
  | Cancel
  | Subscribe
  | Unsubscribe
  | DlqList
  | DlqRequeue
  | ScheduleUpsert
  | ScheduleGet
  | ScheduleList
  | SchedulePause
  | ScheduleDelete
  | BreakerSet
  | BreakerClear
  | BreakerGet
  | BreakerList
  | BreakerWatch;
/** Everything but `hello`: what a gateway forwards to a shard owner. */
export type ClientRequest = Exclude<ClientToNode, Hello>;

// ---- Node → client -----------------------------------------------------------------------

/** Node → client, the reply to `hello`. The client uses `version` from now on and keeps its
 * frames within `limits`. */
export interface Welcome {
  t: 'welcome';
  version: number;
  /** Id of the node the client is connected to. */
  node: string;
  shardCount: number;
  limits: AdvertisedLimits;
}

/** One node of the cluster in a `cluster_view`. */
export interface MemberView {
  node: string;
  /** How the answering node sees it: `suspect` when its heartbeats stopped a little while ago,
   * `dead` when they stopped long ago, `leaving` when it is handing its shards off. */
  status: 'alive' | 'suspect' | 'dead' | 'leaving';
  incarnation: number;
  clientUrl: string;
  /** Whether shards are placed on it. A new node joins the ring once heard steadily. */
  inRing: boolean;
  /** Shards the ring gives it. */
  shards: number;
}

/** Node → client, the reply to `cluster`. */
export interface ClusterView {
  t: 'cluster_view';
  rid: number;
  /** The answering node. */
  node: string;
  members: MemberView[];
  /** The shard map: for shard s, the big-endian uint16 at byte 2s is the index in `members` of
   * its owner, 0xffff when none (no ring yet). A single node answers with every shard its own. */
  owners: Uint8Array;
}

/** Node → client, the reply to `submit`: the job is committed. */
export interface Submitted {
  t: 'submitted';
  rid: number;
  jobId: string;
  /** True when the idempotency key matched an existing job, which is returned instead. */
  duplicate: boolean;
}

/** Node → client, the reply to `submit_batch`: one result per job, in order. */
export interface SubmittedBatch {
  t: 'submitted_batch';
  rid: number;
  results: BatchResult[];
}

/** Node → client, the reply to `get`. */
export interface JobReply {
  t: 'job';
  rid: number;
  job: JobView;
}

/** Node → client, the reply to `list` and `dlq_list`. A page holds at most `limit` jobs and is
 * cut short to fit the frame limit; `next` is null on the last page. */
export interface JobPage {
  t: 'job_page';
  rid: number;
  jobs: JobView[];
  next: string | null;
}

/** Node → client, the reply to `cancel`: the job as committed, cancelled. */
export interface Cancelled {
  t: 'cancelled';
  rid: number;
  job: JobView;
}

/** Node → client, the reply to `subscribe`: the job as it is now. */
export interface Subscribed {
  t: 'subscribed';
  rid: number;
  job: JobView;
}

/** Node → client, unsolicited, for a subscribed job after each committed change. Pushes of one
 * job arrive in commit order; a client seeing `updatedAt` go backwards drops the push. */
export interface JobChanged {
  t: 'job_changed';
  jobId: string;
  job: JobView;
}

/** Node → client, the reply to `unsubscribe`, `schedule_delete` and `breaker_watch`. */
export interface Ok {
  t: 'ok';
  rid: number;
}

/** Node → client, the reply to `dlq_requeue`: the job as committed, pending again. */
export interface Requeued {
  t: 'requeued';
  rid: number;
  job: JobView;
}

/** Node → client, the reply to `hello` when the connection's tenant is served by another cell
 * (another Kairos cluster, with a PostgreSQL of its own): connect to one of `urls` instead, with
 * the same token. The node closes the connection after it. */
export interface Redirect {
  t: 'redirect';
  cell: string;
  urls: string[];
}

/** Node → client, the reply to `schedule_upsert`, `schedule_get` and `schedule_pause`: the
 * schedule as committed. */
export interface ScheduleReply {
  t: 'schedule';
  rid: number;
  schedule: ScheduleView;
}

/** Node → client, the reply to `schedule_list`; `next` is null on the last page. */
export interface SchedulePage {
  t: 'schedule_page';
  rid: number;
  schedules: ScheduleView[];
  next: string | null;
}

/** Node → client, the reply to `breaker_set`, `breaker_clear` and `breaker_get`: the queue's
 * breaker as it now is. */
export interface BreakerReply {
  t: 'breaker';
  rid: number;
  breaker: BreakerView;
}

/** Node → client, the reply to `breaker_list`; `next` is null on the last page. */
export interface BreakerPage {
  t: 'breaker_page';
  rid: number;
  breakers: BreakerView[];
  next: string | null;
}

/** Node → client, unsolicited, after `breaker_watch`: one of the tenant's breakers changed
 * state, as the node sees it. */
export interface BreakerChanged {
  t: 'breaker_changed';
  queue: string;
  state: BreakerState;
  /** When it entered `state`. */
  since: number;
  /** While open: when it goes half-open. Else null. */
  nextProbeAt: number | null;
}

/** Node → client or worker: a request was refused, or a frame could not be read. `rid` is the
 * request's, or null when the frame had none or it could not be read. */
export interface ErrorReply extends ErrorBody {
  t: 'error';
  rid: number | null;
}

export function errorReply(rid: number | null, body: ErrorBody): ErrorReply {
  return { t: 'error', rid, ...body };
}

export type NodeToClient =
  | Welcome
  | ClusterView
  | Submitted
  | SubmittedBatch
  | JobReply
  | JobPage
  | Cancelled
  | Subscribed
  | JobChanged
  | Ok
  | Requeued
  | ScheduleReply
  | SchedulePage
  | BreakerReply
  | BreakerPage
  | BreakerChanged
  | Redirect
  | ErrorReply;

// ---- Schemas -----------------------------------------------------------------------------

export const ridSchema = int(0, RID_MAX);
const nodeIdSchema = str(LABEL_CHARS_MAX, { minChars: 1 });
const cursorSchema = str(CURSOR_CHARS_MAX, { minChars: 1 });
const limitSchema = int(1, LIST_LIMIT_MAX);

// The ranges mirror retryPolicyProblem, which still runs on the filled-in policy and has the
// last word; they are here so a bad field is named precisely.
const retrySpecSchema: Schema<RetrySpec> = refine(
  obj({
    attemptsMax: opt(int(1, ATTEMPTS_MAX_LIMIT)),
    backoffBaseMs: opt(int(0, 86_400_000)),
    backoffMaxMs: opt(int(0, 7 * 86_400_000)),
    jitter: opt(num(0, 1)),
  }),
  (spec) => {
    const problem = retryPolicyProblem(retryPolicyOf(spec));
    return problem === null ? null : new Invalid('', problem);
  },
);

export const submitSpecSchema: Schema<SubmitSpec> = refine(
  obj({
    queue: queueSchema,
    payload: payloadSchema,
    priority: opt(prioritySchema),
    runAt: opt(timeSchema),
    delayMs: opt(int(0, DELAY_MS_MAX)),
    idempotencyKey: opt(idempotencyKeySchema),
    anyShard: opt(bool),
    retry: opt(retrySpecSchema),
  }),
  (spec) =>
    spec.runAt !== undefined && spec.delayMs !== undefined
      ? new Invalid('delayMs', 'runAt and delayMs exclude each other')
      : null,
);

const scheduleSpecSchema: Schema<ScheduleSpec> = refine(
  obj({
    name: scheduleNameSchema,
    queue: queueSchema,
    cron: opt(cronSchema),
    timezone: opt(timezoneSchema),
    everyMs: opt(everyMsSchema),
    payload: payloadSchema,
    priority: opt(prioritySchema),
    retry: opt(retrySpecSchema),
    missed: opt(oneOf(MISSED_POLICIES)),
    missedMax: opt(missedMaxSchema),
    paused: opt(bool),
  }),
  (spec) => {
    if ((spec.cron === undefined) === (spec.everyMs === undefined)) return new Invalid('cron', 'give exactly one of cron and everyMs');
    if (spec.timezone !== undefined && spec.cron === undefined) return new Invalid('timezone', 'timezone goes with cron');
    return null;
  },
);

const errorBodyFields = {
  code: oneOf(ERROR_CODE_NAMES),
  message: str(ERROR_CHARS_MAX),
  field: opt(str(FIELD_PATH_CHARS_MAX)),
  retryAfterMs: opt(int(0, DURATION_MS_MAX)),
};
export const errorBodySchema: Schema<ErrorBody> = obj(errorBodyFields);

const batchResultSchema: Schema<BatchResult> = keyed(
  'error',
  obj({ error: errorBodySchema }),
  obj({ jobId: jobIdSchema, duplicate: bool }),
);

export const CLIENT_TO_NODE: SchemaTable<ClientToNode> = {
  hello: obj({ t: literal('hello'), versions: arr(int(1, 0xffff), 16), client: opt(str(LABEL_CHARS_MAX)) }),
  cluster: obj({ t: literal('cluster'), rid: ridSchema }),
  submit: obj({ t: literal('submit'), rid: ridSchema, job: submitSpecSchema }),
  submit_batch: obj({ t: literal('submit_batch'), rid: ridSchema, jobs: arr(submitSpecSchema, BATCH_MAX) }),
  get: obj({ t: literal('get'), rid: ridSchema, jobId: jobIdSchema }),
  list: obj({
    t: literal('list'),
    rid: ridSchema,
    state: opt(oneOf(JOB_STATES)),
    queue: opt(queueSchema),
    limit: opt(limitSchema),
    after: opt(cursorSchema),
  }),
  cancel: obj({ t: literal('cancel'), rid: ridSchema, jobId: jobIdSchema }),
  subscribe: obj({ t: literal('subscribe'), rid: ridSchema, jobId: jobIdSchema }),
  unsubscribe: obj({ t: literal('unsubscribe'), rid: ridSchema, jobId: jobIdSchema }),
  dlq_list: obj({
    t: literal('dlq_list'),
    rid: ridSchema,
    queue: opt(queueSchema),
    limit: opt(limitSchema),
    after: opt(cursorSchema),
  }),
  dlq_requeue: obj({
    t: literal('dlq_requeue'),
    rid: ridSchema,
    jobId: jobIdSchema,
    attempts: opt(int(1, ATTEMPTS_MAX_LIMIT)),
  }),
  schedule_upsert: obj({ t: literal('schedule_upsert'), rid: ridSchema, schedule: scheduleSpecSchema }),
  schedule_get: obj({ t: literal('schedule_get'), rid: ridSchema, name: scheduleNameSchema }),
  schedule_list: obj({ t: literal('schedule_list'), rid: ridSchema, limit: opt(limitSchema), after: opt(cursorSchema) }),
  schedule_pause: obj({ t: literal('schedule_pause'), rid: ridSchema, name: scheduleNameSchema, paused: bool }),
  schedule_delete: obj({ t: literal('schedule_delete'), rid: ridSchema, name: scheduleNameSchema }),
  breaker_set: obj({ t: literal('breaker_set'), rid: ridSchema, breaker: breakerSpecSchema }),
  breaker_clear: obj({ t: literal('breaker_clear'), rid: ridSchema, queue: queueSchema }),
  breaker_get: obj({ t: literal('breaker_get'), rid: ridSchema, queue: queueSchema }),
  breaker_list: obj({ t: literal('breaker_list'), rid: ridSchema, limit: opt(limitSchema), after: opt(cursorSchema) }),
  breaker_watch: obj({ t: literal('breaker_watch'), rid: ridSchema }),
};

export const errorReplySchema: Schema<ErrorReply> = obj({
  t: literal('error'),
  rid: nullable(ridSchema),
  ...errorBodyFields,
});

const positiveSchema = int(1, Number.MAX_SAFE_INTEGER);

export const NODE_TO_CLIENT: SchemaTable<NodeToClient> = {
  welcome: obj({
    t: literal('welcome'),
    version: int(1, 0xffff),
    node: str(LABEL_CHARS_MAX, { minChars: 1 }),
    shardCount: int(1, SHARD_COUNT_MAX),
    limits: obj({
      frameBytesMax: positiveSchema,
      payloadBytesMax: positiveSchema,
      resultBytesMax: positiveSchema,
      batchMax: positiveSchema,
      inflightMax: positiveSchema,
    }),
  }),
  cluster_view: obj({
    t: literal('cluster_view'),
    rid: ridSchema,
    node: nodeIdSchema,
    members: arr(
      obj({
        node: nodeIdSchema,
        status: oneOf(['alive', 'suspect', 'dead', 'leaving']),
        incarnation: int(0, Number.MAX_SAFE_INTEGER),
        clientUrl: str(URL_CHARS_MAX),
        inRing: bool,
        shards: int(0, SHARD_COUNT_MAX),
      }),
      MEMBERS_MAX,
    ),
    owners: bin(2 * SHARD_COUNT_MAX),
  }),
  submitted: obj({ t: literal('submitted'), rid: ridSchema, jobId: jobIdSchema, duplicate: bool }),
  submitted_batch: obj({ t: literal('submitted_batch'), rid: ridSchema, results: arr(batchResultSchema, BATCH_MAX) }),
  job: obj({ t: literal('job'), rid: ridSchema, job: jobViewSchema }),
  job_page: obj({
    t: literal('job_page'),
    rid: ridSchema,
    jobs: arr(jobViewSchema, LIST_LIMIT_MAX),
    next: nullable(cursorSchema),
  }),
  cancelled: obj({ t: literal('cancelled'), rid: ridSchema, job: jobViewSchema }),
  subscribed: obj({ t: literal('subscribed'), rid: ridSchema, job: jobViewSchema }),
  job_changed: obj({ t: literal('job_changed'), jobId: jobIdSchema, job: jobViewSchema }),
  ok: obj({ t: literal('ok'), rid: ridSchema }),
  requeued: obj({ t: literal('requeued'), rid: ridSchema, job: jobViewSchema }),
  schedule: obj({ t: literal('schedule'), rid: ridSchema, schedule: scheduleViewSchema }),
  schedule_page: obj({ t: literal('schedule_page'), rid: ridSchema, schedules: arr(scheduleViewSchema, LIST_LIMIT_MAX), next: nullable(cursorSchema) }),
  breaker: obj({ t: literal('breaker'), rid: ridSchema, breaker: breakerViewSchema }),
  breaker_page: obj({ t: literal('breaker_page'), rid: ridSchema, breakers: arr(breakerViewSchema, LIST_LIMIT_MAX), next: nullable(cursorSchema) }),
  breaker_changed: obj({ t: literal('breaker_changed'), queue: queueSchema, state: breakerStateSchema, since: timeSchema, nextProbeAt: nullable(timeSchema) }),
  redirect: obj({ t: literal('redirect'), cell: str(LABEL_CHARS_MAX, { minChars: 1 }), urls: arr(str(URL_CHARS_MAX, { minChars: 1 }), ADDRS_MAX) }),
  error: errorReplySchema,
};
