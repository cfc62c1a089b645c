// What the SDK needs from its surroundings besides a link: time, timers, randomness and fresh
// idempotency keys. The shapes match node/core/env.ts (Clock, Timers, Random), so the
// deterministic simulator can hand the client its own virtual ones and replay a seed; the
// system runtime uses only what browsers also have.

import { setLongTimeout, type LongTimeout } from '../long-timeout.ts';
import { uuidV7 } from './uuid-v7.ts';

export interface SdkRuntime {
  clock: { monotonicMs(): number };
  timers: {
    setTimer(delayMs: number, fire: () => void): unknown;
    cancelTimer(id: unknown): void;
  };
  /** Uniform in [0, 1); only for jitter. */
  random: { next(): number };
  /** A fresh idempotency key, unique among all: the system runtime's start with the time. */
  uuid(): string;
  /** Runs `fn` after the current turn; used to coalesce frames (credit) sent in one turn. */
  defer(fn: () => void): void;
}

export const systemRuntime: SdkRuntime = {
  clock: { monotonicMs: () => performance.now() },
  timers: {
    // Any length: a caller may set a request timeout or a deadline past setTimeout's 24.9 days.
    setTimer: (delayMs, fire) => setLongTimeout(delayMs, fire),
    cancelTimer: (id) => (id as LongTimeout).cancel(),
  },
  random: { next: () => Math.random() },
  uuid: () => uuidV7(),
  defer: (fn) => queueMicrotask(fn),
};
