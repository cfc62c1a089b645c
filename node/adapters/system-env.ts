// Production bindings of the environment boundary: the system clocks, Node's timers, an
// OS-seeded PRNG and a JSON-lines logger. The simulator provides the same interfaces in sim/.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Clock, Env, Logger, LogLevel, Network, Timers, TimerId } from '../core/env.ts';
import { SeededRandom } from '../core/random.ts';
import type { Store } from '../core/store.ts';

export const systemClock: Clock = {
  monotonicMs: () => Math.floor(performance.now()),
  wallMs: () => Date.now(),
};

/** The longest delay setTimeout holds. Node clamps a longer one to 1 ms (with a
 * TimeoutOverflowWarning), and a job may be due up to 100 years ahead (DELAY_MS_MAX): a shard
 * owner whose next job was 25 days away re-armed its wake every millisecond. */
const TIMEOUT_MS_MAX = 2 ** 31 - 1;

export function systemTimers(): Timers {
  /** The step each timer is waiting on now, so cancelTimer cancels whichever one it is. */
  const handles = new Map<TimerId, NodeJS.Timeout>();
  let nextId = 1;
  // A delay past TIMEOUT_MS_MAX is waited out in steps of at most that; only the last fires.
  const wait = (id: TimerId, delayMs: number, fire: () => void): void => {
    const stepMs = Math.min(delayMs, TIMEOUT_MS_MAX);
    const handle = setTimeout(() => {
      if (stepMs < delayMs) return wait(id, delayMs - stepMs, fire);
      handles.delete(id);
      fire();
    }, stepMs);
    handles.set(id, handle);
  };
  return {
    setTimer(delayMs, fire) {
      const id = nextId++;
      wait(id, delayMs, fire);
      return id;
    },
    cancelTimer(id) {
      const handle = handles.get(id);
      if (handle === undefined) return;
      clearTimeout(handle);
      handles.delete(id);
    },
    defer: (fn) => void setImmediate(fn),
  };
}

export function osSeededRandom(): SeededRandom {
  return new SeededRandom(randomBytes(4).readUInt32LE(0));
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** One JSON object per line on stderr, so logs are greppable and machine-readable, and stdout
 * stays free for a command's own output. */
export function jsonLogger(minLevel: LogLevel, fields: Record<string, unknown> = {}): Logger {
  const min = LEVEL_RANK[minLevel];
  return {
    log(level, event, extra) {
      if (LEVEL_RANK[level] < min) return;
      process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields, ...extra })}\n`);
    },
  };
}

/** `network` is the cluster transport (libp2p-network.ts): every node runs on it, alone or not. */
export function systemEnv(nodeId: string, store: Store, logger: Logger, network: Network): Env {
  return {
    nodeId,
    clock: systemClock,
    timers: systemTimers(),
    random: osSeededRandom(),
    logger,
    store,
    network,
  };
}
