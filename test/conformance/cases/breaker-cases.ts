// Circuit breakers: the fenced, versioned write, the per-tenant limit, the owner's load and
// clients' reads.

import { describe, expect, it } from 'vitest';
import { BREAKER_DEFAULTS } from '../../../protocol/breaker-view.ts';
import { type Breaker, type BreakerWrite, type BreakerWriteOutcome } from '../../../node/core/breaker/breaker.ts';
import { StoreUnavailableError, type ShardLease, type Store } from '../../../node/core/store.ts';
import { encodeListCursor, encodeScheduleCursor } from '../../../node/store/list-cursor.ts';
import { allPages, eightAtOnce, own, shuffled, sortedBy, type SuiteContext } from './suite-context.ts';

let seq = 0;

/** `perTenantMax`: the limit of the current test's stores (StoreWorld.breakersPerTenantMax). */
export function breakerCases(ctx: SuiteContext, perTenantMax: () => number): void {
  const allShards = Array.from({ length: ctx.shardCount }, (_, i) => i);
  /** A breaker as an owner first writes it; queues are unique within the process unless given. */
  const breaker = (shard: number, extra: Partial<Breaker> = {}): Breaker => ({
    tenant: 'tenant-a',
    queue: `queue-${seq++}`,
    shard,
    config: null,
    state: 'closed',
    sinceMs: ctx.baseMs,
    nextProbeAtMs: null,
    cooldownMs: BREAKER_DEFAULTS.cooldownMs,
    round: 0,
    openedAttempts: 0,
    openedFailures: 0,
    version: 0,
    updatedAtMs: ctx.baseMs,
    ...extra,
  });
  const create = (b: Breaker): BreakerWrite => ({ breaker: b, expectedVersion: null });
  const replace = (b: Breaker, expectedVersion: number): BreakerWrite => ({ breaker: b, expectedVersion });
  /** What the store holds after a write of `b` that left it at `version`. */
  const at = (b: Breaker, version: number): Breaker => ({ ...b, version });
  /** Open since `sinceMs`, after a window of `attempts` with `failures`. */
  const opened = (b: Breaker, sinceMs: number, attempts: number, failures: number): Breaker => ({
    ...b,
    state: 'open',
    sinceMs,
    nextProbeAtMs: sinceMs + b.cooldownMs,
    openedAttempts: attempts,
    openedFailures: failures,
    updatedAtMs: sinceMs,
  });

  describe('breakers', () => {
    it('every field of a breaker survives the round trip; the store sets the version', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [3]);
      const own3 = breaker(3, {
        tenant: 'tenant-ü',
        queue: 'emails/ü 1',
        // Every setting off its default, most at a bound.
        config: {
          enabled: false,
          failureRatePct: 37,
          minAttempts: 1_000_000,
          windowMs: 3_600_000,
          cooldownMs: 250,
          cooldownMaxMs: 86_400_000,
          probes: 100,
          refuseWhenOpen: true,
        },
        state: 'open',
        sinceMs: ctx.baseMs - 1,
        nextProbeAtMs: ctx.baseMs + 3_000_000_001,
        // Past 2^31 ms: whatever a cool-down grows to, it is stored as sent.
        cooldownMs: 3_000_000_002,
        round: 7,
        openedAttempts: 2_000_000_000,
        openedFailures: 1_999_999_999,
        version: 42,
        updatedAtMs: ctx.baseMs + 7,
      });
      // A row kept only for the state a default breaker reached: no settings of its own.
      const byDefault = breaker(3, { state: 'half_open', sinceMs: ctx.baseMs + 1, round: 1, openedAttempts: 20, openedFailures: 20 });
      const closed = breaker(3, { config: { ...BREAKER_DEFAULTS }, cooldownMs: 1 });
      for (const b of [own3, byDefault, closed]) expect(await a.writeBreaker(lease!, create(b))).toBe('ok');

      expect(await a.getBreaker(own3.tenant, own3.queue)).toEqual(at(own3, 1));
      expect(await a.getBreaker(byDefault.tenant, byDefault.queue)).toEqual(at(byDefault, 1));
      expect(await a.getBreaker(closed.tenant, closed.queue)).toEqual(at(closed, 1));
      expect(await a.listBreakers(own3.tenant, 10, null)).toEqual({ items: [at(own3, 1)], next: null });
      expect(byKey(await a.loadShardBreakers(3))).toEqual(byKey([own3, byDefault, closed].map((b) => at(b, 1))));
      // Queues are per tenant: the same queue in another tenant is another breaker.
      expect(await a.getBreaker('tenant-a', own3.queue)).toBeNull();
      expect(await a.getBreaker(own3.tenant, 'emails')).toBeNull();
    });

    it('a read returns a copy, and a write stores one: changing them changes nothing stored', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [6]);
      const b = breaker(6, { config: { ...BREAKER_DEFAULTS } });
      expect(await a.writeBreaker(lease!, create(b))).toBe('ok');
      const read = (await a.getBreaker(b.tenant, b.queue))!;
      read.config!.probes = 99;
      read.state = 'open';
      b.config!.minAttempts = 1;
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at({ ...b, config: { ...BREAKER_DEFAULTS } }, 1));
    });

    it('creating a queue the tenant has a breaker for is a conflict and changes nothing; another tenant may', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [1]);
      const first = breaker(1, { queue: 'payments' });
      expect(await a.writeBreaker(lease!, create(first))).toBe('ok');
      expect(await a.writeBreaker(lease!, create(opened(first, ctx.baseMs + 1, 40, 30)))).toBe('conflict');
      expect(await a.getBreaker(first.tenant, 'payments')).toEqual(at(first, 1));

      const theirs = breaker(1, { tenant: 'tenant-b', queue: 'payments' });
      expect(await a.writeBreaker(lease!, create(theirs))).toBe('ok');
      expect(await a.getBreaker('tenant-b', 'payments')).toEqual(at(theirs, 1));
    });

    it('a replace applies only at the stored version, and bumps it by one', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [2]);
      const b = breaker(2);
      expect(await a.writeBreaker(lease!, create(b))).toBe('ok');

      // Settings of its own, and open.
      const v2 = opened({ ...b, config: { ...BREAKER_DEFAULTS, refuseWhenOpen: true }, version: 1 }, ctx.baseMs + 1, 25, 20);
      expect(await a.writeBreaker(lease!, replace(v2, 1))).toBe('ok');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(v2, 2));

      // A write based on a stale read, or on a version the breaker never had, is refused.
      const stale = { ...b, state: 'half_open' } satisfies Breaker;
      expect(await a.writeBreaker(lease!, replace(stale, 1))).toBe('conflict');
      expect(await a.writeBreaker(lease!, replace(stale, 3))).toBe('conflict');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(v2, 2));

      // Settings cleared (the node's default applies again), half-open; whatever version the
      // record says, the store sets expected + 1.
      const v3 = { ...v2, config: null, state: 'half_open', nextProbeAtMs: null, round: 1, cooldownMs: 10_000, version: 17, updatedAtMs: ctx.baseMs + 2 } satisfies Breaker;
      expect(await a.writeBreaker(lease!, replace(v3, 2))).toBe('ok');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(v3, 3));

      // A replace creates nothing.
      const absent = breaker(2);
      expect(await a.writeBreaker(lease!, replace(absent, 1))).toBe('conflict');
      expect(await a.writeBreaker(lease!, replace(absent, 0))).toBe('conflict');
      expect(await a.getBreaker(absent.tenant, absent.queue)).toBeNull();
    });

    it("after a takeover bumps the epoch, the old owner's breaker writes are refused and write nothing", async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [leaseA] = await own(a, 'node-a', [0]);
      const existing = breaker(0);
      expect(await a.writeBreaker(leaseA!, create(existing))).toBe('ok');

      await ctx.lapseLeases([0]);
      const [leaseB] = await own(b, 'node-b', [0]);
      const fresh = breaker(0);
      expect(await a.writeBreaker(leaseA!, create(fresh))).toBe('stale_epoch');
      expect(await a.writeBreaker(leaseA!, replace(opened(existing, ctx.baseMs + 1, 20, 20), 1))).toBe('stale_epoch');
      expect(await a.getBreaker(fresh.tenant, fresh.queue)).toBeNull();
      expect(await a.loadShardBreakers(0)).toEqual([at(existing, 1)]);

      // The new owner writes under its own epoch.
      const open = opened(existing, ctx.baseMs + 2, 20, 20);
      expect(await b.writeBreaker(leaseB!, replace(open, 1))).toBe('ok');
      expect(await b.getBreaker(existing.tenant, existing.queue)).toEqual(at(open, 2));
    });

    it("a lease fences only its own shard's breakers", async () => {
      const a = await ctx.open();
      const [lease0, lease1] = await own(a, 'node-a', [0, 1]);
      // Writing a breaker of shard 1 under shard 0's lease is the caller's bug.
      for (const write of [create(breaker(1)), replace(breaker(1), 1)]) {
        const misplaced = a.writeBreaker(lease0!, write);
        await expect(misplaced).rejects.toThrow(/shard/);
        await expect(misplaced).rejects.not.toBeInstanceOf(StoreUnavailableError);
      }

      // A breaker stored in shard 1 is out of reach of shard 0's lease: not replaced, nor moved
      // to shard 0.
      const b = breaker(1);
      expect(await a.writeBreaker(lease1!, create(b))).toBe('ok');
      expect(await a.writeBreaker(lease0!, replace({ ...b, shard: 0, state: 'open' }, 1))).toBe('conflict');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(b, 1));
      expect(await a.loadShardBreakers(0)).toEqual([]);
    });

    it('a tenant has at most its limit of breakers across shards, however many creations race for the last ones', async () => {
      const clients = [await ctx.open(), await ctx.open(), await ctx.open(), await ctx.open()];
      const a = clients[0]!;
      const leases = await own(a, 'node-a', allShards);
      const tenant = 'tenant-full';
      const places = 3;
      const limit = perTenantMax();
      const filler = Array.from({ length: limit - places }, (_, i) => breaker(i % ctx.shardCount, { tenant }));
      expect(await createAll(a, leases, filler)).toEqual(filler.map(() => 'ok'));

      // Twelve creations from four clients, on different shards, all in flight at once.
      const racers = Array.from({ length: 12 }, (_, i) => breaker(i % ctx.shardCount, { tenant }));
      const outcomes = await Promise.all(racers.map((b, i) => clients[i % clients.length]!.writeBreaker(leases[b.shard]!, create(b))));
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(places);
      expect(outcomes.filter((o) => o === 'limit')).toHaveLength(racers.length - places);
      expect(await countBreakers(a, tenant)).toBe(limit);
      const refused = racers.find((_, i) => outcomes[i] === 'limit')!;
      expect(await a.getBreaker(tenant, refused.queue)).toBeNull();

      // A queue that has a breaker is a conflict, whatever the count: the caller should
      // replace, not wait.
      expect(await a.writeBreaker(leases[filler[0]!.shard]!, create(opened(filler[0]!, ctx.baseMs + 1, 20, 20)))).toBe('conflict');
      // Replaces add nothing, and other tenants have limits of their own.
      expect(await a.writeBreaker(leases[filler[1]!.shard]!, replace(opened(filler[1]!, ctx.baseMs + 1, 20, 20), 1))).toBe('ok');
      expect(await a.writeBreaker(leases[refused.shard]!, create({ ...refused, tenant: 'tenant-other' }))).toBe('ok');
      expect(await a.writeBreaker(leases[refused.shard]!, create(refused))).toBe('limit');
      expect(await countBreakers(a, tenant)).toBe(limit);

      // A deleted breaker frees its place.
      const gone = filler[2]!;
      expect(await a.writeBreaker(leases[gone.shard]!, { breaker: gone, expectedVersion: 1, delete: true })).toBe('ok');
      expect(await a.writeBreaker(leases[refused.shard]!, create(refused))).toBe('ok');
      expect(await countBreakers(a, tenant)).toBe(limit);
    });

    it('a delete applies only at the stored version, in the fenced shard, under the current epoch; the queue may have a breaker again after', async () => {
      const a = await ctx.open();
      const b = breaker(2);
      const [lease] = await own(a, 'node-a', [2]);
      expect(await a.writeBreaker(lease!, create(b))).toBe('ok');
      expect(await a.writeBreaker(lease!, { breaker: b, expectedVersion: 2, delete: true })).toBe('conflict');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(b, 1));
      const [taken] = await a.acquireShards('node-b', [2], 60_000, ['node-a']);
      expect(await a.writeBreaker(lease!, { breaker: b, expectedVersion: 1, delete: true })).toBe('stale_epoch');
      expect(await a.writeBreaker(taken!, { breaker: b, expectedVersion: 1, delete: true })).toBe('ok');
      expect(await a.getBreaker(b.tenant, b.queue)).toBeNull();
      expect(await a.loadShardBreakers(2)).toEqual([]);
      expect(await a.writeBreaker(taken!, create(b))).toBe('ok');
      expect(await a.getBreaker(b.tenant, b.queue)).toEqual(at(b, 1));
    });

    it("loadShardBreakers returns every breaker of its shard, of every tenant, and no other shard's", async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', allShards);
      const all = Array.from({ length: 24 }, (_, i) => breaker(i % 3, { tenant: i % 2 === 0 ? 'tenant-a' : 'tenant-b' }));
      expect(await createAll(a, leases, all)).toEqual(all.map(() => 'ok'));
      for (const shard of [0, 1, 2]) {
        expect(byKey(await a.loadShardBreakers(shard))).toEqual(byKey(all.filter((b) => b.shard === shard).map((b) => at(b, 1))));
      }
      expect(await a.loadShardBreakers(3)).toEqual([]);
    });

    it("listBreakers pages through one tenant's breakers by queue (byte order), resuming after the cursor", async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', allShards);
      // Past the Basic Multilingual Plane, UTF-8 byte order and JavaScript's UTF-16 order
      // differ: '😀' sorts before '～' in JavaScript, after it in bytes.
      const queues = ['b', 'a', 'A', 'a-1', 'a/1', 'ä', '～', '😀', 'z', ...Array.from({ length: 5 }, (_, i) => `n${i}`)];
      const mine = shuffled(queues, 7).map((queue, i) => breaker(i % ctx.shardCount, { tenant: 'tenant-list', queue }));
      const theirs = ['a', 'c', 'zz'].map((queue, i) => breaker(i, { tenant: 'tenant-list-2', queue }));
      expect(await createAll(a, leases, [...mine, ...theirs])).toEqual([...mine, ...theirs].map(() => 'ok'));
      const inByteOrder = (breakers: Breaker[]) => [...breakers].sort((x, y) => Buffer.compare(Buffer.from(x.queue), Buffer.from(y.queue)));
      const expected = inByteOrder(mine.map((b) => at(b, 1)));
      expect(expected.indexOf(expected.find((b) => b.queue === '～')!)).toBeLessThan(expected.indexOf(expected.find((b) => b.queue === '😀')!));

      for (const limit of [1, 5, queues.length - 1, queues.length, 100]) {
        expect(await listAll(a, 'tenant-list', limit)).toEqual(expected);
      }
      // A page that ends exactly at the last breaker is the last page.
      expect(await a.listBreakers('tenant-list', queues.length, null)).toEqual({ items: expected, next: null });
      expect(await a.listBreakers('tenant-list-2', 10, null)).toEqual({ items: theirs.map((b) => at(b, 1)), next: null });
      expect(await a.listBreakers('tenant-nobody', 10, null)).toEqual({ items: [], next: null });

      // The cursor is a position, not a breaker: one created after the page it ended, right
      // behind that page's last queue, is on the next page.
      const first = await a.listBreakers('tenant-list', 5, null);
      expect(first.items).toEqual(expected.slice(0, 5));
      const late = breaker(0, { tenant: 'tenant-list', queue: `${first.items.at(-1)!.queue}-` });
      expect(await a.writeBreaker(leases[0]!, create(late))).toBe('ok');
      const rest = await a.listBreakers('tenant-list', 100, first.next);
      expect(rest).toEqual({ items: inByteOrder([...expected.slice(5), at(late, 1)]), next: null });
      expect(rest.items[0]).toEqual(at(late, 1));
    });

    it('listBreakers refuses a cursor it did not make with a RangeError, not an empty page', async () => {
      const a = await ctx.open();
      const jobs = encodeListCursor({ createdAtMs: ctx.baseMs, id: 'x' });
      const schedules = encodeScheduleCursor('a');
      for (const after of ['not-a-cursor', 'W10', '!!!', '', jobs, schedules]) {
        await expect(a.listBreakers('tenant-x', 10, after)).rejects.toBeInstanceOf(RangeError);
      }
    });
  });
}

/** Creates the breakers, several at a time as an owner with several connections would, each
 * under the lease of its shard (`leases` holds every shard's, in shard order). */
async function createAll(store: Store, leases: ShardLease[], breakers: Breaker[]): Promise<BreakerWriteOutcome[]> {
  return eightAtOnce(breakers, (b) => store.writeBreaker(leases[b.shard]!, { breaker: b, expectedVersion: null }));
}

async function listAll(store: Store, tenant: string, limit: number): Promise<Breaker[]> {
  return allPages(limit, (after) => store.listBreakers(tenant, limit, after));
}

async function countBreakers(store: Store, tenant: string): Promise<number> {
  return (await listAll(store, tenant, 100)).length;
}

/** The order loadShardBreakers promises none of. */
function byKey(breakers: Breaker[]): Breaker[] {
  return sortedBy(breakers, (b) => `${b.tenant}\u0000${b.queue}`);
}
