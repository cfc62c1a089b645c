// The one constructor of a fresh job record, used by the shard owner for submissions and by
// tests and benchmarks that need real jobs.

import type { Job } from './job.ts';
import type { RetryPolicy } from '../../../protocol/job-rules.ts';
import { formatJobId } from '../../../protocol/job-id.ts';

export interface NewJob {
  shard: number;
  /** The epoch of the owner that accepts it and its per-epoch sequence number: with the shard
   * and the acceptance time they make the id (see job-id.ts). */
  epoch: number;
  seq: number;
  tenant: string;
  queue: string;
  payload: Uint8Array;
  priority: number;
  runAtMs: number;
  retry: RetryPolicy;
  idempotencyKey: string | null;
  nowMs: number;
}

export function newJob(spec: NewJob): Job {
  return {
    id: formatJobId({ shard: spec.shard, scheduledAtMs: spec.nowMs, epoch: spec.epoch, seq: spec.seq }),
    shard: spec.shard,
    tenant: spec.tenant,
    queue: spec.queue,
    payload: spec.payload,
    priority: spec.priority,
    runAtMs: spec.runAtMs,
    scheduledAtMs: spec.nowMs,
    state: 'pending',
    attempts: 0,
    retry: spec.retry,
    idempotencyKey: spec.idempotencyKey,
    leaseEpoch: null,
    leaseWorker: null,
    leaseExpiresAtMs: null,
    version: 1,
    lastError: null,
    result: null,
    createdAtMs: spec.nowMs,
    updatedAtMs: spec.nowMs,
    finishedAtMs: null,
  };
}
