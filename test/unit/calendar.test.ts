// The calendar schedules tick by (node/adapters/calendar.ts): what the README promises of cron
// expressions, time zones and daylight saving time, and of fixed intervals.

import { describe, expect, it } from 'vitest';
import { cronCalendar } from '../../node/adapters/calendar.ts';

const calendar = cronCalendar();
const at = (iso: string) => Date.parse(iso);
const cron = (expression: string, timezone = 'UTC') => ({ kind: 'cron' as const, cron: expression, timezone });
const ticks = (timing: Parameters<typeof calendar.nextTick>[0], fromIso: string, n: number): string[] => {
  const out: string[] = [];
  for (let t: number | null = at(fromIso); out.length < n && t !== null; ) {
    t = calendar.nextTick(timing, t);
    if (t !== null) out.push(new Date(t).toISOString());
  }
  return out;
};

describe('calendar', () => {
  it('gives the first tick strictly after the instant, with five fields, six (seconds first) or a nickname', () => {
    expect(ticks(cron('*/15 * * * *'), '2026-01-01T00:15:00.000Z', 2)).toEqual(['2026-01-01T00:30:00.000Z', '2026-01-01T00:45:00.000Z']);
    expect(ticks(cron('*/20 * * * * *'), '2026-01-01T00:00:00.000Z', 2)).toEqual(['2026-01-01T00:00:20.000Z', '2026-01-01T00:00:40.000Z']);
    expect(ticks(cron('@daily'), '2026-01-01T10:00:00.000Z', 1)).toEqual(['2026-01-02T00:00:00.000Z']);
    expect(ticks(cron('@hourly', 'Asia/Kolkata'), '2026-01-01T10:10:00.000Z', 1)).toEqual(['2026-01-01T10:30:00.000Z']);
  });

  it('fires a local time that a spring-forward skips at the end of the gap, and one that a fall-back repeats once', () => {
    // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT.
    expect(ticks(cron('0 30 2 * * *', 'America/New_York'), '2026-03-07T12:00:00Z', 2)).toEqual(['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z']);
    // 1 November 2026: 02:00 EDT becomes 01:00 EST; 01:30 happens twice and fires at the first.
    expect(ticks(cron('0 30 1 * * *', 'America/New_York'), '2026-10-31T12:00:00Z', 2)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
  });

  it('ticks a fixed interval at its multiples since the Unix epoch', () => {
    expect(ticks({ kind: 'every', everyMs: 60_000 }, '2026-01-01T00:00:30.000Z', 2)).toEqual(['2026-01-01T00:01:00.000Z', '2026-01-01T00:02:00.000Z']);
    expect(calendar.nextTick({ kind: 'every', everyMs: 60_000 }, at('2026-01-01T00:01:00.000Z'))).toBe(at('2026-01-01T00:02:00.000Z'));
  });

  it('says what is wrong with a timing it cannot use', () => {
    const now = at('2026-01-01T00:00:00Z');
    expect(calendar.timingProblem(cron('0 0 * * *'), now)).toBeNull();
    expect(calendar.timingProblem(cron('@weekly'), now)).toBeNull();
    expect(calendar.timingProblem(cron('* * * * * * *'), now)).toMatch(/cron takes 5 fields .* got 7 fields/);
    expect(calendar.timingProblem(cron('@reboot'), now)).toMatch(/got 1 field$/);
    expect(calendar.timingProblem(cron('61 * * * *'), now)).toMatch(/minute: 61/);
    expect(calendar.timingProblem(cron('0 0 30 2 *'), now)).toBe("cron '0 0 30 2 *' never fires");
    expect(calendar.timingProblem(cron('* * * * *', 'Mars/Olympus'), now)).toMatch(/Mars\/Olympus/);
  });
});
