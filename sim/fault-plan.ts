// Swarm testing: each seed picks its own mix of faults and their rates, so that across seeds
// every fault is tried alone, with others, gently and hard. The plan is printed with the run.

import type { SeededRandom } from '../node/core/random.ts';
import type { BuggifySite } from '../node/core/test-hooks.ts';
import type { PoolSizes } from './locking-store.ts';

export const BUGGIFY_SITES: readonly BuggifySite[] = ['owner.delay_flush', 'owner.spill', 'owner.short_lease_check', 'committer.small_batches'];

export type NodePartition =
  /** One node cut off from the others, both ways. */
  | { kind: 'isolate'; node: number; atMs: number; forMs: number }
  /** The nodes split in two groups. */
  | { kind: 'split'; atMs: number; forMs: number }
  /** Messages from one node to another are lost; the other way still flows. */
  | { kind: 'one_way'; from: number; to: number; atMs: number; forMs: number }
  /** Links cut one by one, then restored in random order (swizzle-clogging). */
  | { kind: 'swizzle'; atMs: number; stepMs: number }
  /** A node isolated and restored again and again. */
  | { kind: 'flap'; node: number; atMs: number; times: number; periodMs: number };

export interface FaultPlan {
  /** Nodes form a cluster (membership by gossip, shards placed by the ring, handed off when
   * the ring changes); otherwise every node wants every shard and they contend in the store. */
  cluster: boolean;
  nodeDropRate: number;
  nodeDuplicateRate: number;
  nodeDelayMaxMs: number;
  nodePartitions: NodePartition[];
  storeErrorRate: number;
  storeUnknownRate: number;
  storeLatencyMaxMs: number;
  /** Slow store periods: [start, end) in virtual ms, latency ×20 inside. */
  storeSlow: Array<[number, number]>;
  netDelayMaxMs: number;
  /** Client connections dropped per second, across all links. */
  disconnectsPerSecond: number;
  /** [host index, at ms, down for ms (null: until healed)] */
  crashes: Array<[number, number, number | null]>;
  /** [host index, at ms, paused for ms], longer than a shard lease: zombies. */
  pauses: Array<[number, number, number]>;
  /** [host index, at ms, skew ms]: the host's wall clock jumps to this offset. */
  clockJumps: Array<[number, number, number]>;
  /** [host index, at ms, for ms]: clients cannot reach the host. */
  isolations: Array<[number, number, number]>;
  /** Backpressure bounds small enough for bursts to hit them. */
  connInflightMax: number;
  uncommittedMax: number;
  /** Per-tenant submissions per second, or null. */
  ratePerSecond: number | null;
  buggify: BuggifySite[];
  /** [host index, at ms, back after ms]: the node leaves the cluster gracefully (hands its
   * shards off, stops), then starts again: membership churn. */
  leaves: Array<[number, number, number]>;
  /** [host index, at ms, paused for ms]: from `at`, the host freezes at the next point where
   * one of its transactions is open between two statements (SIGSTOP mid-commit), holding its
   * row locks and connections; the server ends such a session after 5 s idle. */
  holderPauses: Array<[number, number, number]>;
  /** Probability that the server ends a session between two statements of a transaction
   * (57P01: a restart, pg_terminate_backend). */
  sessionTerminateRate: number;
  /** Fewer connections than the real node opens (sim/locking-store.ts REAL_POOL_SIZES), so
   * that pools run dry; null: the real sizes. */
  pools: PoolSizes | null;
  /** Owners that hold few jobs in memory (ready, delayed), so that jobs spill to the store and
   * are paged in; null: the simulator's usual bound. */
  ownerMemory: { ready: number; delayed: number } | null;
  /** How long owners wait to write a granted lease (OwnerConfig.leaseWriteDelayMs): long
   * delays let crashes, hand-offs and expiries meet leases the store never saw; null: the
   * node's default. */
  leaseWriteDelayMs: number | null;
}

export const NO_FAULTS: FaultPlan = {
  cluster: true,
  nodeDropRate: 0,
  nodeDuplicateRate: 0,
  nodeDelayMaxMs: 2,
  nodePartitions: [],
  storeErrorRate: 0,
  storeUnknownRate: 0,
  storeLatencyMaxMs: 2,
  storeSlow: [],
  netDelayMaxMs: 2,
  disconnectsPerSecond: 0,
  crashes: [],
  pauses: [],
  clockJumps: [],
  isolations: [],
  connInflightMax: 20_000,
  uncommittedMax: 20_000,
  ratePerSecond: null,
  buggify: [],
  leaves: [],
  holderPauses: [],
  sessionTerminateRate: 0,
  pools: null,
  ownerMemory: null,
  leaseWriteDelayMs: null,
};

/** A random plan for a run of `durationMs` on `hosts` hosts; `shardLeaseMs` sets how long a
 * pause must be to make a zombie. */
export function swarmPlan(random: SeededRandom, hosts: number, durationMs: number, shardLeaseMs: number): FaultPlan {
  const on = (p = 0.5) => random.next() < p;
  const at = () => Math.floor(random.next() * durationMs * 0.8);
  const host = () => random.int(hosts);
  const times = <T>(n: number, make: () => T): T[] => Array.from({ length: n }, make);
  const cluster = on();
  const partition = (): NodePartition => {
    const kinds = ['isolate', 'split', 'one_way', 'swizzle', 'flap'] as const;
    const kind = kinds[random.int(kinds.length)]!;
    const atMs = at();
    const forMs = 1_000 + random.int(8_000);
    switch (kind) {
      case 'isolate': return { kind, node: host(), atMs, forMs };
      case 'split': return { kind, atMs, forMs };
      case 'one_way': return { kind, from: host(), to: host(), atMs, forMs };
      case 'swizzle': return { kind, atMs, stepMs: 100 + random.int(400) };
      case 'flap': return { kind, node: host(), atMs, times: 2 + random.int(5), periodMs: 500 + random.int(2_000) };
    }
  };
  return {
    cluster,
    nodeDropRate: cluster && on() ? random.next() * 0.2 : 0,
    nodeDuplicateRate: cluster && on() ? random.next() * 0.1 : 0,
    nodeDelayMaxMs: cluster && on() ? 1 + random.next() * 100 : 2,
    nodePartitions: cluster && on(0.6) ? times(1 + random.int(3), partition) : [],
    storeErrorRate: on() ? random.next() * 0.03 : 0,
    storeUnknownRate: on() ? random.next() * 0.02 : 0,
    storeLatencyMaxMs: on() ? 1 + random.next() * 20 : 2,
    storeSlow: on(0.3) ? times(1 + random.int(2), () => { const start = at(); return [start, start + 500 + random.int(3_000)]; }) : [],
    netDelayMaxMs: on() ? 1 + random.next() * 40 : 2,
    disconnectsPerSecond: on() ? random.next() * 2 : 0,
    crashes: on() ? times(1 + random.int(3), () => [host(), at(), on(0.7) ? 500 + random.int(10_000) : null]) : [],
    pauses: on(0.4) ? times(1 + random.int(2), () => [host(), at(), shardLeaseMs + 1_000 + random.int(10_000)]) : [],
    clockJumps: on(0.4) ? times(1 + random.int(3), () => [host(), at(), (random.next() - 0.5) * 120_000]) : [],
    isolations: on(0.3) ? times(1 + random.int(2), () => [host(), at(), 1_000 + random.int(8_000)]) : [],
    connInflightMax: on(0.3) ? 5 + random.int(50) : 20_000,
    uncommittedMax: on(0.3) ? 5 + random.int(100) : 20_000,
    ratePerSecond: on(0.3) ? 20 + random.int(200) : null,
    buggify: BUGGIFY_SITES.filter(() => on(0.25)),
    // Drawn last, so that the faults above stay what they were for every seed.
    leaves: cluster && on(0.4) ? times(1 + random.int(2), () => [host(), at(), 1_000 + random.int(8_000)]) : [],
    // Some shorter than the server's idle-in-transaction timeout (5 s), some longer.
    holderPauses: on(0.3) ? times(1 + random.int(3), () => [host(), at(), 500 + random.int(8_000)]) : [],
    sessionTerminateRate: on(0.25) ? random.next() * 0.02 : 0,
    // The lease pool keeps its real two connections: renewal must cope with that.
    pools: on(0.25) ? { writes: 2 + random.int(5), leases: 2, reads: 1 + random.int(3) } : null,
    ownerMemory: on(0.2) ? { ready: 4 + random.int(12), delayed: 2 + random.int(6) } : null,
    leaseWriteDelayMs: on(0.3) ? random.int(4_000) : null,
  };
}

/** One line per fault that is on, for the run's report. */
export function describePlan(plan: FaultPlan): string {
  const parts: string[] = [plan.cluster ? 'cluster' : 'contention'];
  if (plan.nodeDropRate > 0) parts.push(`node-drops=${plan.nodeDropRate.toFixed(3)}`);
  if (plan.nodeDuplicateRate > 0) parts.push(`node-dups=${plan.nodeDuplicateRate.toFixed(3)}`);
  if (plan.nodeDelayMaxMs > 2) parts.push(`node-delay≤${plan.nodeDelayMaxMs.toFixed(0)}ms`);
  if (plan.nodePartitions.length > 0) parts.push(`partitions=${plan.nodePartitions.map((p) => p.kind).join('+')}`);
  if (plan.storeErrorRate > 0) parts.push(`store-errors=${plan.storeErrorRate.toFixed(3)}`);
  if (plan.storeUnknownRate > 0) parts.push(`commit-unknown=${plan.storeUnknownRate.toFixed(3)}`);
  parts.push(`store-latency≤${plan.storeLatencyMaxMs.toFixed(1)}ms`);
  if (plan.storeSlow.length > 0) parts.push(`slow-store×${plan.storeSlow.length}`);
  parts.push(`net-delay≤${plan.netDelayMaxMs.toFixed(1)}ms`);
  if (plan.disconnectsPerSecond > 0) parts.push(`disconnects=${plan.disconnectsPerSecond.toFixed(2)}/s`);
  if (plan.crashes.length > 0) parts.push(`crashes×${plan.crashes.length}`);
  if (plan.pauses.length > 0) parts.push(`zombie-pauses×${plan.pauses.length}`);
  if (plan.clockJumps.length > 0) parts.push(`clock-jumps×${plan.clockJumps.length}`);
  if (plan.isolations.length > 0) parts.push(`isolations×${plan.isolations.length}`);
  if (plan.connInflightMax < 20_000) parts.push(`conn-inflight≤${plan.connInflightMax}`);
  if (plan.uncommittedMax < 20_000) parts.push(`uncommitted≤${plan.uncommittedMax}`);
  if (plan.ratePerSecond !== null) parts.push(`rate=${plan.ratePerSecond}/s`);
  if (plan.leaves.length > 0) parts.push(`leaves×${plan.leaves.length}`);
  if (plan.holderPauses.length > 0) parts.push(`holder-pauses×${plan.holderPauses.length}`);
  if (plan.sessionTerminateRate > 0) parts.push(`session-kills=${plan.sessionTerminateRate.toFixed(3)}`);
  if (plan.pools !== null) parts.push(`pools=${plan.pools.writes}/${plan.pools.leases}/${plan.pools.reads}`);
  if (plan.ownerMemory !== null) parts.push(`owner-memory=${plan.ownerMemory.ready}+${plan.ownerMemory.delayed}`);
  if (plan.leaseWriteDelayMs !== null) parts.push(`lease-write-delay=${plan.leaseWriteDelayMs}ms`);
  if (plan.buggify.length > 0) parts.push(`buggify=${plan.buggify.join('+')}`);
  return parts.join(' ');
}
