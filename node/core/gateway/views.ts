// The node's records as clients see them: a job, a schedule and a breaker turned into their wire
// views (protocol/job-view.ts, schedule-view.ts, breaker-view.ts), which leave out what is
// internal to the cluster. Here, on the node's side, so that the protocol needs nothing of it.

import type { BreakerConfig, BreakerSource, BreakerView } from '../../../protocol/breaker-view.ts';
import type { JobView } from '../../../protocol/job-view.ts';
import type { ScheduleView } from '../../../protocol/schedule-view.ts';
import type { Breaker } from '../breaker/breaker.ts';
import type { Job } from '../job/job.ts';
import type { Schedule } from '../schedule/schedule.ts';

export function toJobView(job: Job): JobView {
  return {
    id: job.id,
    queue: job.queue,
    state: job.state,
    priority: job.priority,
    runAt: job.runAtMs,
    scheduledAt: job.scheduledAtMs,
    attempts: job.attempts,
    attemptsMax: job.retry.attemptsMax,
    idempotencyKey: job.idempotencyKey,
    lastError: job.lastError,
    result: job.result,
    payload: job.payload,
    createdAt: job.createdAtMs,
    updatedAt: job.updatedAtMs,
    finishedAt: job.finishedAtMs,
  };
}

export function toScheduleView(schedule: Schedule): ScheduleView {
  const { timing } = schedule;
  return {
    name: schedule.name,
    queue: schedule.queue,
    cron: timing.kind === 'cron' ? timing.cron : null,
    timezone: timing.kind === 'cron' ? timing.timezone : null,
    everyMs: timing.kind === 'every' ? timing.everyMs : null,
    payload: schedule.payload,
    priority: schedule.priority,
    retry: schedule.retry,
    missed: schedule.missed,
    missedMax: schedule.missedMax,
    paused: schedule.paused,
    nextTickAt: schedule.nextTickMs,
    createdAt: schedule.createdAtMs,
    updatedAt: schedule.updatedAtMs,
  };
}

/** A breaker as clients see it: `config` is the settings in force (its own, or the node's
 * default), `source` says which, `window` the live counts when the caller has them. */
export function toBreakerView(
  breaker: Breaker,
  config: BreakerConfig,
  source: BreakerSource,
  window: { attempts: number; failures: number } | null,
): BreakerView {
  return {
    queue: breaker.queue,
    source,
    enabled: config.enabled,
    failureRatePct: config.failureRatePct,
    minAttempts: config.minAttempts,
    windowMs: config.windowMs,
    cooldownMs: config.cooldownMs,
    cooldownMaxMs: config.cooldownMaxMs,
    probes: config.probes,
    refuseWhenOpen: config.refuseWhenOpen,
    state: breaker.state,
    since: breaker.sinceMs,
    nextProbeAt: breaker.nextProbeAtMs,
    currentCooldownMs: breaker.cooldownMs,
    openedAttempts: breaker.openedAttempts,
    openedFailures: breaker.openedFailures,
    window: window === null ? null : { attempts: window.attempts, failures: window.failures },
    updatedAt: breaker.updatedAtMs,
  };
}
