// The simulated store as a node sees it: the in-memory store behind a link with latency and
// injected faults. Each operation is applied at one virtual instant (so it is atomic, as a
// Postgres transaction is) after a sampled delay, and its answer comes back after another.
// Faults, each at the rate the seed's fault plan chose:
// - error: the operation fails before it is applied (connection refused, timeout);
// - commit-unknown: the operation is applied, then the answer is lost: the caller sees an
//   error and cannot tell whether it happened, the hardest case for a write path;
// - slow periods: latency multiplied for a while.

import type { SeededRandom } from '../node/core/random.ts';
import { StoreUnavailableError, type Store } from '../node/core/store.ts';
import type { EventQueue } from './event-queue.ts';
import type { MemoryStore } from './memory-store.ts';

export interface StoreFaults {
  /** Probability an operation fails before it is applied. */
  errorRate: number;
  /** Probability a write (commit, acquire, renew, release) is applied but its answer lost. */
  unknownRate: number;
  latencyMinMs: number;
  latencyMaxMs: number;
  /** Latency multiplier while the store is in a slow period (1 when not). */
  slowFactor: () => number;
}

export const NO_STORE_FAULTS: StoreFaults = { errorRate: 0, unknownRate: 0, latencyMinMs: 1, latencyMaxMs: 3, slowFactor: () => 1 };

const WRITES = new Set(['acquireShards', 'renewShards', 'releaseShards', 'commit']);

export function faultyStore(inner: MemoryStore, queue: EventQueue, random: SeededRandom, faults: () => StoreFaults, onApplied?: (op: string) => void): Store {
  const delay = (f: StoreFaults) => (f.latencyMinMs + random.next() * (f.latencyMaxMs - f.latencyMinMs)) * f.slowFactor();

  function call<T>(op: string, apply: () => Promise<T>): Promise<T> {
    const f = faults();
    return new Promise<T>((resolve, reject) => {
      queue.schedule(delay(f), () => {
        if (random.next() < f.errorRate) {
          reject(new StoreUnavailableError(`simulated: ${op} failed before it was applied`));
          return;
        }
        const lost = WRITES.has(op) && random.next() < f.unknownRate;
        apply().then(
          (value) => {
            onApplied?.(op);
            queue.schedule(delay(f), () => (lost ? reject(new StoreUnavailableError(`simulated: ${op} applied, answer lost`)) : resolve(value)));
          },
          (error: unknown) => queue.schedule(delay(f), () => reject(error)),
        );
      });
    });
  }

  return {
    acquireShards: (owner, shards, leaseMs, deadOwners) => call('acquireShards', () => inner.acquireShards(owner, shards, leaseMs, deadOwners)),
    renewShards: (owner, leases, leaseMs) => call('renewShards', () => inner.renewShards(owner, leases, leaseMs)),
    releaseShards: (owner, leases) => call('releaseShards', () => inner.releaseShards(owner, leases)),
    listShards: () => call('listShards', () => inner.listShards()),
    commit: (batch) => call('commit', () => inner.commit(batch)),
    loadShardJobs: (shard, state, after, limit) => call('loadShardJobs', () => inner.loadShardJobs(shard, state, after, limit)),
    getJob: (id) => call('getJob', () => inner.getJob(id)),
    findByIdempotencyKey: (tenant, key) => call('findByIdempotencyKey', () => inner.findByIdempotencyKey(tenant, key)),
    listJobs: (tenant, filter) => call('listJobs', () => inner.listJobs(tenant, filter)),
    retention: (nowMs, options) => call('retention', () => inner.retention(nowMs, options)),
    close: () => inner.close(),
  };
}
