// The Store contract as one executable suite, written once and run against every
// implementation: the PostgreSQL store (pg-store.test.ts) and the simulator's in-memory store.
// Each test gets a fresh world (fresh backing data) and may open several clients on it: two
// clients are two nodes, racing for shards and keys exactly as real nodes would.

import { afterEach, beforeEach, describe } from 'vitest';
import { BREAKERS_PER_TENANT_MAX } from '../../node/core/breaker/breaker.ts';
import { SCHEDULES_PER_TENANT_MAX } from '../../node/core/schedule/schedule.ts';
import type { Store } from '../../node/core/store.ts';
import { breakerCases } from './cases/breaker-cases.ts';
import { commitCases } from './cases/commit-cases.ts';
import { idempotencyCases } from './cases/idempotency-cases.ts';
import { readCases } from './cases/read-cases.ts';
import { retentionCases } from './cases/retention-cases.ts';
import { scheduleCases } from './cases/schedule-cases.ts';
import { shardCases } from './cases/shard-cases.ts';
import type { SuiteContext } from './cases/suite-context.ts';

/** Fresh backing data for one test. */
export interface StoreWorld {
  /** A new client on this world's data; the suite closes it. */
  open(): Promise<Store>;
  /** Makes the current leases of these shards lapse by the store's clock, as if their owners
   * had gone silent: the suite cannot wait out real leases, and a simulated store's clock is
   * not the test's to advance any other way. */
  lapseLeases(shards: number[]): Promise<void>;
  /** Optional backend-specific invariants, checked after every test (e.g. every idempotency
   * row names an existing job). */
  checkInvariants?(): Promise<void>;
  /** The schedules a tenant may have in this world's stores, when it opened them with fewer
   * than SCHEDULES_PER_TENANT_MAX (PgStoreOptions.schedulesPerTenantMax,
   * MemoryBacking.schedulesPerTenantMax): creating a thousand takes seconds on PostgreSQL. At
   * least 20: other cases give one tenant up to 14 schedules. */
  schedulesPerTenantMax?: number;
  /** Likewise for breakers (BREAKERS_PER_TENANT_MAX, PgStoreOptions.breakersPerTenantMax,
   * MemoryBacking.breakersPerTenantMax). At least 20: other cases give one tenant up to 15
   * breakers. */
  breakersPerTenantMax?: number;
  dispose(): Promise<void>;
}

export type StoreWorldFactory = (shardCount: number) => Promise<StoreWorld>;

export const CONFORMANCE_SHARD_COUNT = 8;
/** Jobs of the suite are scheduled on this day (odd milliseconds on purpose), except in the
 * retention cases, which use days of March 2020. A world may prepare partitions for it. */
export const CONFORMANCE_BASE_MS = Date.UTC(2026, 0, 15, 9, 30, 0, 123);

export function describeStoreConformance(name: string, createWorld: StoreWorldFactory): void {
  describe(`Store conformance: ${name}`, () => {
    let world: StoreWorld | null = null;
    const clients: Store[] = [];

    beforeEach(async () => {
      world = await createWorld(CONFORMANCE_SHARD_COUNT);
    });
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((client) => client.close()));
      if (world === null) return;
      try {
        await world.checkInvariants?.();
      } finally {
        await world.dispose();
        world = null;
      }
    });

    const context: SuiteContext = {
      shardCount: CONFORMANCE_SHARD_COUNT,
      baseMs: CONFORMANCE_BASE_MS,
      open: async () => {
        const client = await world!.open();
        clients.push(client);
        return client;
      },
      lapseLeases: (shards) => world!.lapseLeases(shards),
    };
    shardCases(context);
    commitCases(context);
    idempotencyCases(context);
    readCases(context);
    retentionCases(context);
    scheduleCases(context, () => world!.schedulesPerTenantMax ?? SCHEDULES_PER_TENANT_MAX);
    breakerCases(context, () => world!.breakersPerTenantMax ?? BREAKERS_PER_TENANT_MAX);
  });
}
