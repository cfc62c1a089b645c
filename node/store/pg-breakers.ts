// Circuit breakers in PostgreSQL (migration 0007): the fenced, versioned write of one breaker,
// the owner's load of a shard's breakers, and clients' reads; the row mapping.
//
// Written as schedules are (pg-schedules.ts, whose statements and fence this reuses): a write
// is one transaction, the shard's row locked FOR SHARE and its epoch compared first, so an
// acquisition of the shard either waits for the write to end or is seen by it; the stored row
// must be in the fenced shard too, so an owner writes only the breakers its epoch covers.
// A write creates, replaces or deletes.

import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Breaker, BreakerWrite, BreakerWriteOutcome } from '../core/breaker/breaker.ts';
import type { BreakerState } from '../../protocol/breaker-view.ts';
import type { Page, ShardLease } from '../core/store.ts';
import { BREAKER_CREATIONS_LOCK_CLASS } from './advisory-locks.ts';
import { decodeBreakerCursor, encodeBreakerCursor } from './list-cursor.ts';
import { column, createSql, fencedWrite, lockTenantCreationsSql, pageOf, putParams, replaceSql, selectList, type Column } from './pg-schedules.ts';
import { query } from './pg-tx.ts';

/** What a write writes, in the order of its parameters ($1 onwards): every field but the
 * version, which the store sets. The key (tenant, queue) and shard come first; a replace
 * matches on them and sets the rest. The settings are all null or all set
 * (breakers_config_check): null is the node's default. */
const PUT_COLUMNS: readonly Column<Breaker>[] = [
  column('tenant', 'text', (b) => b.tenant),
  column('queue', 'text', (b) => b.queue),
  column('shard', 'int', (b) => b.shard),
  column('config_enabled', 'boolean', (b) => b.config?.enabled ?? null),
  column('config_failure_rate_pct', 'int', (b) => b.config?.failureRatePct ?? null),
  column('config_min_attempts', 'int', (b) => b.config?.minAttempts ?? null),
  column('config_window_ms', 'bigint', (b) => b.config?.windowMs ?? null),
  column('config_cooldown_ms', 'bigint', (b) => b.config?.cooldownMs ?? null),
  column('config_cooldown_max_ms', 'bigint', (b) => b.config?.cooldownMaxMs ?? null),
  column('config_probes', 'int', (b) => b.config?.probes ?? null),
  column('config_refuse_when_open', 'boolean', (b) => b.config?.refuseWhenOpen ?? null),
  column('state', 'text', (b) => b.state),
  column('since_at', 'ts', (b) => b.sinceMs),
  column('next_probe_at', 'ts', (b) => b.nextProbeAtMs),
  column('cooldown_ms', 'bigint', (b) => b.cooldownMs),
  column('round', 'int', (b) => b.round),
  column('opened_attempts', 'int', (b) => b.openedAttempts),
  column('opened_failures', 'int', (b) => b.openedFailures),
  column('updated_at', 'ts', (b) => b.updatedAtMs),
];

const BREAKER_SELECT = selectList(PUT_COLUMNS);

/* The tenant's creations one at a time, so that the count of CREATE_SQL stays exact
 * (lockTenantCreationsSql says how); under a lock class of breakers' own. */
const LOCK_TENANT_CREATIONS_SQL = lockTenantCreationsSql(BREAKER_CREATIONS_LOCK_CLASS);

/* Create at version 1 (createSql): 'conflict' when the queue has a breaker, 'limit' when the
 * tenant has as many as it may, else 'ok'. In: the PUT_COLUMNS parameters, then that most. */
const CREATE_SQL = createSql('breakers', PUT_COLUMNS);

/* Replace at the expected version, in the fenced shard (replaceSql). In: the PUT_COLUMNS
 * parameters, then the expected version. Out: the row count, 1 or 0. */
const REPLACE_SQL = replaceSql('breakers', PUT_COLUMNS);

/* Delete at the expected version, in the fenced shard. In: $1 tenant, $2 queue, $3 shard, $4
 * the expected version. Out: the row count, 1 or 0. */
const DELETE_SQL = 'DELETE FROM breakers WHERE tenant = $1 AND queue = $2 AND shard = $3 AND version = $4';

/* A shard's breakers, by the breakers_shard index, in one order whatever the rows' history. */
const LOAD_SHARD_SQL = `SELECT ${BREAKER_SELECT} FROM breakers WHERE shard = $1 ORDER BY tenant, queue`;

/* One breaker, by primary key. */
const GET_SQL = `SELECT ${BREAKER_SELECT} FROM breakers WHERE tenant = $1 AND queue = $2`;

/* A page of a tenant's breakers by queue, on the primary key index. In: $1 tenant, $2 rows,
 * then for later pages $3 the last queue seen. */
const LIST_FIRST_SQL = `SELECT ${BREAKER_SELECT} FROM breakers WHERE tenant = $1 ORDER BY queue LIMIT $2`;
const LIST_AFTER_SQL = `SELECT ${BREAKER_SELECT} FROM breakers WHERE tenant = $1 AND queue > $3 ORDER BY queue LIMIT $2`;

/** `perTenantMax`: BREAKERS_PER_TENANT_MAX but in tests (PgStoreOptions). */
export async function writeBreaker(pool: pg.Pool, perTenantMax: number, lease: ShardLease, write: BreakerWrite): Promise<BreakerWriteOutcome> {
  const { breaker, expectedVersion } = write;
  if (breaker.shard !== lease.shard) {
    throw new Error(`writeBreaker: breaker of queue ${breaker.queue} is in shard ${breaker.shard}, written under the lease of shard ${lease.shard}`);
  }
  return fencedWrite<BreakerWriteOutcome>(pool, 'writeBreaker', lease, async (client) => {
    if (expectedVersion === null) {
      await client.query(LOCK_TENANT_CREATIONS_SQL, [breaker.tenant]);
      const created = await client.query<{ outcome: BreakerWriteOutcome }>(CREATE_SQL, [...putParams(PUT_COLUMNS, breaker), perTenantMax]);
      return created.rows[0]!.outcome;
    }
    const changed =
      write.delete === true
        ? await client.query(DELETE_SQL, [breaker.tenant, breaker.queue, breaker.shard, expectedVersion])
        : await client.query(REPLACE_SQL, [...putParams(PUT_COLUMNS, breaker), expectedVersion]);
    return changed.rowCount === 1 ? 'ok' : 'conflict';
  });
}

export async function loadShardBreakers(pool: pg.Pool, shard: number): Promise<Breaker[]> {
  return (await query<BreakerRow>(pool, 'loadShardBreakers', LOAD_SHARD_SQL, [shard])).map(breakerFromRow);
}

export async function getBreaker(pool: pg.Pool, tenant: string, queue: string): Promise<Breaker | null> {
  const rows = await query<BreakerRow>(pool, 'getBreaker', GET_SQL, [tenant, queue]);
  return rows.length === 0 ? null : breakerFromRow(rows[0]!);
}

export async function listBreakers(pool: pg.Pool, tenant: string, limit: number, after: string | null): Promise<Page<Breaker>> {
  assert.ok(Number.isInteger(limit) && limit >= 1, `limit must be a positive integer, got ${limit}`);
  let rows: BreakerRow[];
  if (after === null) {
    rows = await query<BreakerRow>(pool, 'listBreakers', LIST_FIRST_SQL, [tenant, limit + 1]);
  } else {
    const lastQueue = decodeBreakerCursor(after);
    if (lastQueue === null) throw new RangeError('listBreakers: malformed cursor');
    rows = await query<BreakerRow>(pool, 'listBreakers', LIST_AFTER_SQL, [tenant, limit + 1, lastQueue]);
  }
  return pageOf(rows, limit, breakerFromRow, (last) => encodeBreakerCursor(last.queue));
}

/** bigint columns: node-postgres returns them as strings. */
interface BreakerRow {
  tenant: string;
  queue: string;
  shard: number;
  config_enabled: boolean | null;
  config_failure_rate_pct: number | null;
  config_min_attempts: number | null;
  config_window_ms: string | null;
  config_cooldown_ms: string | null;
  config_cooldown_max_ms: string | null;
  config_probes: number | null;
  config_refuse_when_open: boolean | null;
  state: BreakerState;
  since_at: number;
  next_probe_at: number | null;
  cooldown_ms: string;
  round: number;
  opened_attempts: number;
  opened_failures: number;
  version: number;
  updated_at: number;
}

function breakerFromRow(row: BreakerRow): Breaker {
  return {
    tenant: row.tenant,
    queue: row.queue,
    shard: row.shard,
    // breakers_config_check: all of the settings are set, or none.
    config:
      row.config_enabled === null
        ? null
        : {
            enabled: row.config_enabled,
            failureRatePct: row.config_failure_rate_pct!,
            minAttempts: row.config_min_attempts!,
            windowMs: Number(row.config_window_ms),
            cooldownMs: Number(row.config_cooldown_ms),
            cooldownMaxMs: Number(row.config_cooldown_max_ms),
            probes: row.config_probes!,
            refuseWhenOpen: row.config_refuse_when_open!,
          },
    state: row.state,
    sinceMs: row.since_at,
    nextProbeAtMs: row.next_probe_at,
    cooldownMs: Number(row.cooldown_ms),
    round: row.round,
    openedAttempts: row.opened_attempts,
    openedFailures: row.opened_failures,
    version: row.version,
    updatedAtMs: row.updated_at,
  };
}
