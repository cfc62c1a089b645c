// The job state machine: one pure function used by every component that changes a job (the
// shard owner, the stores, the simulator's model). It checks that an event is legal in the
// job's state and that a lease-bound event carries the current lease token, and returns the
// next version of the job. It never throws for an expected refusal: the caller gets a reason.
//
//   pending ──lease──▶ running ──complete──▶ succeeded
//      ▲                 │ │
//      └──retry, release─┘ └──bury──▶ dead ──requeue──▶ pending
//   pending | running ──cancel──▶ cancelled

import type { Job } from './job.ts';
import type { JobState, LeaseToken } from '../../../protocol/job-rules.ts';
import { sameToken } from './job.ts';

export type JobEvent =
  /** An owner grants a lease for the next attempt to the worker connection `worker`. */
  | { kind: 'lease'; epoch: number; expiresAtMs: number; worker: string }
  /** The lease holder reports success. */
  | { kind: 'complete'; token: LeaseToken; result: Uint8Array | null }
  /** The attempt failed (or its lease expired) and the policy allows another. */
  | { kind: 'retry'; token: LeaseToken; runAtMs: number; error: string }
  /** The lease holder gives the attempt back unstarted (a worker shutting down). The attempt
   * number was spent (tokens must not repeat), so the budget grows by one to make up for it. */
  | { kind: 'release'; token: LeaseToken; runAtMs: number }
  /** The attempt failed for the last time, or non-retryably: to the dead-letter queue. */
  | { kind: 'bury'; token: LeaseToken; error: string }
  /** A client cancels a job that has not finished. */
  | { kind: 'cancel' }
  /** An operator sends a dead job back to the queue with `attemptsMore` further attempts.
   * Attempt numbers keep counting up (they are part of the lease token, so reusing one could
   * let a zombie from an earlier attempt commit); the budget is raised instead. */
  | { kind: 'requeue'; runAtMs: number; attemptsMore: number };

export type JobEventKind = JobEvent['kind'];
export const JOB_EVENT_KINDS: readonly JobEventKind[] = ['lease', 'complete', 'retry', 'release', 'bury', 'cancel', 'requeue'];

export type TransitionRefusal = 'illegal_transition' | 'stale_token';
export type TransitionResult = { ok: true; job: Job } | { ok: false; reason: TransitionRefusal };

/** The legal (state, event) pairs and where they lead. Everything absent is illegal. */
const NEXT_STATE: Readonly<Record<JobState, Partial<Record<JobEventKind, JobState>>>> = {
  pending: { lease: 'running', cancel: 'cancelled' },
  running: { complete: 'succeeded', retry: 'pending', release: 'pending', bury: 'dead', cancel: 'cancelled' },
  succeeded: {},
  dead: { requeue: 'pending' },
  cancelled: {},
};

export function nextState(state: JobState, kind: JobEventKind): JobState | null {
  return NEXT_STATE[state][kind] ?? null;
}

export function transition(job: Job, event: JobEvent, nowMs: number): TransitionResult {
  const to = nextState(job.state, event.kind);
  if (to === null) return { ok: false, reason: 'illegal_transition' };
  if ('token' in event) {
    const current = job.leaseEpoch === null ? null : { jobId: job.id, attempt: job.attempts, epoch: job.leaseEpoch };
    if (current === null || !sameToken(current, event.token)) return { ok: false, reason: 'stale_token' };
  }
  const base: Job = { ...job, state: to, version: job.version + 1, updatedAtMs: nowMs };
  switch (event.kind) {
    case 'lease':
      return ok({ ...base, attempts: job.attempts + 1, leaseEpoch: event.epoch, leaseWorker: event.worker, leaseExpiresAtMs: event.expiresAtMs });
    case 'complete':
      return ok({ ...base, result: event.result, leaseExpiresAtMs: null, finishedAtMs: nowMs });
    case 'retry':
      return ok({ ...base, runAtMs: event.runAtMs, lastError: event.error, leaseExpiresAtMs: null });
    case 'release':
      return ok({
        ...base,
        runAtMs: event.runAtMs,
        retry: { ...job.retry, attemptsMax: job.retry.attemptsMax + 1 },
        leaseExpiresAtMs: null,
      });
    case 'bury':
      return ok({ ...base, lastError: event.error, leaseExpiresAtMs: null, finishedAtMs: nowMs });
    case 'cancel':
      return ok({ ...base, leaseExpiresAtMs: null, finishedAtMs: nowMs });
    case 'requeue':
      return ok({
        ...base,
        runAtMs: event.runAtMs,
        retry: { ...job.retry, attemptsMax: job.attempts + event.attemptsMore },
        leaseExpiresAtMs: null,
        finishedAtMs: null,
      });
  }
}

function ok(job: Job): TransitionResult {
  return { ok: true, job };
}
