// A circuit breaker's decisions (node/core/breaker/breaker-machine.ts): the rolling window, the
// threshold, the cool-down that doubles while reopenings repeat and comes back down on closing,
// probe rounds, and settings that switch a breaker off.

import { describe, expect, it } from 'vitest';
import { BREAKER_DEFAULTS, type BreakerConfig } from '../../protocol/breaker-view.ts';
import { PROBE_ROUND_MS, closedBreaker } from '../../node/core/breaker/breaker.ts';
import { OutcomeWindow, afterOutcomes, afterTime, nextTimeMs, withConfig, withinBounds, type Reported } from '../../node/core/breaker/breaker-machine.ts';

const config: BreakerConfig = { ...BREAKER_DEFAULTS, failureRatePct: 50, minAttempts: 10, windowMs: 10_000, cooldownMs: 1_000, cooldownMaxMs: 3_000 };
const T0 = 1_700_000_000_000;
const FAILED: Reported = { failed: true, succeeded: false, abandoned: false };
const SUCCEEDED: Reported = { failed: false, succeeded: true, abandoned: false };
const BOTH: Reported = { failed: true, succeeded: true, abandoned: false };
const ABANDONED: Reported = { failed: false, succeeded: false, abandoned: true };

describe('the outcome window', () => {
  it('counts what ended within the window, a tenth at a time, and forgets the rest', () => {
    const w = new OutcomeWindow(10_000);
    w.add(T0, 3, 1);
    w.add(T0 + 5_000, 0, 2);
    expect(w.totals(T0 + 5_000)).toEqual({ attempts: 6, failures: 3 });
    // The first bucket leaves once the window has rolled past it.
    expect(w.totals(T0 + 10_999)).toEqual({ attempts: 2, failures: 2 });
    expect(w.totals(T0 + 30_000)).toEqual({ attempts: 0, failures: 0 });
  });

  it('counts outcomes after a clock stepped back into the newest bucket', () => {
    const w = new OutcomeWindow(10_000);
    w.add(T0, 1, 0);
    w.add(T0 - 60_000, 0, 1);
    expect(w.totals(T0)).toEqual({ attempts: 2, failures: 1 });
  });
});

describe('the breaker', () => {
  const closed = { ...closedBreaker('acme', 'pay', 3, config, config.cooldownMs, T0), version: 1 };

  it('opens only with enough attempts in the window, and enough of them failed', () => {
    const w = new OutcomeWindow(config.windowMs);
    w.add(T0, 0, 9);
    expect(afterOutcomes(closed, config, w, FAILED, T0)).toBeNull(); // 9 attempts < 10
    w.add(T0, 11, 0);
    expect(afterOutcomes(closed, config, w, SUCCEEDED, T0)).toBeNull(); // 9 of 20 failed < 50%
    w.add(T0, 0, 2);
    const open = afterOutcomes(closed, config, w, FAILED, T0 + 1);
    expect(open).toMatchObject({ state: 'open', sinceMs: T0 + 1, nextProbeAtMs: T0 + 1 + 1_000, cooldownMs: 1_000, openedAttempts: 22, openedFailures: 11 });
  });

  it('ignores outcomes while open, probes once the cool-down is over, reopens for longer on a failure and closes on a success', () => {
    const w = new OutcomeWindow(config.windowMs);
    const open = { ...closed, state: 'open' as const, sinceMs: T0, nextProbeAtMs: T0 + 1_000, cooldownMs: 1_000 };
    expect(afterOutcomes(open, config, w, BOTH, T0 + 10)).toBeNull();
    expect(afterTime(open, 0, T0 + 999)).toBeNull();
    expect(nextTimeMs(open, 0)).toBe(T0 + 1_000);
    const half = afterTime(open, 0, T0 + 1_000)!;
    expect(half).toMatchObject({ state: 'half_open', round: 1, nextProbeAtMs: null });
    // A failure among the probes' outcomes wins over a success in the same report.
    const reopened = afterOutcomes(half, config, w, BOTH, T0 + 1_500)!;
    expect(reopened).toMatchObject({ state: 'open', cooldownMs: 2_000, nextProbeAtMs: T0 + 3_500 });
    const again = afterOutcomes(afterTime(reopened, 0, T0 + 3_500)!, config, w, FAILED, T0 + 3_600)!;
    expect(again.cooldownMs).toBe(3_000); // doubled, but not past cooldownMaxMs
    const shut = afterOutcomes(afterTime(again, 0, T0 + 6_600)!, config, w, SUCCEEDED, T0 + 6_700)!;
    expect(shut).toMatchObject({ state: 'closed', cooldownMs: 1_000, round: 0, sinceMs: T0 + 6_700 });
  });

  it('starts a new probe round when a round brings no outcome, at once when its probe was given back or lost with its worker', () => {
    const half = { ...closed, state: 'half_open' as const, round: 1 };
    expect(afterTime(half, T0, T0 + PROBE_ROUND_MS - 1)).toBeNull();
    expect(afterTime(half, T0, T0 + PROBE_ROUND_MS)).toMatchObject({ state: 'half_open', round: 2 });
    expect(afterOutcomes(half, config, new OutcomeWindow(config.windowMs), ABANDONED, T0 + 5)).toMatchObject({ state: 'half_open', round: 2 });
    // Closed, an attempt given back is nothing.
    expect(afterOutcomes(closed, config, new OutcomeWindow(config.windowMs), ABANDONED, T0 + 5)).toBeNull();
  });

  it('is closed by settings that switch it off; under new settings an open one cools down from their first cool-down', () => {
    const open = { ...closed, state: 'open' as const, sinceMs: T0, nextProbeAtMs: T0 + 8_000, cooldownMs: 8_000 };
    expect(withConfig(open, { ...config, enabled: false }, { ...config, enabled: false }, T0 + 1)).toMatchObject({ state: 'closed', nextProbeAtMs: null, sinceMs: T0 + 1 });
    expect(withConfig(open, null, null, T0 + 1)).toMatchObject({ state: 'closed', config: null });
    expect(withConfig(open, config, config, T0 + 1)).toMatchObject({ state: 'open', cooldownMs: 1_000, nextProbeAtMs: T0 + 1_000 });
  });

  it('as loaded under settings it was not written under (the node default changed), keeps its cool-down within their bounds', () => {
    const open = { ...closed, config: null, state: 'open' as const, sinceMs: T0, nextProbeAtMs: T0 + 8_000, cooldownMs: 8_000 };
    expect(withinBounds(open, config)).toMatchObject({ state: 'open', cooldownMs: 3_000, nextProbeAtMs: T0 + 3_000 });
    expect(withinBounds({ ...open, cooldownMs: 2_000, nextProbeAtMs: T0 + 2_000 }, config)).toMatchObject({ cooldownMs: 2_000, nextProbeAtMs: T0 + 2_000 });
    expect(withinBounds({ ...closed, cooldownMs: 7_000 }, config)).toMatchObject({ state: 'closed', cooldownMs: 1_000 });
  });
});
