// Shard ownership: acquisition races, epochs, renewal and release.

import { describe, expect, it } from 'vitest';
import { LEASE_MS, own, shuffled, type SuiteContext } from './suite-context.ts';

export function shardCases(ctx: SuiteContext): void {
  describe('shards', () => {
    it('two nodes race for a free shard and exactly one wins, at epoch 1', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [wonA, wonB] = await Promise.all([a.acquireShards('node-a', [0], LEASE_MS), b.acquireShards('node-b', [0], LEASE_MS)]);
      expect(wonA.length + wonB.length).toBe(1);
      const winner = wonA.length === 1 ? 'node-a' : 'node-b';
      expect([...wonA, ...wonB]).toEqual([{ shard: 0, epoch: 1 }]);
      const row = (await a.listShards()).find((s) => s.shard === 0)!;
      expect(row.owner).toBe(winner);
      expect(row.epoch).toBe(1);
      expect(row.leaseUntilMs).not.toBeNull();
    });

    it('repeated concurrent races over every shard leave exactly one owner per shard and round', async () => {
      const nodes = await Promise.all(['n0', 'n1', 'n2'].map(async (name) => ({ name, store: await ctx.open() })));
      const shards = Array.from({ length: ctx.shardCount }, (_, i) => i);
      for (let round = 1; round <= 12; round++) {
        // Each node asks for every shard, in its own order: overlapping sets in different
        // orders are what could deadlock a careless implementation.
        const results = await Promise.all(
          nodes.map(({ name, store }, i) => store.acquireShards(name, shuffled(shards, round * 7 + i), LEASE_MS)),
        );
        const won = results.flat();
        expect(won.map((l) => l.shard).sort((x, y) => x - y)).toEqual(shards);
        for (const lease of won) expect(lease.epoch).toBe(round);
        const rows = await nodes[0]!.store.listShards();
        results.forEach((leases, i) => {
          for (const lease of leases) expect(rows.find((r) => r.shard === lease.shard)!.owner).toBe(nodes[i]!.name);
        });
        await ctx.lapseLeases(shards);
      }
    });

    it('a held shard is refused to others until its lease lapses; every acquisition bumps the epoch', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      expect(await a.acquireShards('node-a', [1], LEASE_MS)).toEqual([{ shard: 1, epoch: 1 }]);
      expect(await b.acquireShards('node-b', [1], LEASE_MS)).toEqual([]);
      // Re-acquiring one's own shard is an acquisition too: a new epoch fences the old one.
      expect(await a.acquireShards('node-a', [1], LEASE_MS)).toEqual([{ shard: 1, epoch: 2 }]);
      await ctx.lapseLeases([1]);
      expect(await b.acquireShards('node-b', [1, 2], LEASE_MS)).toEqual([
        { shard: 1, epoch: 3 },
        { shard: 2, epoch: 1 },
      ]);
      const rows = await a.listShards();
      expect(rows).toHaveLength(ctx.shardCount);
      expect(rows.find((r) => r.shard === 1)).toMatchObject({ owner: 'node-b', epoch: 3 });
    });

    it('a shard whose owner the caller declares dead is taken at once, and fences the old owner out', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [leaseA] = await own(a, 'node-a', [5]);
      // A live lease of a node not declared dead (or of another dead node) still holds.
      expect(await b.acquireShards('node-b', [5], LEASE_MS)).toEqual([]);
      expect(await b.acquireShards('node-b', [5], LEASE_MS, ['node-x'])).toEqual([]);
      expect(await b.acquireShards('node-b', [5, 6], LEASE_MS, ['node-x', 'node-a'])).toEqual([
        { shard: 5, epoch: 2 },
        { shard: 6, epoch: 1 },
      ]);
      expect((await a.listShards()).find((r) => r.shard === 5)).toMatchObject({ owner: 'node-b', epoch: 2 });
      // The old owner, only paused after all, can neither renew nor write.
      expect(await a.renewShards('node-a', [leaseA!], LEASE_MS)).toEqual([]);
      expect(await a.commit({ shards: [leaseA!], writes: [] })).toEqual({ status: 'stale_epoch', staleShards: [5] });
      // Declaring oneself dead changes nothing: one's own shard is re-acquired anyway.
      expect(await b.acquireShards('node-b', [5], LEASE_MS, ['node-b'])).toEqual([{ shard: 5, epoch: 3 }]);
    });

    it('renewal succeeds only for the owner at the current epoch, and extends the lease', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await own(a, 'node-a', [2, 3]);
      const before = (await a.listShards()).find((r) => r.shard === 2)!.leaseUntilMs!;
      expect(await a.renewShards('node-a', [{ shard: 2, epoch: 1 }, { shard: 3, epoch: 1 }], LEASE_MS * 10)).toEqual([2, 3]);
      const after = (await a.listShards()).find((r) => r.shard === 2)!.leaseUntilMs!;
      expect(after).toBeGreaterThan(before);

      expect(await a.renewShards('node-a', [{ shard: 2, epoch: 0 }], LEASE_MS)).toEqual([]);
      expect(await a.renewShards('node-a', [{ shard: 2, epoch: 2 }], LEASE_MS)).toEqual([]);
      expect(await b.renewShards('node-b', [{ shard: 2, epoch: 1 }], LEASE_MS)).toEqual([]);

      await ctx.lapseLeases([3]);
      await own(b, 'node-b', [3]);
      // Shard 3 moved on to epoch 2: node-a keeps only shard 2.
      expect(await a.renewShards('node-a', [{ shard: 2, epoch: 1 }, { shard: 3, epoch: 1 }], LEASE_MS)).toEqual([2]);
    });

    it('release clears owner and lease, keeps the epoch, and only the holder can release', async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await own(a, 'node-a', [4]);
      await b.releaseShards('node-b', [{ shard: 4, epoch: 1 }]);
      await a.releaseShards('node-a', [{ shard: 4, epoch: 0 }]);
      expect((await a.listShards()).find((r) => r.shard === 4)).toMatchObject({ owner: 'node-a', epoch: 1 });

      await a.releaseShards('node-a', [{ shard: 4, epoch: 1 }]);
      expect((await a.listShards()).find((r) => r.shard === 4)).toEqual({ shard: 4, owner: null, epoch: 1, leaseUntilMs: null });
      // Free now: no need to wait for a lease to lapse.
      expect(await b.acquireShards('node-b', [4], LEASE_MS)).toEqual([{ shard: 4, epoch: 2 }]);
    });
  });
}
