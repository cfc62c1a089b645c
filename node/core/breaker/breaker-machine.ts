// A breaker's decisions (the state diagram is in breaker.ts): pure functions of the record, its
// settings, the outcomes counted in its rolling window and the clock, so that the owner that
// applies them (owner/breakers.ts) only has to persist what they return.

import type { Breaker } from './breaker.ts';
import type { BreakerConfig } from '../../../protocol/breaker-view.ts';
import { PROBE_ROUND_MS } from './breaker.ts';

/** The window is kept in this many buckets: it rolls a tenth of its length at a time. */
const BUCKETS = 10;

/** Attempt outcomes over the last `windowMs`, in buckets. */
export class OutcomeWindow {
  private readonly attempts = new Array<number>(BUCKETS).fill(0);
  private readonly failures = new Array<number>(BUCKETS).fill(0);
  /** The index of the newest bucket's span since the Unix epoch. */
  private newest = -1;

  constructor(private readonly windowMs: number) {}

  add(nowMs: number, successes: number, failures: number): void {
    const i = this.roll(nowMs);
    this.attempts[i]! += successes + failures;
    this.failures[i]! += failures;
  }

  totals(nowMs: number): { attempts: number; failures: number } {
    this.roll(nowMs);
    let attempts = 0;
    let failures = 0;
    for (let i = 0; i < BUCKETS; i++) {
      attempts += this.attempts[i]!;
      failures += this.failures[i]!;
    }
    return { attempts, failures };
  }

  clear(): void {
    this.attempts.fill(0);
    this.failures.fill(0);
  }

  /** Empties the buckets whose span has passed; returns the bucket of `nowMs`. */
  private roll(nowMs: number): number {
    const span = Math.floor(nowMs / Math.max(1, Math.floor(this.windowMs / BUCKETS)));
    // A clock stepped back counts into the newest bucket rather than reopening old ones.
    if (span > this.newest) {
      const stale = Math.min(BUCKETS, span - this.newest);
      for (let k = 1; k <= stale; k++) {
        const j = (this.newest + k) % BUCKETS;
        this.attempts[j] = 0;
        this.failures[j] = 0;
      }
      this.newest = span;
    }
    return this.newest % BUCKETS;
  }
}

/** What a report said of a breaker's attempts: some failed, some succeeded, some ended with no
 * verdict (their worker gave them back or went away). */
export interface Reported {
  failed: boolean;
  succeeded: boolean;
  abandoned: boolean;
}

/** The breaker after outcomes were reported, or null when it stays as it is. `window` already
 * holds them. */
export function afterOutcomes(b: Breaker, config: BreakerConfig, window: OutcomeWindow, reported: Reported, nowMs: number): Breaker | null {
  const { failed, succeeded, abandoned } = reported;
  switch (b.state) {
    case 'closed': {
      const { attempts, failures } = window.totals(nowMs);
      if (attempts < config.minAttempts || failures * 100 < config.failureRatePct * attempts) return null;
      return open(b, b.cooldownMs, attempts, failures, nowMs);
    }
    case 'open':
      // Outcomes of leases granted before it opened: they neither close nor reopen it.
      return null;
    case 'half_open':
      if (failed) return open(b, Math.min(config.cooldownMaxMs, b.cooldownMs * 2), b.openedAttempts, b.openedFailures, nowMs);
      if (succeeded) return { ...b, state: 'closed', sinceMs: nowMs, nextProbeAtMs: null, cooldownMs: config.cooldownMs, round: 0, updatedAtMs: nowMs };
      // A probe given back, or lost with its worker, tells nothing: the next round, now, rather
      // than a wait of PROBE_ROUND_MS with nothing to probe.
      if (abandoned) return { ...b, round: b.round + 1, updatedAtMs: nowMs };
      return null;
  }
}

/** The breaker once time has passed: an open one whose cool-down is over goes half-open, a
 * half-open one whose round brought no outcome starts the next round. Null when nothing is due.
 * `roundStartedMs`: when the current half-open round began. */
export function afterTime(b: Breaker, roundStartedMs: number, nowMs: number): Breaker | null {
  if (b.state === 'open' && b.nextProbeAtMs !== null && b.nextProbeAtMs <= nowMs) {
    return { ...b, state: 'half_open', sinceMs: nowMs, nextProbeAtMs: null, round: 1, updatedAtMs: nowMs };
  }
  if (b.state === 'half_open' && nowMs - roundStartedMs >= PROBE_ROUND_MS) return { ...b, round: b.round + 1, updatedAtMs: nowMs };
  return null;
}

/** When afterTime has something to do next, or null. */
export function nextTimeMs(b: Breaker, roundStartedMs: number): number | null {
  if (b.state === 'open') return b.nextProbeAtMs;
  if (b.state === 'half_open') return roundStartedMs + PROBE_ROUND_MS;
  return null;
}

/** The breaker under new settings, which take effect at once: one switched off is closed, and
 * an open one's cool-down starts again from the new first cool-down (it probes that long after
 * it opened, or now if that is past). */
export function withConfig(b: Breaker, config: BreakerConfig | null, effective: BreakerConfig | null, nowMs: number): Breaker {
  const next: Breaker = { ...b, config, updatedAtMs: nowMs };
  if (effective === null || !effective.enabled) {
    return { ...next, state: 'closed', sinceMs: b.state === 'closed' ? b.sinceMs : nowMs, nextProbeAtMs: null, round: 0, cooldownMs: effective?.cooldownMs ?? b.cooldownMs };
  }
  const cooldownMs = effective.cooldownMs;
  const nextProbeAtMs = b.nextProbeAtMs === null ? null : Math.min(b.nextProbeAtMs, b.sinceMs + cooldownMs);
  return { ...next, cooldownMs, nextProbeAtMs };
}

/** A breaker as loaded, under the settings in force now, which may not be those it was written
 * under (the node's default changed): a closed one's next cool-down is the first, an open one's
 * is kept within the bounds. Memory only, until its next write. */
export function withinBounds(b: Breaker, config: BreakerConfig): Breaker {
  if (b.state === 'closed') return b.cooldownMs === config.cooldownMs ? b : { ...b, cooldownMs: config.cooldownMs };
  const cooldownMs = Math.min(config.cooldownMaxMs, Math.max(config.cooldownMs, b.cooldownMs));
  const nextProbeAtMs = b.nextProbeAtMs === null ? null : Math.min(b.nextProbeAtMs, b.sinceMs + cooldownMs);
  return { ...b, cooldownMs, nextProbeAtMs };
}

function open(b: Breaker, cooldownMs: number, attempts: number, failures: number, nowMs: number): Breaker {
  return {
    ...b,
    state: 'open',
    sinceMs: nowMs,
    nextProbeAtMs: nowMs + cooldownMs,
    cooldownMs,
    round: 0,
    openedAttempts: attempts,
    openedFailures: failures,
    updatedAtMs: nowMs,
  };
}
