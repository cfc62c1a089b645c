// The simulated environment: the same interfaces as node/adapters/system-env.ts, bound to the
// simulator's event queue (virtual time), a seeded random stream and an in-memory store.

import type { Env, Logger, Network } from '../node/core/env.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Store } from '../node/core/store.ts';
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
  };
}

/** Lets every settled promise run its callbacks: the simulated store answers through promises
 * (the Store contract is asynchronous), and their callbacks enqueue actor messages. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

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
