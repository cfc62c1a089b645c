// The production timers hold any delay a job may have: Node's setTimeout clamps a delay past
// 2^31-1 ms to 1 ms, so systemTimers must wait out a longer one in steps and fire once, at
// the end, and cancelTimer must stop it whichever step it is on.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemTimers } from '../../node/adapters/system-env.ts';
import { DELAY_MS_MAX } from '../../protocol/limits.ts';

/** Node's own limit, stated here rather than imported so the test checks the code against it. */
const TIMEOUT_MS_MAX = 2 ** 31 - 1;
const LONG_MS = 2 ** 31 + 1000;

describe('systemTimers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('does not fire a timer past the setTimeout maximum early, in real time', async () => {
    const timers = systemTimers();
    let fired = false;
    const id = timers.setTimer(LONG_MS, () => {
      fired = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    timers.cancelTimer(id);
    expect(fired).toBe(false);
  });

  it.each([
    ['just past the maximum', LONG_MS],
    ['several steps', 3 * TIMEOUT_MS_MAX + 5],
    ['the longest submit delay', DELAY_MS_MAX],
  ])('fires once, exactly at its delay: %s', (_name, delayMs) => {
    vi.useFakeTimers();
    const timers = systemTimers();
    let fired = 0;
    timers.setTimer(delayMs, () => fired++);
    vi.advanceTimersByTime(delayMs - 1);
    expect(fired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(1);
    vi.advanceTimersByTime(4 * TIMEOUT_MS_MAX);
    expect(fired).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('still fires a short timer at its delay', () => {
    vi.useFakeTimers();
    const timers = systemTimers();
    let fired = 0;
    timers.setTimer(250, () => fired++);
    vi.advanceTimersByTime(249);
    expect(fired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(1);
  });

  it.each([0, 1, 2])('cancels a long timer during step %i', (step) => {
    vi.useFakeTimers();
    const timers = systemTimers();
    let fired = 0;
    const delayMs = 2 * TIMEOUT_MS_MAX + 1000;
    const id = timers.setTimer(delayMs, () => fired++);
    vi.advanceTimersByTime(step * TIMEOUT_MS_MAX + 500);
    timers.cancelTimer(id);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(delayMs);
    expect(fired).toBe(0);
  });
});
