// Recurring schedules: the fenced, versioned write, the per-tenant limit, the owner's load and
// clients' reads.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY } from '../../../protocol/job-rules.ts';
import { MISSED_MAX_DEFAULT, type Schedule, type ScheduleWrite, type ScheduleWriteOutcome } from '../../../node/core/schedule/schedule.ts';
import { StoreUnavailableError, type ShardLease, type Store } from '../../../node/core/store.ts';
import { encodeListCursor } from '../../../node/store/list-cursor.ts';
import { allPages, eightAtOnce, own, shuffled, sortedBy, type SuiteContext } from './suite-context.ts';

let seq = 0;

/** `perTenantMax`: the limit of the current test's stores (StoreWorld.schedulesPerTenantMax). */
export function scheduleCases(ctx: SuiteContext, perTenantMax: () => number): void {
  const allShards = Array.from({ length: ctx.shardCount }, (_, i) => i);
  /** A schedule as an owner creates it; names are unique within the process unless given. */
  const schedule = (shard: number, extra: Partial<Schedule> = {}): Schedule => ({
    tenant: 'tenant-a',
    name: `schedule-${seq++}`,
    shard,
    timing: { kind: 'every', everyMs: 60_000 },
    queue: 'default',
    payload: new Uint8Array([1, 2, 3]),
    priority: 0,
    retry: DEFAULT_RETRY_POLICY,
    missed: 'once',
    missedMax: MISSED_MAX_DEFAULT,
    paused: false,
    nextTickMs: ctx.baseMs + 60_000,
    version: 0,
    createdAtMs: ctx.baseMs,
    updatedAtMs: ctx.baseMs,
    ...extra,
  });
  const create = (s: Schedule): ScheduleWrite => ({ kind: 'put', schedule: s, expectedVersion: null });
  const replace = (s: Schedule, expectedVersion: number): ScheduleWrite => ({ kind: 'put', schedule: s, expectedVersion });
  const remove = (s: Schedule, expectedVersion: number): ScheduleWrite => ({ kind: 'delete', tenant: s.tenant, name: s.name, expectedVersion });
  /** What the store holds after a write of `s` that left it at `version`. */
  const at = (s: Schedule, version: number): Schedule => ({ ...s, version });

  describe('schedules', () => {
    it('every field of a schedule survives the round trip; the store sets the version', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [3]);
      const cron = schedule(3, {
        tenant: 'tenant-ü',
        name: 'nightly/ü 1',
        timing: { kind: 'cron', cron: '0 30 2 * * 1-5', timezone: 'Europe/Berlin' },
        queue: 'reports',
        payload: new Uint8Array([0, 255, 10, 92, 34]),
        priority: -17,
        retry: { attemptsMax: 3, backoffBaseMs: 250, backoffMaxMs: 90_000, jitter: 0.3 },
        missed: 'each',
        missedMax: 100,
        paused: true,
        nextTickMs: null,
        version: 42,
        createdAtMs: ctx.baseMs - 1,
        updatedAtMs: ctx.baseMs + 7,
      });
      const every = schedule(3, {
        timing: { kind: 'every', everyMs: 30 * 86_400_000 },
        payload: new Uint8Array(0),
        missed: 'skip',
        missedMax: 1,
        nextTickMs: ctx.baseMs + 86_400_001,
      });
      expect(await a.writeSchedule(lease!, create(cron))).toBe('ok');
      expect(await a.writeSchedule(lease!, create(every))).toBe('ok');

      expect(await a.getSchedule(cron.tenant, cron.name)).toEqual(at(cron, 1));
      expect(await a.getSchedule(every.tenant, every.name)).toEqual(at(every, 1));
      expect(await a.listSchedules(cron.tenant, 10, null)).toEqual({ items: [at(cron, 1)], next: null });
      expect(byKey(await a.loadShardSchedules(3))).toEqual(byKey([at(cron, 1), at(every, 1)]));
      // Names are per tenant: the same name in another tenant is another schedule.
      expect(await a.getSchedule('tenant-a', cron.name)).toBeNull();
      expect(await a.getSchedule(cron.tenant, 'nightly')).toBeNull();
    });

    it('creating a name the tenant has already is a conflict and changes nothing; another tenant may use it', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [1]);
      const first = schedule(1, { name: 'hourly' });
      expect(await a.writeSchedule(lease!, create(first))).toBe('ok');
      expect(await a.writeSchedule(lease!, create({ ...first, queue: 'other', paused: true }))).toBe('conflict');
      expect(await a.getSchedule(first.tenant, 'hourly')).toEqual(at(first, 1));

      const theirs = schedule(1, { tenant: 'tenant-b', name: 'hourly' });
      expect(await a.writeSchedule(lease!, create(theirs))).toBe('ok');
      expect(await a.getSchedule('tenant-b', 'hourly')).toEqual(at(theirs, 1));
    });

    it('a replace applies only at the stored version, and bumps it by one', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [2]);
      const s = schedule(2);
      expect(await a.writeSchedule(lease!, create(s))).toBe('ok');

      // Timing from an interval to a cron expression, paused, no next tick.
      const v2 = { ...s, timing: { kind: 'cron', cron: '*/5 * * * *', timezone: 'UTC' }, paused: true, nextTickMs: null, updatedAtMs: ctx.baseMs + 1 } satisfies Schedule;
      expect(await a.writeSchedule(lease!, replace(v2, 1))).toBe('ok');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(v2, 2));

      // A write based on a stale read, or on a version the schedule never had, is refused.
      const stale = { ...s, queue: 'stale' };
      expect(await a.writeSchedule(lease!, replace(stale, 1))).toBe('conflict');
      expect(await a.writeSchedule(lease!, replace(stale, 3))).toBe('conflict');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(v2, 2));

      const v3 = { ...v2, timing: { kind: 'every', everyMs: 1_000 }, paused: false, nextTickMs: ctx.baseMs + 2_000, updatedAtMs: ctx.baseMs + 2 } satisfies Schedule;
      expect(await a.writeSchedule(lease!, replace(v3, 2))).toBe('ok');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(v3, 3));

      // A replace creates nothing.
      const absent = schedule(2);
      expect(await a.writeSchedule(lease!, replace(absent, 1))).toBe('conflict');
      expect(await a.getSchedule(absent.tenant, absent.name)).toBeNull();
    });

    it('an advance moves only the next tick (and updatedAt) on, at the stored version, and bumps it by one', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [5]);
      const s = schedule(5, { payload: new Uint8Array(1_000).fill(7) });
      expect(await a.writeSchedule(lease!, create(s))).toBe('ok');
      const advance = (nextTickMs: number | null, expectedVersion: number): ScheduleWrite => ({
        kind: 'advance', tenant: s.tenant, name: s.name, nextTickMs, updatedAtMs: ctx.baseMs + 60_001, expectedVersion,
      });
      expect(await a.writeSchedule(lease!, advance(ctx.baseMs + 120_000, 1))).toBe('ok');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual({ ...s, nextTickMs: ctx.baseMs + 120_000, updatedAtMs: ctx.baseMs + 60_001, version: 2 });
      expect(await a.writeSchedule(lease!, advance(ctx.baseMs + 180_000, 1))).toBe('conflict');
      expect(await a.writeSchedule(lease!, advance(null, 2))).toBe('ok');
      expect((await a.getSchedule(s.tenant, s.name))?.nextTickMs).toBeNull();
      // Nothing to advance: a conflict, and nothing is created.
      const absent = schedule(5);
      expect(await a.writeSchedule(lease!, { kind: 'advance', tenant: absent.tenant, name: absent.name, nextTickMs: 1, updatedAtMs: 1, expectedVersion: 1 })).toBe('conflict');
      expect(await a.getSchedule(absent.tenant, absent.name)).toBeNull();
    });

    it('a delete applies only at the stored version; the name is then free again', async () => {
      const a = await ctx.open();
      const [lease] = await own(a, 'node-a', [4]);
      const s = schedule(4);
      expect(await a.writeSchedule(lease!, create(s))).toBe('ok');
      expect(await a.writeSchedule(lease!, replace(s, 1))).toBe('ok');

      expect(await a.writeSchedule(lease!, remove(s, 1))).toBe('conflict');
      expect(await a.writeSchedule(lease!, remove(s, 3))).toBe('conflict');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(s, 2));

      expect(await a.writeSchedule(lease!, remove(s, 2))).toBe('ok');
      expect(await a.getSchedule(s.tenant, s.name)).toBeNull();
      expect(await a.writeSchedule(lease!, remove(s, 2))).toBe('conflict');
      expect(await a.loadShardSchedules(4)).toEqual([]);

      expect(await a.writeSchedule(lease!, create(s))).toBe('ok');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(s, 1));
    });

    it("after a takeover bumps the epoch, the old owner's schedule writes are refused and write nothing", async () => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const [leaseA] = await own(a, 'node-a', [0]);
      const s = schedule(0);
      expect(await a.writeSchedule(leaseA!, create(s))).toBe('ok');

      await ctx.lapseLeases([0]);
      const [leaseB] = await own(b, 'node-b', [0]);
      const fresh = schedule(0);
      expect(await a.writeSchedule(leaseA!, create(fresh))).toBe('stale_epoch');
      expect(await a.writeSchedule(leaseA!, replace({ ...s, paused: true }, 1))).toBe('stale_epoch');
      expect(await a.writeSchedule(leaseA!, remove(s, 1))).toBe('stale_epoch');
      expect(await a.getSchedule(fresh.tenant, fresh.name)).toBeNull();
      expect(await a.loadShardSchedules(0)).toEqual([at(s, 1)]);

      // The new owner writes under its own epoch.
      expect(await b.writeSchedule(leaseB!, replace({ ...s, paused: true }, 1))).toBe('ok');
      expect(await b.getSchedule(s.tenant, s.name)).toEqual(at({ ...s, paused: true }, 2));
    });

    it("a lease fences only its own shard's schedules", async () => {
      const a = await ctx.open();
      const [lease0, lease1] = await own(a, 'node-a', [0, 1]);
      // Putting a schedule of shard 1 under shard 0's lease is the caller's bug.
      const misplaced = a.writeSchedule(lease0!, create(schedule(1)));
      await expect(misplaced).rejects.toThrow(/shard/);
      await expect(misplaced).rejects.not.toBeInstanceOf(StoreUnavailableError);

      // A schedule stored in shard 1 is out of reach of shard 0's lease: not replaced (nor moved
      // to shard 0), not deleted.
      const s = schedule(1);
      expect(await a.writeSchedule(lease1!, create(s))).toBe('ok');
      expect(await a.writeSchedule(lease0!, replace({ ...s, shard: 0 }, 1))).toBe('conflict');
      expect(await a.writeSchedule(lease0!, remove(s, 1))).toBe('conflict');
      expect(await a.getSchedule(s.tenant, s.name)).toEqual(at(s, 1));
      expect(await a.loadShardSchedules(0)).toEqual([]);
    });

    it('a tenant has at most its limit of schedules across shards, however many creations race for the last ones', async () => {
      const clients = [await ctx.open(), await ctx.open(), await ctx.open(), await ctx.open()];
      const a = clients[0]!;
      const leases = await own(a, 'node-a', allShards);
      const tenant = 'tenant-full';
      const places = 3;
      const limit = perTenantMax();
      const filler = Array.from({ length: limit - places }, (_, i) => schedule(i % ctx.shardCount, { tenant }));
      expect(await createAll(a, leases, filler)).toEqual(filler.map(() => 'ok'));

      // Twelve creations from four clients, on different shards, all in flight at once.
      const racers = Array.from({ length: 12 }, (_, i) => schedule(i % ctx.shardCount, { tenant }));
      const outcomes = await Promise.all(racers.map((s, i) => clients[i % clients.length]!.writeSchedule(leases[s.shard]!, create(s))));
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(places);
      expect(outcomes.filter((o) => o === 'limit')).toHaveLength(racers.length - places);
      expect(await countSchedules(a, tenant)).toBe(limit);
      const refused = racers.find((_, i) => outcomes[i] === 'limit')!;
      expect(await a.getSchedule(tenant, refused.name)).toBeNull();

      // A taken name is a conflict, whatever the count: the caller should replace, not wait.
      expect(await a.writeSchedule(leases[filler[0]!.shard]!, create({ ...filler[0]!, queue: 'other' }))).toBe('conflict');
      // Replaces add nothing, and other tenants have limits of their own.
      expect(await a.writeSchedule(leases[filler[1]!.shard]!, replace({ ...filler[1]!, paused: true }, 1))).toBe('ok');
      expect(await a.writeSchedule(leases[refused.shard]!, create({ ...refused, tenant: 'tenant-other' }))).toBe('ok');
      // A delete makes room for one.
      expect(await a.writeSchedule(leases[filler[2]!.shard]!, remove(filler[2]!, 1))).toBe('ok');
      expect(await a.writeSchedule(leases[refused.shard]!, create(refused))).toBe('ok');
      expect(await a.writeSchedule(leases[6]!, create(schedule(6, { tenant })))).toBe('limit');
      expect(await countSchedules(a, tenant)).toBe(limit);
    });

    it("loadShardSchedules returns every schedule of its shard, of every tenant, and no other shard's", async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', allShards);
      const all = Array.from({ length: 24 }, (_, i) => schedule(i % 3, { tenant: i % 2 === 0 ? 'tenant-a' : 'tenant-b' }));
      expect(await createAll(a, leases, all)).toEqual(all.map(() => 'ok'));
      for (const shard of [0, 1, 2]) {
        expect(byKey(await a.loadShardSchedules(shard))).toEqual(byKey(all.filter((s) => s.shard === shard).map((s) => at(s, 1))));
      }
      expect(await a.loadShardSchedules(3)).toEqual([]);
    });

    it("listSchedules pages through one tenant's schedules by name (byte order), resuming after the cursor", async () => {
      const a = await ctx.open();
      const leases = await own(a, 'node-a', allShards);
      // Past the Basic Multilingual Plane, UTF-8 byte order and JavaScript's UTF-16 order
      // differ: '😀' sorts before '～' in JavaScript, after it in bytes.
      const names = ['b', 'a', 'A', 'a-1', 'a/1', 'ä', '～', '😀', 'z', ...Array.from({ length: 5 }, (_, i) => `n${i}`)];
      const mine = shuffled(names, 7).map((name, i) => schedule(i % ctx.shardCount, { tenant: 'tenant-list', name }));
      const theirs = ['a', 'c', 'zz'].map((name, i) => schedule(i, { tenant: 'tenant-list-2', name }));
      expect(await createAll(a, leases, [...mine, ...theirs])).toEqual([...mine, ...theirs].map(() => 'ok'));
      const expected = mine.map((s) => at(s, 1)).sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
      expect(expected.indexOf(expected.find((s) => s.name === '～')!)).toBeLessThan(expected.indexOf(expected.find((s) => s.name === '😀')!));

      for (const limit of [1, 5, names.length - 1, names.length, 100]) {
        expect(await listAll(a, 'tenant-list', limit)).toEqual(expected);
      }
      // A page that ends exactly at the last schedule is the last page.
      expect(await a.listSchedules('tenant-list', names.length, null)).toEqual({ items: expected, next: null });
      expect(await a.listSchedules('tenant-list-2', 10, null)).toEqual({ items: theirs.map((s) => at(s, 1)), next: null });
      expect(await a.listSchedules('tenant-nobody', 10, null)).toEqual({ items: [], next: null });

      // The cursor is a position, not a schedule: it still works once the schedule it ended on
      // is gone.
      const first = await a.listSchedules('tenant-list', 5, null);
      const last = first.items.at(-1)!;
      expect(await a.writeSchedule(leases[last.shard]!, remove(last, 1))).toBe('ok');
      const rest = await a.listSchedules('tenant-list', 100, first.next);
      expect(rest).toEqual({ items: expected.slice(5), next: null });
    });

    it('listSchedules refuses a cursor it did not make with a RangeError, not an empty page', async () => {
      const a = await ctx.open();
      const foreign = encodeListCursor({ createdAtMs: ctx.baseMs, id: 'x' }); // listJobs'
      for (const after of ['not-a-cursor', 'W10', '!!!', '', foreign]) {
        await expect(a.listSchedules('tenant-x', 10, after)).rejects.toBeInstanceOf(RangeError);
      }
    });
  });
}

/** Creates the schedules, several at a time as an owner with several connections would, each
 * under the lease of its shard (`leases` holds every shard's, in shard order). */
async function createAll(store: Store, leases: ShardLease[], schedules: Schedule[]): Promise<ScheduleWriteOutcome[]> {
  return eightAtOnce(schedules, (s) => store.writeSchedule(leases[s.shard]!, { kind: 'put', schedule: s, expectedVersion: null }));
}

async function listAll(store: Store, tenant: string, limit: number): Promise<Schedule[]> {
  return allPages(limit, (after) => store.listSchedules(tenant, limit, after));
}

async function countSchedules(store: Store, tenant: string): Promise<number> {
  return (await listAll(store, tenant, 100)).length;
}

/** The order loadShardSchedules promises none of. */
function byKey(schedules: Schedule[]): Schedule[] {
  return sortedBy(schedules, (s) => `${s.tenant}\u0000${s.name}`);
}
