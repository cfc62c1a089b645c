// The shard manager on virtual time and the in-memory store: what it does with shards an
// acquisition brings back after the ring moved away from them.

import { describe, expect, it } from 'vitest';
import type { ShardLease } from '../../node/core/store.ts';
import { MemoryStore } from '../../sim/memory-store.ts';
import { virtualNode } from '../support/virtual-node.ts';

/** A store whose acquisitions wait until the test opens the gate. */
class GatedStore extends MemoryStore {
  private openGate: (() => void) | null = null;
  private gate: Promise<void> | null = new Promise((resolve) => (this.openGate = resolve));

  openTheGate(): void {
    this.openGate?.();
    this.gate = null;
  }

  override async acquireShards(owner: string, shards: number[], leaseMs: number, deadOwners?: readonly string[]): Promise<ShardLease[]> {
    if (this.gate !== null) await this.gate;
    return super.acquireShards(owner, shards, leaseMs, deadOwners);
  }
}

describe('shard manager', () => {
  it('gives up at once the shards an acquisition brings back after the ring moved away from them', async () => {
    const t = virtualNode(4, {}, (backing) => new GatedStore(backing));
    await t.run(() => false, 100); // the first acquisition, of all four, is in flight
    t.node.shardManager.tell({ kind: 'desired', shards: [1, 2, 3] });
    t.store.openTheGate();
    // Shard 0 came back with the others; the node must not keep it (and renew it for good).
    await t.run(() => t.backing.shards[0]!.owner === null, 10_000);
    expect(t.node.routes.shards().sort()).toEqual([1, 2, 3]);
    expect(t.backing.shards[0]!.owner).toBeNull();
    await t.run(() => false, 30_000); // renewals go on: shard 0 stays given up
    expect(t.backing.shards[0]!.owner).toBeNull();
  });
});
