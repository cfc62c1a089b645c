// Worker ↔ node: how a worker takes and finishes jobs, over the same authenticated connection
// (and the same `hello`) as the client messages. Work is pushed by credit: the worker says how
// many jobs of a queue it can run, the node sends up to that many `lease`s, and each lease
// uses up one slot until the worker credits it again. There is no polling.
//
// Every later message about an attempt carries the lease token (jobId, attempt, epoch). The
// node checks it against the job as stored; a write under a token that is no longer current
// is refused with `error stale_lease`, so a zombie worker can never record an outcome. Handlers
// get the token to use as an idempotency key for their own side effects.

import type { LeaseToken } from './job-rules.ts';
import type { ErrorReply } from './client-messages.ts';
import { errorReplySchema, ridSchema } from './client-messages.ts';
import {
  countSchema,
  errorTextSchema,
  idempotencyKeySchema,
  jobIdSchema,
  payloadSchema,
  prioritySchema,
  queueSchema,
  resultSchema,
  timeSchema,
} from './job-view.ts';
import { CREDIT_SLOTS_MAX, DURATION_MS_MAX, PROGRESS_CHARS_MAX } from './limits.ts';
import { bool, int, literal, nullable, obj, oneOf, opt, str, type Schema, type SchemaTable } from './schema.ts';

// ---- Worker → node -----------------------------------------------------------------------

/** Worker → node: `slots` more jobs of `queue` may be sent. No reply. Credit adds up (to at
 * most 10,000 per queue); each lease sent uses one slot. A worker credits a slot again when it
 * has reported the attempt's outcome. */
export interface Credit {
  t: 'credit';
  queue: string;
  slots: number;
}

/** Worker → node: send no more leases for `queue` (all queues when absent): its credit drops to
 * zero. No reply. Leases already on their way still arrive; the worker finishes or returns
 * them. Sent before a graceful shutdown. */
export interface Drain {
  t: 'drain';
  queue?: string;
}

/** Worker → node: the attempt is still running; extend its lease. Reply `lease_extended`, or
 * `error stale_lease`, after which the worker should abort the handler. */
export interface Heartbeat {
  t: 'heartbeat';
  rid: number;
  token: LeaseToken;
  /** Free-form progress note, for logs. */
  progress?: string;
}

/** Worker → node: the attempt succeeded. Reply `ack` once the outcome is committed (the worker
 * may then forget the attempt), or `error stale_lease` when it will not be recorded. */
export interface Complete {
  t: 'complete';
  rid: number;
  token: LeaseToken;
  result?: Uint8Array;
}

/** Worker → node: the attempt failed. The node retries after backoff when `retryable` and
 * attempts remain, else moves the job to the dead-letter queue. Reply `ack` once committed, or
 * `error stale_lease`. */
export interface Fail {
  t: 'fail';
  rid: number;
  token: LeaseToken;
  error: string;
  retryable: boolean;
  /** Whose failure it was, for the queue's circuit breaker: true, the downstream service the
   * job calls (it counts towards the breaker); false, the job's own (it does not). Absent: it
   * counts when `retryable`. */
  downstream?: boolean;
}

/** Worker → node: give a lease back without an outcome (not started, or shutting down). The job
 * is pending again at once, with no backoff, and the returned attempt does not count against
 * attemptsMax. Reply `ack` once committed, or `error stale_lease`. */
export interface Return {
  t: 'return';
  rid: number;
  token: LeaseToken;
}

export type WorkerToNode = Credit | Drain | Heartbeat | Complete | Fail | Return;

// ---- Node → worker -----------------------------------------------------------------------

/** What a handler may want to know about the job beyond its payload. */
export interface LeaseJob {
  priority: number;
  runAt: number;
  createdAt: number;
  idempotencyKey: string | null;
  /** The error of the previous attempt, if it failed. */
  lastError: string | null;
}

/** Node → worker: run one attempt of a job, within the worker's credit. The lease lasts
 * `leaseMs` from when the worker receives it, measured on the worker's own clock (durations,
 * not instants, so the two clocks need not agree); the worker heartbeats well before it runs
 * out (every leaseMs/3 is sensible). An attempt whose lease runs out is retried elsewhere. */
export interface Lease {
  t: 'lease';
  /** `token.attempt` is the attempt number, from 1. */
  token: LeaseToken;
  queue: string;
  payload: Uint8Array;
  attemptsMax: number;
  leaseMs: number;
  job: LeaseJob;
}

/** Node → worker, the reply to `heartbeat`: the lease now lasts `leaseMs` from receipt. */
export interface LeaseExtended {
  t: 'lease_extended';
  rid: number;
  token: LeaseToken;
  leaseMs: number;
}

/** Node → worker, the reply to `complete`, `fail` and `return`: the outcome is committed. */
export interface Ack {
  t: 'ack';
  rid: number;
}

/** Node → worker, unsolicited: stop the attempt; the handler's abort signal fires. Sent when
 * the job is cancelled or the node knows the lease is lost. Any later message under the token
 * gets `error stale_lease`. No reply. */
export interface Revoke {
  t: 'revoke';
  token: LeaseToken;
  reason: 'cancelled' | 'lease_lost';
}

export type NodeToWorker = Lease | LeaseExtended | Ack | Revoke | ErrorReply;

// ---- Schemas -----------------------------------------------------------------------------

export const leaseTokenSchema: Schema<LeaseToken> = obj({
  jobId: jobIdSchema,
  attempt: int(1, Number.MAX_SAFE_INTEGER),
  epoch: countSchema,
});

const leaseMsSchema = int(1, DURATION_MS_MAX);

export const WORKER_TO_NODE: SchemaTable<WorkerToNode> = {
  credit: obj({ t: literal('credit'), queue: queueSchema, slots: int(0, CREDIT_SLOTS_MAX) }),
  drain: obj({ t: literal('drain'), queue: opt(queueSchema) }),
  heartbeat: obj({
    t: literal('heartbeat'),
    rid: ridSchema,
    token: leaseTokenSchema,
    progress: opt(str(PROGRESS_CHARS_MAX)),
  }),
  complete: obj({ t: literal('complete'), rid: ridSchema, token: leaseTokenSchema, result: opt(resultSchema) }),
  fail: obj({ t: literal('fail'), rid: ridSchema, token: leaseTokenSchema, error: errorTextSchema, retryable: bool, downstream: opt(bool) }),
  return: obj({ t: literal('return'), rid: ridSchema, token: leaseTokenSchema }),
};

export const leaseSchema: Schema<Lease> = obj({
  t: literal('lease'),
  token: leaseTokenSchema,
  queue: queueSchema,
  payload: payloadSchema,
  attemptsMax: countSchema,
  leaseMs: leaseMsSchema,
  job: obj({
    priority: prioritySchema,
    runAt: timeSchema,
    createdAt: timeSchema,
    idempotencyKey: nullable(idempotencyKeySchema),
    lastError: nullable(errorTextSchema),
  }),
});

export const NODE_TO_WORKER: SchemaTable<NodeToWorker> = {
  lease: leaseSchema,
  lease_extended: obj({
    t: literal('lease_extended'),
    rid: ridSchema,
    token: leaseTokenSchema,
    leaseMs: leaseMsSchema,
  }),
  ack: obj({ t: literal('ack'), rid: ridSchema }),
  revoke: obj({ t: literal('revoke'), token: leaseTokenSchema, reason: oneOf(['cancelled', 'lease_lost']) }),
  error: errorReplySchema,
};
