// The protocol messages as the SDK groups them: requests (which carry a rid and get exactly
// one reply or `error`), the reply each request expects, and the pushes a node sends
// unasked.

import type {
  BreakerChanged,
  BreakerPage,
  BreakerReply,
  Cancelled,
  ClientRequest,
  ClusterView,
  JobChanged,
  JobPage,
  JobReply,
  Ok,
  Requeued,
  SchedulePage,
  ScheduleReply,
  Submitted,
  SubmittedBatch,
  Subscribed,
} from '../client-messages.ts';
import type { Ack, Complete, Fail, Heartbeat, Lease, LeaseExtended, Return, Revoke } from '../worker-messages.ts';

export type Request = ClientRequest | Heartbeat | Complete | Fail | Return;

interface ReplyByRequest {
  cluster: ClusterView;
  submit: Submitted;
  submit_batch: SubmittedBatch;
  get: JobReply;
  list: JobPage;
  dlq_list: JobPage;
  cancel: Cancelled;
  subscribe: Subscribed;
  unsubscribe: Ok;
  dlq_requeue: Requeued;
  schedule_upsert: ScheduleReply;
  schedule_get: ScheduleReply;
  schedule_list: SchedulePage;
  schedule_pause: ScheduleReply;
  schedule_delete: Ok;
  breaker_set: BreakerReply;
  breaker_clear: BreakerReply;
  breaker_get: BreakerReply;
  breaker_list: BreakerPage;
  breaker_watch: Ok;
  heartbeat: LeaseExtended;
  complete: Ack;
  fail: Ack;
  return: Ack;
}

export type Reply = ReplyByRequest[keyof ReplyByRequest];
export type ReplyTo<R extends Request> = ReplyByRequest[R['t']];

/** Which reply type answers each request type; anything else is a node bug. */
export const REPLY_TYPE: { readonly [K in Request['t']]: ReplyByRequest[K]['t'] } = {
  cluster: 'cluster_view',
  submit: 'submitted',
  submit_batch: 'submitted_batch',
  get: 'job',
  list: 'job_page',
  dlq_list: 'job_page',
  cancel: 'cancelled',
  subscribe: 'subscribed',
  unsubscribe: 'ok',
  dlq_requeue: 'requeued',
  schedule_upsert: 'schedule',
  schedule_get: 'schedule',
  schedule_list: 'schedule_page',
  schedule_pause: 'schedule',
  schedule_delete: 'ok',
  breaker_set: 'breaker',
  breaker_clear: 'breaker',
  breaker_get: 'breaker',
  breaker_list: 'breaker_page',
  breaker_watch: 'ok',
  heartbeat: 'lease_extended',
  complete: 'ack',
  fail: 'ack',
  return: 'ack',
};

export type Push = JobChanged | BreakerChanged | Lease | Revoke;

/** Learns how a request ends: its reply, or why there is none (KairosError,
 * RequestTimeoutError, ConnectionClosedError). `resent` says the request went out again after
 * a dropped connection, or was retried after an unknown outcome (retry.ts), so an earlier copy
 * may have been applied. An object rather than a
 * callback so that hot paths (a worker's outcomes, retries) pass one they already have
 * instead of allocating a closure per request. */
export interface Answerer<R> {
  answered(outcome: R | Error, resent: boolean): void;
}
