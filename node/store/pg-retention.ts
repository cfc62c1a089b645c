// Retention: daily partitions of `jobs` are created ahead of need, and a partition is dropped
// whole (no row-by-row deletes, no vacuum debt) once its day is long enough past and nothing
// in it is live.
//
// Locking. Normal writes lock the parent `jobs` and then partitions, each transaction in the
// same order. Retention, when it has anything to create or drop, first takes ACCESS EXCLUSIVE
// on the parent alone (LOCK TABLE ONLY): it waits for in-flight writes to finish and holds new
// ones back until it commits, for the few milliseconds the pass takes once a day. That is also
// what DROP and a DEFAULT-partition ATTACH would take anyway; taking it first, in the writers'
// order, means retention cannot deadlock with them, and no requeue can make a partition live
// between the liveness check and the drop.
//
// The DEFAULT partition. Rows whose day had no partition yet (a node that ran before its first
// retention pass, or a wall clock far off) land in jobs_default. Postgres refuses to create a
// partition whose range has rows in DEFAULT, so a partition is made as a plain table, the
// DEFAULT rows of its day are moved into it (delete + insert in this transaction), and it is
// then attached. Jobs keep their ids and idempotency rows (which hold scheduled_at, not the
// partition). DEFAULT itself is never dropped; its rows go once their day's partition exists.

import type pg from 'pg';
import type { RetentionOptions, RetentionReport } from '../core/store.ts';
import { DAY_MS, partitionDay, partitionName } from '../core/retention-days.ts';
import { RETENTION_LOCK_KEY } from './advisory-locks.ts';
import { tsFromMs } from './pg-rows.ts';
import { inTransaction } from './pg-tx.ts';

const DAILY_PARTITION = /^jobs_p(\d{4})(\d{2})(\d{2})$/;

/** jobs_pYYYYMMDD for the UTC day that starts at dayStartMs (the name every store reports). */
function dailyPartitionName(dayStartMs: number): string {
  return partitionName(partitionDay(dayStartMs));
}

/* Retention waits at most this long for a lock: while it waits for ACCESS EXCLUSIVE, new
 * commits queue behind it, so it gives up (StoreUnavailableError; the next pass retries)
 * rather than stall the cluster's writes behind one long transaction. */
const BEGIN_SQL = "BEGIN; SET LOCAL lock_timeout = '5s'";

/* Only one node runs retention at a time; the others skip (ran: false). Released at commit. */
const TRY_LOCK_SQL = 'SELECT pg_try_advisory_xact_lock($1) AS locked';
/* The attached partitions of jobs, by name. */
const LIST_PARTITIONS_SQL = `
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'jobs'::regclass`;
/* Whether a partition holds a live job. In: $1 every shard id.
 * Phrased on (shard, status) with the partial ready index's own predicate (LIVE_STATES), so
 * that index answers with one probe per shard instead of a scan of a day of finished jobs. */
const HAS_LIVE_SQL = (table: string) =>
  `SELECT EXISTS (SELECT 1 FROM ${table} WHERE shard = ANY($1::int[]) AND status IN ('pending', 'running')) AS live`;
/* Idempotency keys of the jobs of one day. In: $1, $2 the day's bounds in ms. */
const DELETE_KEYS_SQL = `DELETE FROM idempotency WHERE scheduled_at >= ${tsFromMs('$1::float8')} AND scheduled_at < ${tsFromMs('$2::float8')}`;

export async function runRetention(
  pool: pg.Pool,
  shardCount: number,
  nowMs: number,
  options: RetentionOptions,
): Promise<RetentionReport> {
  const { daysAhead, keepDays } = options;
  if (!Number.isInteger(daysAhead) || daysAhead < 0 || !Number.isInteger(keepDays) || keepDays < 0) {
    throw new RangeError(`retention: daysAhead and keepDays must be non-negative integers (${daysAhead}, ${keepDays})`);
  }
  return inTransaction<RetentionReport>(pool, 'retention', async (client) => {
    const lock = await client.query<{ locked: boolean }>(TRY_LOCK_SQL, [RETENTION_LOCK_KEY]);
    if (!lock.rows[0]!.locked) return { commit: false, value: { created: [], dropped: [], keptLive: [], ran: false } };

    const existing = new Map<string, number>(); // name → day start
    for (const { name } of (await client.query<{ name: string }>(LIST_PARTITIONS_SQL)).rows) {
      const m = DAILY_PARTITION.exec(name);
      if (m !== null) existing.set(name, Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
    }
    const todayMs = Math.floor(nowMs / DAY_MS) * DAY_MS;
    const toCreate = Array.from({ length: daysAhead }, (_, k) => todayMs + k * DAY_MS).filter(
      (day) => !existing.has(dailyPartitionName(day)),
    );
    const expired = [...existing.values()].filter((day) => nowMs - (day + DAY_MS) > keepDays * DAY_MS).sort((a, b) => a - b);
    const report: RetentionReport = { created: [], dropped: [], keptLive: [], ran: true };
    if (toCreate.length === 0 && expired.length === 0) return { commit: true, value: report };

    await client.query('LOCK TABLE ONLY jobs IN ACCESS EXCLUSIVE MODE');
    for (const day of toCreate) report.created.push(await createPartition(client, day));
    const shards = Array.from({ length: shardCount }, (_, shard) => shard);
    for (const day of expired) {
      const name = dailyPartitionName(day);
      const table = client.escapeIdentifier(name);
      const live = await client.query<{ live: boolean }>(HAS_LIVE_SQL(table), [shards]);
      if (live.rows[0]!.live) {
        report.keptLive.push(name);
        continue;
      }
      await client.query(`DROP TABLE ${table}`);
      await client.query(DELETE_KEYS_SQL, [day, day + DAY_MS]);
      report.dropped.push(name);
    }
    return { commit: true, value: report };
  }, BEGIN_SQL);
}

async function createPartition(client: pg.PoolClient, dayStartMs: number): Promise<string> {
  const name = dailyPartitionName(dayStartMs);
  const table = client.escapeIdentifier(name);
  const from = client.escapeLiteral(new Date(dayStartMs).toISOString());
  const to = client.escapeLiteral(new Date(dayStartMs + DAY_MS).toISOString());
  // LIKE copies the columns (same order, so rows move with SELECT *) and the status CHECK,
  // which ATTACH requires; ATTACH builds the parent's indexes on the new table.
  await client.query(`CREATE TABLE ${table} (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
  await client.query(
    `WITH moved AS (DELETE FROM jobs_default WHERE scheduled_at >= ${from} AND scheduled_at < ${to} RETURNING *)
     INSERT INTO ${table} SELECT * FROM moved`,
  );
  await client.query(`ALTER TABLE jobs ATTACH PARTITION ${table} FOR VALUES FROM (${from}) TO (${to})`);
  return name;
}
