// The job state machine: every state × event pair, and properties over random event sequences.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, JOB_STATES, type JobState, type LeaseToken } from '../../protocol/job-rules.ts';
import { type Job } from '../../node/core/job/job.ts';
import { newJob } from '../../node/core/job/new-job.ts';
import { JOB_EVENT_KINDS, nextState, transition, type JobEvent, type JobEventKind } from '../../node/core/job/transition.ts';

const T0 = 1_764_300_000_000;

function jobIn(state: JobState): Job {
  const job = newJob({
    shard: 7, epoch: 3, seq: 1, tenant: 't', queue: 'q', payload: new Uint8Array([1]), priority: 0,
    runAtMs: T0, retry: DEFAULT_RETRY_POLICY, idempotencyKey: null, nowMs: T0,
  });
  const leased = state === 'pending' ? job : { ...job, attempts: 1, leaseEpoch: 3, leaseExpiresAtMs: T0 + 30_000 };
  return { ...leased, state };
}

function tokenOf(job: Job): LeaseToken {
  return { jobId: job.id, attempt: job.attempts, epoch: job.leaseEpoch ?? 3 };
}

function eventOf(kind: JobEventKind, job: Job): JobEvent {
  const token = tokenOf(job);
  switch (kind) {
    case 'lease': return { kind, epoch: 3, expiresAtMs: T0 + 30_000, worker: 'n1/c1' };
    case 'complete': return { kind, token, result: null };
    case 'retry': return { kind, token, runAtMs: T0 + 1_000, error: 'boom' };
    case 'release': return { kind, token, runAtMs: T0 };
    case 'bury': return { kind, token, error: 'boom' };
    case 'cancel': return { kind };
    case 'requeue': return { kind, runAtMs: T0, attemptsMore: 2 };
  }
}

const LEGAL: Record<string, JobState> = {
  'pending/lease': 'running',
  'pending/cancel': 'cancelled',
  'running/complete': 'succeeded',
  'running/retry': 'pending',
  'running/release': 'pending',
  'running/bury': 'dead',
  'running/cancel': 'cancelled',
  'dead/requeue': 'pending',
};

describe('transition: every state × event', () => {
  for (const state of JOB_STATES) {
    for (const kind of JOB_EVENT_KINDS) {
      const expected = LEGAL[`${state}/${kind}`];
      it(`${state} + ${kind} → ${expected ?? 'refused'}`, () => {
        const job = jobIn(state);
        const result = transition(job, eventOf(kind, job), T0 + 5);
        expect(nextState(state, kind)).toBe(expected ?? null);
        if (expected === undefined) {
          expect(result).toEqual({ ok: false, reason: 'illegal_transition' });
          return;
        }
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        expect(result.job.state).toBe(expected);
        expect(result.job.version).toBe(job.version + 1);
        expect(result.job.updatedAtMs).toBe(T0 + 5);
        expect(result.job.id).toBe(job.id);
      });
    }
  }
});

describe('transition: details', () => {
  it('lease starts the next attempt under the granting epoch', () => {
    const r = transition(jobIn('pending'), { kind: 'lease', epoch: 9, expiresAtMs: T0 + 10, worker: 'n1/c1' }, T0);
    expect(r.ok && r.job).toMatchObject({ state: 'running', attempts: 1, leaseEpoch: 9, leaseExpiresAtMs: T0 + 10 });
  });

  it('refuses a lease-bound event with a stale token (attempt or epoch) and with no lease', () => {
    const job = jobIn('running');
    const stale = [
      { ...tokenOf(job), attempt: job.attempts - 1 },
      { ...tokenOf(job), epoch: 2 },
      { ...tokenOf(job), jobId: 'someone-else' },
    ];
    for (const token of stale) {
      expect(transition(job, { kind: 'complete', token, result: null }, T0)).toEqual({ ok: false, reason: 'stale_token' });
      expect(transition(job, { kind: 'retry', token, runAtMs: T0, error: 'x' }, T0)).toEqual({ ok: false, reason: 'stale_token' });
      expect(transition(job, { kind: 'bury', token, error: 'x' }, T0)).toEqual({ ok: false, reason: 'stale_token' });
    }
    const never = { ...jobIn('running'), leaseEpoch: null };
    expect(transition(never, { kind: 'complete', token: tokenOf(job), result: null }, T0).ok).toBe(false);
  });

  it('retry returns the job to pending with the new run_at and the error', () => {
    const job = jobIn('running');
    const r = transition(job, { kind: 'retry', token: tokenOf(job), runAtMs: T0 + 7_000, error: 'timeout' }, T0);
    expect(r.ok && r.job).toMatchObject({ state: 'pending', runAtMs: T0 + 7_000, lastError: 'timeout', attempts: 1 });
  });

  it('requeue keeps attempt numbers increasing and raises the budget', () => {
    const dead = { ...jobIn('dead'), attempts: 5 };
    const r = transition(dead, { kind: 'requeue', runAtMs: T0, attemptsMore: 3 }, T0);
    expect(r.ok && r.job).toMatchObject({ state: 'pending', attempts: 5, finishedAtMs: null });
    expect(r.ok && r.job.retry.attemptsMax).toBe(8);
  });

  it('release gives the attempt back without spending the budget', () => {
    const job = { ...jobIn('running'), attempts: 5 };
    const r = transition(job, { kind: 'release', token: tokenOf(job), runAtMs: T0 }, T0);
    expect(r.ok && r.job).toMatchObject({ state: 'pending', attempts: 5 });
    expect(r.ok && r.job.retry.attemptsMax).toBe(job.retry.attemptsMax + 1);
  });

  it('terminal transitions record when the job finished', () => {
    const job = jobIn('running');
    const r = transition(job, { kind: 'complete', token: tokenOf(job), result: new Uint8Array([42]) }, T0 + 9);
    expect(r.ok && r.job).toMatchObject({ state: 'succeeded', finishedAtMs: T0 + 9, result: new Uint8Array([42]) });
  });
});

describe('transition: properties over random event sequences', () => {
  const kindArb = fc.constantFrom(...JOB_EVENT_KINDS);
  const stepArb = fc.record({ kind: kindArb, staleToken: fc.boolean(), epoch: fc.integer({ min: 1, max: 20 }) });

  it('versions and attempts only grow, terminal states stay terminal, refusals change nothing', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
        let job = jobIn('pending');
        let now = T0;
        for (const step of steps) {
          now += 1;
          let event = eventOf(step.kind, job);
          if (event.kind === 'lease') event = { ...event, epoch: step.epoch };
          if ('token' in event && step.staleToken) event = { ...event, token: { ...event.token, attempt: event.token.attempt + 1 } };
          const before = job;
          const r = transition(job, event, now);
          if (!r.ok) {
            expect(job).toBe(before);
            continue;
          }
          expect(r.job.version).toBe(before.version + 1);
          expect(r.job.attempts).toBeGreaterThanOrEqual(before.attempts);
          expect(before.state === 'succeeded' || before.state === 'cancelled').toBe(false);
          if (r.job.state === 'running') expect(r.job.attempts).toBe(before.attempts + 1);
          job = r.job;
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('the transition function is pure: same input, same output, input untouched', () => {
    fc.assert(
      fc.property(fc.constantFrom(...JOB_STATES), kindArb, (state, kind) => {
        const job = jobIn(state);
        const snapshot = structuredClone(job);
        const a = transition(job, eventOf(kind, job), T0);
        const b = transition(job, eventOf(kind, job), T0);
        expect(a).toEqual(b);
        expect(job).toEqual(snapshot);
      }),
    );
  });
});
