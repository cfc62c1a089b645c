// The simulator's in-memory store runs the same conformance suite as PostgreSQL, so the
// simulator cannot drift from the store it stands in for.

import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { describeStoreConformance } from './store-conformance.ts';

describeStoreConformance('in-memory (simulator)', async (shardCount) => {
  const backing = new MemoryBacking(shardCount, () => Date.now());
  // As the PostgreSQL suite's (pg-store.test.ts).
  backing.schedulesPerTenantMax = 20;
  backing.breakersPerTenantMax = 20;
  return {
    open: async () => new MemoryStore(backing),
    schedulesPerTenantMax: backing.schedulesPerTenantMax,
    breakersPerTenantMax: backing.breakersPerTenantMax,
    lapseLeases: async (shards) => {
      for (const shard of shards) {
        const row = backing.shards[shard]!;
        if (row.leaseUntilMs !== null) row.leaseUntilMs = Date.now() - 1_000;
      }
    },
    dispose: async () => {},
  };
});
