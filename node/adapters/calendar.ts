// Cron arithmetic for schedules (node/core/schedule/schedule.ts), with croner: five or six
// fields (seconds first when six), or a nickname (@daily, @hourly, ...), in any IANA time zone. Daylight saving time, as croner does it:
// a local time that a spring-forward skips fires at the first instant after the gap (02:30 in
// New York on the day clocks go 02:00 → 03:00 fires at 03:00), and a local time that a
// fall-back repeats fires once, at its first occurrence.

import { Cron } from 'croner';
import type { Calendar, ScheduleTiming } from '../core/schedule/schedule.ts';

/** Parsed expressions kept for reuse; past this many the cache starts again. */
const CACHED_MAX = 10_000;
/** Nicknames croner reads as five-field expressions (`@reboot` is no time). */
const NICKNAMES: ReadonlySet<string> = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

export function cronCalendar(): Calendar {
  const cache = new Map<string, Cron>();
  const parse = (cron: string, timezone: string): Cron => {
    const key = `${timezone} ${cron}`;
    let parsed = cache.get(key);
    if (parsed === undefined) {
      parsed = new Cron(cron, { timezone, paused: true, ...(NICKNAMES.has(cron.trim()) ? {} : { mode: cron.trim().split(/\s+/).length === 6 ? '6-part' : '5-part' }) });
      if (cache.size >= CACHED_MAX) cache.clear();
      cache.set(key, parsed);
    }
    return parsed;
  };
  const nextTick = (timing: ScheduleTiming, afterMs: number): number | null => {
    if (timing.kind === 'every') return (Math.floor(afterMs / timing.everyMs) + 1) * timing.everyMs;
    return parse(timing.cron, timing.timezone).nextRun(new Date(afterMs))?.getTime() ?? null;
  };
  return {
    nextTick,
    timingProblem(timing, nowMs) {
      if (timing.kind === 'every') return null;
      const fields = timing.cron.trim().split(/\s+/).length;
      if (!NICKNAMES.has(timing.cron.trim()) && fields !== 5 && fields !== 6) {
        return `cron takes 5 fields (minute first), 6 (second first) or one of ${[...NICKNAMES].join(' ')}, got ${fields} field${fields === 1 ? '' : 's'}`;
      }
      try {
        // An expression that parses may still never fire (February 30th).
        if (nextTick(timing, nowMs) === null) return `cron '${timing.cron}' never fires`;
        return null;
      } catch (error) {
        return `cron '${timing.cron}' in time zone '${timing.timezone}': ${(error as Error).message}`;
      }
    },
  };
}
