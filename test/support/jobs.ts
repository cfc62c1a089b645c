// Building jobs and writes for store tests with the real transition function, so the tests
// exercise exactly the records the shard owner will write.

import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import { leaseTokenOf, type Job } from '../../node/core/job/job.ts';
import { newJob as createJob } from '../../node/core/job/new-job.ts';
import { transition, type JobEvent } from '../../node/core/job/transition.ts';
import type { JobWrite } from '../../node/core/store.ts';

let seq = 0;

export interface NewJob {
  shard: number;
  scheduledAtMs: number;
  tenant?: string;
  queue?: string;
  idempotencyKey?: string | null;
  runAtMs?: number;
  createdAtMs?: number;
  payload?: Uint8Array;
  /** The epoch of the owner that minted the id. */
  epoch?: number;
}

/** A pending job as an owner creates it on submission (through the owner's own constructor);
 * ids are unique within the process. */
export function newJob(spec: NewJob): Job {
  const job = createJob({
    shard: spec.shard,
    epoch: spec.epoch ?? 1,
    seq: seq++,
    tenant: spec.tenant ?? 'tenant-a',
    queue: spec.queue ?? 'default',
    payload: spec.payload ?? new Uint8Array([1, 2, 3]),
    priority: 0,
    runAtMs: spec.runAtMs ?? spec.scheduledAtMs,
    retry: DEFAULT_RETRY_POLICY,
    idempotencyKey: spec.idempotencyKey ?? null,
    nowMs: spec.scheduledAtMs,
  });
  const createdAtMs = spec.createdAtMs ?? spec.scheduledAtMs;
  return { ...job, createdAtMs, updatedAtMs: createdAtMs };
}

export function insertOf(job: Job): JobWrite {
  return { kind: 'insert', job };
}

export interface Step {
  next: Job;
  write: JobWrite;
}

/** Applies a legal event with the transition function and returns the job it leads to and the
 * write that persists it (fenced by the lease token when the event is lease-bound). */
export function step(job: Job, event: JobEvent, nowMs: number = job.updatedAtMs + 1): Step {
  const result = transition(job, event, nowMs);
  if (!result.ok) throw new Error(`test bug: ${event.kind} on a ${job.state} job: ${result.reason}`);
  const leaseBound = 'token' in event || (event.kind === 'cancel' && job.state === 'running');
  const token = leaseBound ? leaseTokenOf(job) : null;
  return { next: result.job, write: { kind: 'update', next: result.job, expectedVersion: job.version, token } };
}

/** Shorthands for the common events. */
export const lease = (job: Job, epoch: number, nowMs?: number): Step =>
  step(job, { kind: 'lease', epoch, worker: 'n1/c1', expiresAtMs: (nowMs ?? job.updatedAtMs + 1) + 30_000 }, nowMs);

export const complete = (job: Job, result: Uint8Array | null = null): Step =>
  step(job, { kind: 'complete', token: leaseTokenOf(job)!, result });

export const retry = (job: Job, runAtMs: number, error = 'failed'): Step =>
  step(job, { kind: 'retry', token: leaseTokenOf(job)!, runAtMs, error });
