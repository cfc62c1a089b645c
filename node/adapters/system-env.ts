// Production bindings of the environment boundary: the system clocks, Node's timers, an
// OS-seeded PRNG and a JSON-lines logger. The simulator provides the same interfaces in sim/.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Clock, Env, Logger, LogLevel, Network, Timers, TimerId } from '../core/env.ts';
import { setLongTimeout, type LongTimeout } from '../../protocol/long-timeout.ts';
import { SeededRandom } from '../core/random.ts';
import type { Store } from '../core/store.ts';
import { cronCalendar } from './calendar.ts';
import { NO_METRICS, type Metrics } from '../core/metrics.ts';

export const systemClock: Clock = {
  monotonicMs: () => Math.floor(performance.now()),
  wallMs: () => Date.now(),
};

/** Timers of any length (a job may be due a century ahead: protocol/long-timeout.ts). */
export function systemTimers(): Timers {
  const handles = new Map<TimerId, LongTimeout>();
  let nextId = 1;
  return {
    setTimer(delayMs, fire) {
      const id = nextId++;
      handles.set(id, setLongTimeout(delayMs, () => {
        handles.delete(id);
        fire();
      }));
      return id;
    },
    cancelTimer(id) {
      handles.get(id)?.cancel();
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
export function systemEnv(nodeId: string, store: Store, logger: Logger, network: Network, metrics: Metrics = NO_METRICS): Env {
  return {
    nodeId,
    clock: systemClock,
    timers: systemTimers(),
    random: osSeededRandom(),
    logger,
    store,
    network,
    calendar: cronCalendar(),
    metrics,
  };
}
