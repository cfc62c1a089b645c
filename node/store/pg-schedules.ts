// Recurring schedules in PostgreSQL (migration 0006): the fenced, versioned write of one
// schedule, the owner's load of a shard's schedules, and clients' reads; the row mapping, and
// the cursor of listSchedules.
//
// A write is one transaction, fenced as a commit is (pg-commit.ts): the shard's row is locked
// FOR SHARE and its epoch compared first, so an acquisition of the shard either waits for the
// write to end or is seen by it. The stored row must be in the fenced shard too, so an owner
// writes only the schedules its epoch covers.
//
// Circuit breakers (pg-breakers.ts) are records of a shard written the same way; what both use
// is exported from here: the columns' description, the create and replace statements, the
// fence, the tenant's creation lock and the page.

import assert from 'node:assert/strict';
import type pg from 'pg';
import type { MissedPolicy } from '../../protocol/schedule-view.ts';
import type { Schedule, ScheduleWrite, ScheduleWriteOutcome } from '../core/schedule/schedule.ts';
import type { Page, ShardLease } from '../core/store.ts';
import { msFromTs, plainBytes, tsFromMs } from './pg-rows.ts';
import { inTransaction, query } from './pg-tx.ts';
import { LOCK_SHARDS_SQL } from './pg-commit.ts';
import { SCHEDULE_CREATIONS_LOCK_CLASS } from './advisory-locks.ts';
import { decodeScheduleCursor, encodeScheduleCursor } from './list-cursor.ts';

type ColumnType = 'text' | 'int' | 'bigint' | 'float8' | 'bytea' | 'boolean' | 'ts';

export interface Column<R> {
  name: string;
  /** 'ts' is a timestamptz column sent and read as float8 milliseconds. */
  type: ColumnType;
  of(record: R): string | number | boolean | Uint8Array | null;
}

export const column = <R>(name: string, type: ColumnType, of: Column<R>['of']): Column<R> => ({ name, type, of });

/** What a put writes, in the order of its parameters ($1 onwards): every field but the
 * version, which the store sets. The key (tenant, name) and shard come first; a replace
 * matches on them and sets the rest. */
const PUT_COLUMNS: readonly Column<Schedule>[] = [
  column('tenant', 'text', (s) => s.tenant),
  column('name', 'text', (s) => s.name),
  column('shard', 'int', (s) => s.shard),
  column('cron', 'text', (s) => (s.timing.kind === 'cron' ? s.timing.cron : null)),
  column('timezone', 'text', (s) => (s.timing.kind === 'cron' ? s.timing.timezone : null)),
  column('every_ms', 'bigint', (s) => (s.timing.kind === 'every' ? s.timing.everyMs : null)),
  column('queue', 'text', (s) => s.queue),
  column('payload', 'bytea', (s) => s.payload),
  column('priority', 'int', (s) => s.priority),
  column('retry_attempts_max', 'int', (s) => s.retry.attemptsMax),
  column('retry_backoff_base_ms', 'int', (s) => s.retry.backoffBaseMs),
  column('retry_backoff_max_ms', 'int', (s) => s.retry.backoffMaxMs),
  column('retry_jitter', 'float8', (s) => s.retry.jitter),
  column('missed', 'text', (s) => s.missed),
  column('missed_max', 'int', (s) => s.missedMax),
  column('paused', 'boolean', (s) => s.paused),
  column('next_tick_at', 'ts', (s) => s.nextTickMs),
  column('created_at', 'ts', (s) => s.createdAtMs),
  column('updated_at', 'ts', (s) => s.updatedAtMs),
];
/** tenant, the record's key within its tenant, shard: first in every put's columns. */
const MATCHED_COLUMNS = 3;

/** A put's parameter as the value of its column (parameters are typed here: in an INSERT ...
 * SELECT nothing else would tell the server their types). */
function paramValue<R>(c: Column<R>, i: number): string {
  return c.type === 'ts' ? tsFromMs(`$${i + 1}::float8`) : `$${i + 1}::${c.type}`;
}

export const putParams = <R>(columns: readonly Column<R>[], record: R): unknown[] => columns.map((c) => c.of(record));

/** The select list a row mapping reads: every column, timestamps as milliseconds. */
export const selectList = <R>(columns: readonly Column<R>[]): string =>
  [...columns.map((c) => (c.type === 'ts' ? `${msFromTs(c.name)} AS ${c.name}` : c.name)), 'version'].join(', ');

const SCHEDULE_SELECT = selectList(PUT_COLUMNS);

/* Serialise the tenant's creations until the transaction ends, so that the count in
 * createSql's statement, which starts after this one returns and so sees every creation
 * committed before, stays exact: two creations at the limit cannot both count one below it.
 * In: $1 tenant. Tenants whose hashes collide merely share a lock. Replaces and deletes do
 * not take it: neither adds a record. Each kind of record has a lock class of its own
 * (advisory-locks.ts), as it has a limit of its own. */
export const lockTenantCreationsSql = (lockClass: number): string => `SELECT pg_advisory_xact_lock(${lockClass}, hashtext($1))`;
const LOCK_TENANT_CREATIONS_SQL = lockTenantCreationsSql(SCHEDULE_CREATIONS_LOCK_CLASS);

/* Create a record at version 1, unless its key is taken or its tenant has the most records of
 * the table it may. In: the put's parameters (`columns`: tenant, key, shard first), then that
 * most. Out: one row, the outcome: 'conflict' (key taken, whatever the count), 'limit', or 'ok'
 * (inserted). The verdict and the insert in one statement, one round trip. The count reads the
 * (tenant, key) primary key index, as many entries as the limit at most. */
export function createSql<R>(table: string, columns: readonly Column<R>[]): string {
  return `
WITH verdict AS (
  SELECT CASE WHEN bool_or(${columns[1]!.name} = $2) THEN 'conflict' WHEN count(*) >= $${columns.length + 1} THEN 'limit' ELSE 'ok' END AS outcome
  FROM ${table} WHERE tenant = $1
),
created AS (
  INSERT INTO ${table} (${columns.map((c) => c.name).join(', ')}, version)
  SELECT ${columns.map(paramValue).join(', ')}, 1 FROM verdict WHERE outcome = 'ok'
)
SELECT outcome FROM verdict`;
}

/* Replace the record if it is still at the expected version, in the fenced shard.
 * In: the put's parameters (`columns`: tenant, key, shard first), then the expected version.
 * Out: the row count, 1 or 0. The store owns the counter: version becomes expected + 1
 * whatever the record said. */
export function replaceSql<R>(table: string, columns: readonly Column<R>[]): string {
  return `
UPDATE ${table} SET
  ${columns.map((c, i) => `${c.name} = ${paramValue(c, i)}`).slice(MATCHED_COLUMNS).join(',\n  ')},
  version = version + 1
WHERE ${columns.slice(0, MATCHED_COLUMNS).map((c, i) => `${c.name} = $${i + 1}`).join(' AND ')} AND version = $${columns.length + 1}`;
}

const CREATE_SQL = createSql('schedules', PUT_COLUMNS);
const REPLACE_SQL = replaceSql('schedules', PUT_COLUMNS);

/* Move the schedule on to its next tick if it is still at the expected version, in the fenced
 * shard. In: $1 tenant, $2 name, $3 shard, $4 expected version, $5 next tick and $6 now (ms;
 * null next: no tick left). Out: the row count, 1 or 0. Only these columns: a tick's write
 * must not carry the payload. */
const ADVANCE_SQL = `
UPDATE schedules SET next_tick_at = ${tsFromMs('$5::float8')}, updated_at = ${tsFromMs('$6::float8')}, version = version + 1
WHERE tenant = $1 AND name = $2 AND shard = $3 AND version = $4`;

/* Delete the schedule if it is still at the expected version, in the fenced shard.
 * In: $1 tenant, $2 name, $3 shard, $4 expected version. Out: the row count, 1 or 0. */
const DELETE_SQL = 'DELETE FROM schedules WHERE tenant = $1 AND name = $2 AND shard = $3 AND version = $4';

/* A shard's schedules, by the schedules_shard index, in one order whatever the rows' history. */
const LOAD_SHARD_SQL = `SELECT ${SCHEDULE_SELECT} FROM schedules WHERE shard = $1 ORDER BY tenant, name`;

/* One schedule, by primary key. */
const GET_SQL = `SELECT ${SCHEDULE_SELECT} FROM schedules WHERE tenant = $1 AND name = $2`;

/* A page of a tenant's schedules by name, on the primary key index. In: $1 tenant, $2 rows,
 * then for later pages $3 the last name seen. */
const LIST_FIRST_SQL = `SELECT ${SCHEDULE_SELECT} FROM schedules WHERE tenant = $1 ORDER BY name LIMIT $2`;
const LIST_AFTER_SQL = `SELECT ${SCHEDULE_SELECT} FROM schedules WHERE tenant = $1 AND name > $3 ORDER BY name LIMIT $2`;

/** One write of a record of `lease`'s shard, in a transaction of its own that `write` fills
 * and that commits only when it answers 'ok'. The fence, as a commit takes it: an owner's
 * writes do not queue behind its commits; only an acquisition, which updates the shard's row,
 * waits for them. */
export async function fencedWrite<O extends string>(
  pool: pg.Pool,
  operation: string,
  lease: ShardLease,
  write: (client: pg.PoolClient) => Promise<O>,
): Promise<O | 'stale_epoch'> {
  return inTransaction<O | 'stale_epoch'>(pool, operation, async (client) => {
    const locked = await client.query<{ epoch: string }>(LOCK_SHARDS_SQL, [[lease.shard]]);
    if (locked.rows.length === 0 || Number(locked.rows[0]!.epoch) !== lease.epoch) return { commit: false, value: 'stale_epoch' };
    const outcome = await write(client);
    return { commit: outcome === 'ok', value: outcome };
  });
}

/** `perTenantMax`: SCHEDULES_PER_TENANT_MAX but in tests (PgStoreOptions). */
export async function writeSchedule(pool: pg.Pool, perTenantMax: number, lease: ShardLease, write: ScheduleWrite): Promise<ScheduleWriteOutcome> {
  if (write.kind === 'put' && write.schedule.shard !== lease.shard) {
    throw new Error(`writeSchedule: schedule ${write.schedule.name} is in shard ${write.schedule.shard}, written under the lease of shard ${lease.shard}`);
  }
  return fencedWrite<ScheduleWriteOutcome>(pool, 'writeSchedule', lease, async (client) => {
    if (write.kind === 'delete') {
      const deleted = await client.query(DELETE_SQL, [write.tenant, write.name, lease.shard, write.expectedVersion]);
      return deleted.rowCount === 1 ? 'ok' : 'conflict';
    }
    if (write.kind === 'advance') {
      const advanced = await client.query(ADVANCE_SQL, [write.tenant, write.name, lease.shard, write.expectedVersion, write.nextTickMs, write.updatedAtMs]);
      return advanced.rowCount === 1 ? 'ok' : 'conflict';
    }
    if (write.expectedVersion === null) {
      await client.query(LOCK_TENANT_CREATIONS_SQL, [write.schedule.tenant]);
      const created = await client.query<{ outcome: ScheduleWriteOutcome }>(CREATE_SQL, [...putParams(PUT_COLUMNS, write.schedule), perTenantMax]);
      return created.rows[0]!.outcome;
    }
    const replaced = await client.query(REPLACE_SQL, [...putParams(PUT_COLUMNS, write.schedule), write.expectedVersion]);
    return replaced.rowCount === 1 ? 'ok' : 'conflict';
  });
}

export async function loadShardSchedules(pool: pg.Pool, shard: number): Promise<Schedule[]> {
  return (await query<ScheduleRow>(pool, 'loadShardSchedules', LOAD_SHARD_SQL, [shard])).map(scheduleFromRow);
}

export async function getSchedule(pool: pg.Pool, tenant: string, name: string): Promise<Schedule | null> {
  const rows = await query<ScheduleRow>(pool, 'getSchedule', GET_SQL, [tenant, name]);
  return rows.length === 0 ? null : scheduleFromRow(rows[0]!);
}

export async function listSchedules(pool: pg.Pool, tenant: string, limit: number, after: string | null): Promise<Page<Schedule>> {
  assert.ok(Number.isInteger(limit) && limit >= 1, `limit must be a positive integer, got ${limit}`);
  let rows: ScheduleRow[];
  if (after === null) {
    rows = await query<ScheduleRow>(pool, 'listSchedules', LIST_FIRST_SQL, [tenant, limit + 1]);
  } else {
    const lastName = decodeScheduleCursor(after);
    if (lastName === null) throw new RangeError('listSchedules: malformed cursor');
    rows = await query<ScheduleRow>(pool, 'listSchedules', LIST_AFTER_SQL, [tenant, limit + 1, lastName]);
  }
  return pageOf(rows, limit, scheduleFromRow, (last) => encodeScheduleCursor(last.name));
}

/** The page of `rows`, read as `limit + 1` at most: the one more row than the page only tells
 * that a next page exists. */
export function pageOf<Row, T>(rows: Row[], limit: number, fromRow: (row: Row) => T, cursorAfter: (last: T) => string): Page<T> {
  const items = rows.slice(0, limit).map(fromRow);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last !== undefined ? cursorAfter(last) : null };
}

interface ScheduleRow {
  tenant: string;
  name: string;
  shard: number;
  cron: string | null;
  timezone: string | null;
  /** bigint: node-postgres returns it as a string. */
  every_ms: string | null;
  queue: string;
  payload: Buffer;
  priority: number;
  retry_attempts_max: number;
  retry_backoff_base_ms: number;
  retry_backoff_max_ms: number;
  retry_jitter: number;
  missed: MissedPolicy;
  missed_max: number;
  paused: boolean;
  next_tick_at: number | null;
  version: number;
  created_at: number;
  updated_at: number;
}

function scheduleFromRow(row: ScheduleRow): Schedule {
  return {
    tenant: row.tenant,
    name: row.name,
    shard: row.shard,
    // schedules_timing_check: exactly one of the two forms is set.
    timing: row.every_ms === null ? { kind: 'cron', cron: row.cron!, timezone: row.timezone! } : { kind: 'every', everyMs: Number(row.every_ms) },
    queue: row.queue,
    // A plain Uint8Array, as jobFromRow gives: not one of pg's Buffers, which may be views into
    // a shared pool slab.
    payload: plainBytes(row.payload),
    priority: row.priority,
    retry: {
      attemptsMax: row.retry_attempts_max,
      backoffBaseMs: row.retry_backoff_base_ms,
      backoffMaxMs: row.retry_backoff_max_ms,
      jitter: row.retry_jitter,
    },
    missed: row.missed,
    missedMax: row.missed_max,
    paused: row.paused,
    nextTickMs: row.next_tick_at,
    version: row.version,
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
  };
}
