// The environment boundary. Actor code reaches the world only through these interfaces: the
// production bindings live in node/adapters/, the simulated ones in sim/. Nothing in
// node/core/ may touch the system clock, randomness, timers or I/O any other way; the
// determinism guard (test/unit/determinism-guard.test.ts) enforces it.

import type { Calendar } from './schedule/schedule.ts';
import type { Metrics } from './metrics.ts';
import type { Store } from './store.ts';
import type { TestHooks } from './test-hooks.ts';

/** Time as actors see it. Both readings are integers of milliseconds. */
export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin: use for timeouts and lease deadlines. */
  monotonicMs(): number;
  /** Wall-clock milliseconds since the Unix epoch: use only for timestamps users read and for
   * run_at / scheduled_at. May jump (and does, in the simulator). Safety never depends on it. */
  wallMs(): number;
}

export type TimerId = number;

/** One-shot timers. The callback runs later on the event loop (production) or at a virtual
 * instant (simulator); actor code uses them only through the actor runtime, which turns a
 * firing timer into a message in the actor's mailbox. */
export interface Timers {
  setTimer(delayMs: number, fire: () => void): TimerId;
  cancelTimer(id: TimerId): void;
  /** Run `fn` as soon as possible after the current turn, after pending I/O has had its
   * chance (production: setImmediate). The actor runtime schedules mailbox drains with it. */
  defer(fn: () => void): void;
}

/** A random source. Production: a seeded xoshiro stream from a random seed; simulator: a
 * stream derived from the run's seed for each subsystem. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

/** Delivery of point-to-point and gossip messages between nodes (libp2p in production:
 * node/adapters/libp2p/; the simulator's network in sim/). Messages are protocol values; the
 * binding encodes them. */
export interface Network {
  send(toNode: string, message: unknown): void;
  publish(topic: string, message: unknown): void;
}

/** Everything an actor may use. `nodeId` names the process that hosts the actors. */
export interface Env {
  readonly nodeId: string;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: Store;
  readonly network: Network;
  readonly calendar: Calendar;
  /** What the node counts about itself (metrics.ts). */
  readonly metrics: Metrics;
  /** Simulator only: fault sites and planted bugs. Always undefined in production. */
  readonly testHooks?: TestHooks;
}
