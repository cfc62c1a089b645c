// The simulated environment: the same interfaces as node/adapters/system-env.ts, bound to the
// simulator's event queue (virtual time), a seeded random stream and an in-memory store.

import type { Env, Logger, Network } from '../node/core/env.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Store } from '../node/core/store.ts';
import { NO_METRICS } from '../node/core/metrics.ts';
import { cronCalendar } from '../node/adapters/calendar.ts';
import type { EventQueue } from './event-queue.ts';

export interface SimEnvOptions {
  nodeId: string;
  queue: EventQueue;
  random: SeededRandom;
  store: Store;
  /** Offset of this node's wall clock from virtual time (clock skew). */
  wallSkewMs?: () => number;
  logger?: Logger;
  network?: Network;
}

export const silentLogger: Logger = { log() {} };

/** The production calendar: croner is pure given its inputs, so the simulator uses it too. */
export const simCalendar = cronCalendar();

const nowhere: Network = {
  send() {},
  publish() {},
};

export function simEnv(options: SimEnvOptions): Env {
  const { queue } = options;
  const skew = options.wallSkewMs ?? (() => 0);
  return {
    nodeId: options.nodeId,
    clock: {
      monotonicMs: () => Math.floor(queue.nowMs),
      wallMs: () => Math.floor(queue.nowMs + skew()),
    },
    timers: queue.timers(),
    random: options.random,
    logger: options.logger ?? silentLogger,
    store: options.store,
    network: options.network ?? nowhere,
    calendar: simCalendar,
    metrics: NO_METRICS,
  };
}

/** Lets settled promises run their callbacks: the simulated store answers through promises
 * (the Store contract is asynchronous), and their callbacks enqueue actor messages. Awaiting a
 * few resolved promises drains the short chains an event starts (store call, its answer,
 * the actor's pipe) without a trip through the event loop, which cost more than the event. A
 * longer chain simply finishes at a later settle: still in the same order on every run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < SETTLE_TURNS; i++) await null;
}

const SETTLE_TURNS = 4;

/** Runs events until `done()` holds, `abort()` holds, or virtual time passes `untilMs`;
 * returns whether done. Promise callbacks (the store's answers) settle between events, in
 * order, so a seed replays exactly. */
export async function runUntil(queue: EventQueue, done: () => boolean, untilMs: number, abort: () => boolean = () => false): Promise<boolean> {
  for (;;) {
    await settle();
    if (abort()) return false;
    if (done()) return true;
    const next = queue.peekMs();
    if (next === null || next > untilMs) {
      await settle();
      if (queue.peekMs() !== next) continue;
      queue.advanceTo(untilMs);
      return done();
    }
    queue.step();
  }
}
