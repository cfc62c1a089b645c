// The PostgreSQL store: the Store contract (node/core/store.ts) on pg Pools. Shard leases and
// job reads live here; the fenced write path is pg-commit.ts, schedules pg-schedules.ts,
// breakers pg-breakers.ts, retention pg-retention.ts, the row mapping pg-rows.ts.
//
// Three pools, so that no kind of work waits in a queue behind another: shard leases (a
// renewal that waits too long costs the node its shards), the write path (commits, loads,
// paging), and reads of single jobs and pages, which clients drive and can flood (200,000
// pipelined `get`s once starved renewals until the node gave up every shard).
//
// Leases run on the database's clock (now()), never the node's: nodes' clocks may disagree,
// and safety must not depend on them. A node still stops serving by its own monotonic clock
// before its lease lapses (docs/DESIGN.md, "Ownership and fencing"); the store only decides
// who may acquire.

import assert from 'node:assert/strict';
import pg from 'pg';
import { BREAKERS_PER_TENANT_MAX } from '../core/breaker/breaker.ts';
import { parseJobId } from '../../protocol/job-id.ts';
import type { Job } from '../core/job/job.ts';
import { SCHEDULES_PER_TENANT_MAX } from '../core/schedule/schedule.ts';
import type { JobCursor, ListFilter, Page, ShardLease, ShardRow, Store } from '../core/store.ts';
import { decodeListCursor, encodeListCursor } from './list-cursor.ts';
import { migrate } from './migrate.ts';
import { getBreaker, listBreakers, loadShardBreakers, writeBreaker } from './pg-breakers.ts';
import { ensureCluster } from './pg-cluster.ts';
import { commitBatch } from './pg-commit.ts';
import { runRetention } from './pg-retention.ts';
import { JOB_SELECT, jobFromRow, msFromTs, tsFromMs, type JobRow } from './pg-rows.ts';
import { getSchedule, listSchedules, loadShardSchedules, writeSchedule } from './pg-schedules.ts';
import { inTransaction, query } from './pg-tx.ts';

export interface PgStoreOptions {
  connectionString: string;
  /** Connections of the write path: the number of batches that can be in flight at once. */
  poolSize?: number;
  /** Connections serving clients' reads (`getJob`, `listJobs`, `getSchedule`, `listSchedules`,
   * `getBreaker`, `listBreakers`). */
  readPoolSize?: number;
  /** The cluster's shard count; checked against the one recorded at cluster creation. */
  shardCount: number;
  /** The most schedules a tenant may have: SCHEDULES_PER_TENANT_MAX, the same on every node of
   * a cluster. Tests lower it, to reach it without creating a thousand schedules. */
  schedulesPerTenantMax?: number;
  /** The most breakers a tenant may have: BREAKERS_PER_TENANT_MAX, likewise. */
  breakersPerTenantMax?: number;
}

export const LIST_LIMIT_MAX = 1000;

/* Shard ownership lives in two tables (migration 0003): `shards` holds the epoch, which every
 * commit locks FOR SHARE and compares (the fence); `shard_leases` holds owner and lease_until,
 * which decide only who may acquire. Renewal and release touch only shard_leases, so they never
 * wait for commits, and commits never wait for them. Only acquisition, which bumps the epoch,
 * waits for the commits in flight on its shards, as fencing requires.
 *
 * Lock order, so that no two of these statements (nor a commit) can deadlock: every statement
 * that locks several rows of one table locks them in id order (a CTE with ORDER BY id and a
 * locking clause; the UPDATE that follows touches only rows the CTE locked), and a transaction
 * that locks rows of both tables (acquisition) locks its shard_leases rows before its shards
 * rows. Commits lock only shards, renewal and release only shard_leases. */

/* Acquisition, step 1: lock, in id order, the lease rows of the shards that are free, already
 * the owner's, whose lease lapsed by the database's clock, or whose owner the caller declared
 * dead (the epoch fences a dead owner's writes; its lease only delayed the takeover).
 * In: $1 shard ids, $2 owner, $3 dead owners. Out: ids of the shards that will be won.
 * FOR UPDATE re-checks the condition on the latest row version after any wait, so of two
 * racing nodes the second sees the first's ownership and takes nothing. Shards held by others
 * are not locked at all, so asking for them does not stall their owners' commits. */
const ACQUIRE_LOCK_SQL = `
SELECT id FROM shard_leases
WHERE id = ANY($1::int[])
  AND (owner IS NULL OR owner = $2 OR lease_until IS NULL OR lease_until < now() OR owner = ANY($3::text[]))
ORDER BY id FOR UPDATE`;

/* Acquisition, step 2, in the same transaction: take the lease rows locked in step 1 and bump
 * the epochs, locking the shard rows in id order first (this waits for the commits in flight on
 * them, which then end before the new epoch exists, or see it and roll back).
 * In: $1 ids from step 1, $2 owner, $3 lease length (ms). Out: (id, epoch) of the shards won. */
const ACQUIRE_TAKE_SQL = `
WITH leased AS (
  UPDATE shard_leases SET owner = $2, lease_until = now() + $3::float8 * interval '1 millisecond'
  WHERE id = ANY($1::int[])
),
fenced AS (SELECT id FROM shards WHERE id = ANY($1::int[]) ORDER BY id FOR NO KEY UPDATE)
UPDATE shards AS s SET epoch = s.epoch + 1
FROM fenced f
WHERE s.id = f.id
RETURNING s.id, s.epoch`;

/* The lease rows an owner still holds at the given epochs, locked in id order.
 * In: $1 owner, $2 shard ids, $3 epochs (pairwise). The epoch comes from a plain read of
 * shards (FOR NO KEY UPDATE OF l locks only the lease row), so a commit's FOR SHARE lock on
 * the shard row does not hold it up. A concurrent acquisition, which locks the lease row, is
 * waited for, and the owner is then re-checked on its result. */
const HELD_LEASES_CTE = `
held AS (
  SELECT l.id FROM shard_leases AS l
  JOIN unnest($2::int[], $3::bigint[]) AS h(id, epoch) ON l.id = h.id
  JOIN shards AS s ON s.id = h.id AND s.epoch = h.epoch
  WHERE l.owner = $1
  ORDER BY l.id FOR NO KEY UPDATE OF l
)`;

/* Extend the leases the owner still holds at the given epochs, all in one statement.
 * In: as HELD_LEASES_CTE, then $4 lease length (ms). Out: ids renewed. */
const RENEW_SQL = `
WITH ${HELD_LEASES_CTE}
UPDATE shard_leases AS l SET lease_until = now() + $4::float8 * interval '1 millisecond'
FROM held WHERE l.id = held.id
RETURNING l.id`;

/* Give shards up, keeping the epoch (the next acquisition bumps it). In: as HELD_LEASES_CTE. */
const RELEASE_SQL = `
WITH ${HELD_LEASES_CTE}
UPDATE shard_leases AS l SET owner = NULL, lease_until = NULL
FROM held WHERE l.id = held.id`;

/* Every shard. lease_until comes from now() and so has microseconds; whole ms suffice. */
const LIST_SHARDS_SQL = `
SELECT s.id, l.owner, s.epoch, floor(${msFromTs('l.lease_until')}) AS lease_until
FROM shards AS s JOIN shard_leases AS l ON l.id = s.id ORDER BY s.id`;

/* A page of one shard's jobs in one live state, by (run_at, id), served by the partial
 * (shard, status, run_at, id) index of each partition, merged in order.
 * In: $1 shard, $2 state, $3 limit, then for later pages $4 run_at (ms) and $5 id of the
 * last row seen. The row comparison is an index condition, so a page costs its own size. The
 * redundant status IN (...) repeats the index predicate so that the planner can use the
 * index whatever it knows of $2. */
const LOAD_WHERE = "shard = $1 AND status = $2 AND status IN ('pending', 'running')";
const LOAD_FIRST_SQL = `SELECT ${JOB_SELECT} FROM jobs WHERE ${LOAD_WHERE} ORDER BY run_at, id LIMIT $3`;
const LOAD_AFTER_SQL = `SELECT ${JOB_SELECT} FROM jobs WHERE ${LOAD_WHERE}
  AND (run_at, id) > (${tsFromMs('$4::float8')}, $5) ORDER BY run_at, id LIMIT $3`;

/* One job. In: $1 id, $2 scheduled_at (ms, parsed from the id), which prunes to one partition. */
const GET_JOB_SQL = `SELECT ${JOB_SELECT} FROM jobs WHERE id = $1 AND scheduled_at = ${tsFromMs('$2::float8')}`;

const FIND_KEY_SQL = 'SELECT job_id FROM idempotency WHERE tenant = $1 AND key = $2';

/** One connection pool's state, for the node's gauges. */
export interface PoolStats {
  /** The pool's application_name: kairos (the write path), kairos-leases, kairos-reads. */
  pool: string;
  total: number;
  idle: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

/** The PostgreSQL store, and its pools' state for the node's gauges. */
export interface PgStore extends Store {
  pools(): PoolStats[];
  /** One round trip on the read pool: whether the database answers (the node's readiness),
   * without taking a connection the write path or the shard leases need. */
  ping(): Promise<void>;
}

export async function createPgStore(options: PgStoreOptions): Promise<PgStore> {
  const { connectionString, shardCount, schedulesPerTenantMax = SCHEDULES_PER_TENANT_MAX, breakersPerTenantMax = BREAKERS_PER_TENANT_MAX } = options;
  await migrate(connectionString);
  const pool = newPool(connectionString, options.poolSize ?? 10, 'kairos', TIMEOUTS.writes);
  const leasePool = newPool(connectionString, SHARD_LEASE_CONNECTIONS, 'kairos-leases', TIMEOUTS.leases);
  const reads = newPool(connectionString, options.readPoolSize ?? 4, 'kairos-reads', TIMEOUTS.reads);
  const closeAll = async () => void (await Promise.all([pool.end(), leasePool.end(), reads.end()]));
  try {
    await ensureCluster(pool, shardCount);
  } catch (error) {
    await closeAll();
    throw error;
  }

  const checkShards = (shards: readonly number[]): void => {
    for (const shard of shards) assert.ok(Number.isInteger(shard) && shard >= 0 && shard < shardCount, `shard ${shard} out of range`);
  };
  // Sorted by shard so that every statement locks shard rows in the same order.
  const byShard = (leases: ShardLease[]): ShardLease[] => [...leases].sort((a, b) => a.shard - b.shard);

  return {
    async acquireShards(owner, shards, leaseMs, deadOwners = []) {
      checkShards(shards);
      const rows = await inTransaction(leasePool, 'acquireShards', async (client) => {
        const candidates = await client.query<{ id: number }>(ACQUIRE_LOCK_SQL, [shards, owner, deadOwners]);
        if (candidates.rows.length === 0) return { commit: true, value: [] };
        const won = await client.query<{ id: number; epoch: string }>(ACQUIRE_TAKE_SQL, [candidates.rows.map((row) => row.id), owner, leaseMs]);
        return { commit: true, value: won.rows };
      });
      return rows.map((row) => ({ shard: row.id, epoch: Number(row.epoch) })).sort((a, b) => a.shard - b.shard);
    },

    async renewShards(owner, leases, leaseMs) {
      const sorted = byShard(leases);
      const rows = await query<{ id: number }>(leasePool, 'renewShards', RENEW_SQL, [
        owner,
        sorted.map((l) => l.shard),
        sorted.map((l) => l.epoch),
        leaseMs,
      ]);
      return rows.map((row) => row.id).sort((a, b) => a - b);
    },

    async releaseShards(owner, leases) {
      const sorted = byShard(leases);
      await query(leasePool, 'releaseShards', RELEASE_SQL, [owner, sorted.map((l) => l.shard), sorted.map((l) => l.epoch)]);
    },

    async listShards(): Promise<ShardRow[]> {
      const rows = await query<{ id: number; owner: string | null; epoch: string; lease_until: number | null }>(
        leasePool,
        'listShards',
        LIST_SHARDS_SQL,
        [],
      );
      return rows.map((row) => ({ shard: row.id, owner: row.owner, epoch: Number(row.epoch), leaseUntilMs: row.lease_until }));
    },

    commit: (batch) => commitBatch(pool, batch),

    async loadShardJobs(shard, state, after: JobCursor | null, limit) {
      assert.ok(Number.isInteger(limit) && limit >= 1, `limit must be a positive integer, got ${limit}`);
      const rows =
        after === null
          ? await query<JobRow>(pool, 'loadShardJobs', LOAD_FIRST_SQL, [shard, state, limit])
          : await query<JobRow>(pool, 'loadShardJobs', LOAD_AFTER_SQL, [shard, state, limit, after.runAtMs, after.id]);
      return rows.map(jobFromRow);
    },

    async getJob(id) {
      const parts = parseJobId(id);
      if (parts === null) return null;
      const rows = await query<JobRow>(reads, 'getJob', GET_JOB_SQL, [id, parts.scheduledAtMs]);
      return rows.length === 0 ? null : jobFromRow(rows[0]!);
    },

    async findByIdempotencyKey(tenant, key) {
      const rows = await query<{ job_id: string }>(pool, 'findByIdempotencyKey', FIND_KEY_SQL, [tenant, key]);
      return rows[0]?.job_id ?? null;
    },

    listJobs: (tenant, filter) => listJobs(reads, tenant, filter),

    writeSchedule: (lease, write) => writeSchedule(pool, schedulesPerTenantMax, lease, write),
    loadShardSchedules: (shard) => loadShardSchedules(pool, shard),
    getSchedule: (tenant, name) => getSchedule(reads, tenant, name),
    listSchedules: (tenant, limit, after) => listSchedules(reads, tenant, limit, after),

    writeBreaker: (lease, write) => writeBreaker(pool, breakersPerTenantMax, lease, write),
    loadShardBreakers: (shard) => loadShardBreakers(pool, shard),
    getBreaker: (tenant, queue) => getBreaker(reads, tenant, queue),
    listBreakers: (tenant, limit, after) => listBreakers(reads, tenant, limit, after),

    retention: (retentionOptions, asOfMs) => runRetention(pool, shardCount, retentionOptions, asOfMs),

    ping: async () => void (await query(reads, 'ping', 'SELECT 1', [])),

    pools: () =>
      ([['kairos', pool], ['kairos-leases', leasePool], ['kairos-reads', reads]] as const).map(([name, p]) => ({ pool: name, total: p.totalCount, idle: p.idleCount, waiting: p.waitingCount })),

    close: closeAll,
  };
}

/** Shard leases: acquisition and renewal, never more than one of each at a time per node. */
const SHARD_LEASE_CONNECTIONS = 2;

/** Server-side timeouts of each pool's sessions, in ms. The shard lease is 15 s, and a node
 * that another wants to take a shard from may be paused (GC, SIGSTOP, a frozen VM) with a
 * transaction open: whatever it holds, the acquisition waits for. So:
 * - idle in transaction, 5 s on every pool: a commit's transaction runs only statements back
 *   to back, so a gap of 5 s means the node is not running; the server ends the session and
 *   its locks go. A paused node's open transaction holds an acquisition up for at most that.
 * - statement, 10 s on the write path: a commit's statements take milliseconds (a 5,000-row
 *   batch tens of them); one still running after 10 s is stuck (waiting on a lock, or on a
 *   struggling server), and cancelling it frees its shard-row locks well within a lease. The
 *   outcome is then unknown to the owner, which steps down as for any unavailable store.
 * - lock wait, 2 s on shard leases: an acquisition or renewal that cannot get its rows at once
 *   is better refused (StoreUnavailableError; the shard manager tries again on its next beat)
 *   than left waiting while the lease it means to renew runs down, or while it holds the lease
 *   rows it locked first. A renewal waits only for an acquisition, and an acquisition only for
 *   the commits in flight on its shards, so 2 s is far beyond their normal wait; statements
 *   there are cut at 5 s.
 * - reads keep 30 s: they lock no rows, and a page of a large listing may take a while. */
const TIMEOUTS = {
  writes: { statement: 10_000, idleInTransaction: 5_000, lock: null },
  leases: { statement: 5_000, idleInTransaction: 5_000, lock: 2_000 },
  reads: { statement: 30_000, idleInTransaction: 5_000, lock: null },
} as const satisfies Record<string, SessionTimeouts>;

interface SessionTimeouts {
  statement: number;
  idleInTransaction: number;
  lock: number | null;
}

function newPool(connectionString: string, max: number, applicationName: string, timeouts: SessionTimeouts): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    application_name: applicationName,
    statement_timeout: timeouts.statement,
    idle_in_transaction_session_timeout: timeouts.idleInTransaction,
    ...(timeouts.lock === null ? {} : { lock_timeout: timeouts.lock }),
  });
  // An idle connection that dies is dropped by the pool; the next checkout opens a new one.
  // Without a listener, the pool's 'error' event would crash the process.
  pool.on('error', () => {});
  return pool;
}

/* A tenant's jobs newest first, optionally in one state and/or queue, after a cursor.
 * Built per call from the filters present, so each shape is a plain conjunction that the
 * (tenant, created_at DESC, id DESC) or (tenant, status, created_at DESC, id DESC) index
 * serves in order; one more row than the page is read to know whether a next page exists. */
async function listJobs(pool: pg.Pool, tenant: string, filter: ListFilter): Promise<Page<Job>> {
  assert.ok(Number.isInteger(filter.limit) && filter.limit >= 1, `limit must be a positive integer, got ${filter.limit}`);
  const limit = Math.min(filter.limit, LIST_LIMIT_MAX);
  const values: unknown[] = [tenant];
  const where = ['tenant = $1'];
  if (filter.state !== undefined) where.push(`status = $${values.push(filter.state)}`);
  if (filter.queue !== undefined) where.push(`queue = $${values.push(filter.queue)}`);
  if (filter.after != null) {
    const cursor = decodeListCursor(filter.after);
    if (cursor === null) throw new RangeError('listJobs: malformed cursor');
    const createdAt = tsFromMs(`$${values.push(cursor.createdAtMs)}::float8`);
    where.push(`(created_at, id) < (${createdAt}, $${values.push(cursor.id)})`);
  }
  const text = `SELECT ${JOB_SELECT} FROM jobs WHERE ${where.join(' AND ')}
    ORDER BY created_at DESC, id DESC LIMIT $${values.push(limit + 1)}`;
  const jobs = (await query<JobRow>(pool, 'listJobs', text, values)).map(jobFromRow);
  const items = jobs.slice(0, limit);
  const last = items.at(-1);
  const next = jobs.length > limit && last !== undefined ? encodeListCursor({ createdAtMs: last.createdAtMs, id: last.id }) : null;
  return { items, next };
}
