// A recurring schedule as clients write it (ScheduleSpec) and read it (ScheduleView); the
// record itself is node/core/schedule/schedule.ts. Instants are `…At`, ms since the Unix epoch.

import { NAME_CHARS_MAX, type RetryPolicy } from './job-rules.ts';
import type { RetrySpec } from './client-messages.ts';
import { payloadSchema, prioritySchema, queueSchema, timeSchema } from './job-view.ts';
import { DELAY_MS_MAX } from './limits.ts';
import { bool, int, nullable, num, obj, oneOf, str, type Schema } from './schema.ts';

/** What happens to ticks that were not fired in time (a tick is missed when its owner reaches
 * it more than a minute late: no owner was up, or the store was down):
 * - skip: none of them runs;
 * - once: one job runs in their stead: the first missed tick's;
 * - each: each runs, the earliest first, up to missedMax; the rest are skipped.
 * Ticks reached in time run whatever the policy. */
export const MISSED_POLICIES = ['skip', 'once', 'each'] as const;
export type MissedPolicy = (typeof MISSED_POLICIES)[number];
export const MISSED_MAX_LIMIT = 100;
/** A schedule fires at most once a second. */
export const EVERY_MS_MIN = 1_000;
export const CRON_CHARS_MAX = 256;
export const TIMEZONE_CHARS_MAX = 64;

export const scheduleNameSchema = str(NAME_CHARS_MAX, { minChars: 1 });

/** A schedule to create or replace (`schedule_upsert`). Exactly one of `cron` and `everyMs`. */
export interface ScheduleSpec {
  name: string;
  queue: string;
  /** Five fields (minute first), six (second first) or a nickname (`@daily`), in `timezone`. */
  cron?: string;
  /** An IANA time zone for `cron`; default UTC. */
  timezone?: string;
  /** A tick at every multiple of this many ms since the Unix epoch (at least 1,000). */
  everyMs?: number;
  /** The payload of every tick's job. */
  payload: Uint8Array;
  priority?: number;
  retry?: RetrySpec;
  /** Ticks reached more than a minute late: skip, once (the first only) or each (up to
   * missedMax, default 10). Default once. */
  missed?: MissedPolicy;
  missedMax?: number;
  /** Create or replace it paused. */
  paused?: boolean;
}

export interface ScheduleView {
  name: string;
  queue: string;
  cron: string | null;
  timezone: string | null;
  everyMs: number | null;
  payload: Uint8Array;
  priority: number;
  retry: RetryPolicy;
  missed: MissedPolicy;
  missedMax: number;
  paused: boolean;
  /** The next tick it will fire; null while paused, or when no tick is left. */
  nextTickAt: number | null;
  createdAt: number;
  updatedAt: number;
}


export const everyMsSchema = int(EVERY_MS_MIN, DELAY_MS_MAX);
export const missedMaxSchema = int(1, MISSED_MAX_LIMIT);
export const cronSchema = str(CRON_CHARS_MAX, { minChars: 1 });
export const timezoneSchema = str(TIMEZONE_CHARS_MAX, { minChars: 1 });

export const scheduleViewSchema: Schema<ScheduleView> = obj({
  name: scheduleNameSchema,
  queue: queueSchema,
  cron: nullable(cronSchema),
  timezone: nullable(timezoneSchema),
  everyMs: nullable(everyMsSchema),
  payload: payloadSchema,
  priority: prioritySchema,
  retry: obj({ attemptsMax: int(1, Number.MAX_SAFE_INTEGER), backoffBaseMs: int(0, Number.MAX_SAFE_INTEGER), backoffMaxMs: int(0, Number.MAX_SAFE_INTEGER), jitter: num(0, 1) }),
  missed: oneOf(MISSED_POLICIES),
  missedMax: missedMaxSchema,
  paused: bool,
  nextTickAt: nullable(timeSchema),
  createdAt: timeSchema,
  updatedAt: timeSchema,
});
