// A validated ScheduleSpec from the wire, with every default filled in, as the shard owner takes
// it; or why the node cannot use its timing (the calendar's word: a bad cron expression or time
// zone, or one that never fires).

import { retryPolicyOf } from '../../../protocol/client-messages.ts';
import type { ScheduleSpec } from '../../../protocol/schedule-view.ts';
import type { ErrorBody } from '../../../protocol/errors.ts';
import type { ScheduleDraft } from '../owner/owner-messages.ts';
import { refusal } from '../refusal.ts';
import { MISSED_MAX_DEFAULT, type Calendar, type ScheduleTiming } from '../schedule/schedule.ts';

export function scheduleDraftOf(spec: ScheduleSpec, calendar: Calendar, nowMs: number): ScheduleDraft | ErrorBody {
  const timing: ScheduleTiming =
    spec.cron !== undefined ? { kind: 'cron', cron: spec.cron, timezone: spec.timezone ?? 'UTC' } : { kind: 'every', everyMs: spec.everyMs! };
  const problem = calendar.timingProblem(timing, nowMs);
  if (problem !== null) return { ...refusal('bad_request', problem), field: timing.kind === 'cron' ? 'schedule.cron' : 'schedule.everyMs' };
  return {
    name: spec.name,
    timing,
    queue: spec.queue,
    payload: spec.payload,
    priority: spec.priority ?? 0,
    retry: retryPolicyOf(spec.retry),
    missed: spec.missed ?? 'once',
    missedMax: spec.missedMax ?? MISSED_MAX_DEFAULT,
    paused: spec.paused ?? false,
  };
}
