// Retention: daily partitions of `jobs` are created ahead of need, and a partition is dropped
// whole (no row-by-row deletes, no vacuum debt) once its day is long enough past and nothing
// in it is live.
//
// Locking. Normal writes lock the parent `jobs` and then partitions, each transaction in the
// same order. Retention, when it has anything to create or drop, first takes ACCESS EXCLUSIVE
// on the parent alone (LOCK TABLE ONLY): it waits for in-flight writes to finish and holds new
// ones back until it commits. It asks in short tries (lockJobs), so that new writes queue
// behind its request for one try's wait at most, not for as long as the slowest write in
// flight. That transaction only creates and drops tables (a DROP costs the same whatever the
// partition holds: its files go at commit) and notes the dropped days, so it lasts
// milliseconds, once a day. That is also what DROP and a DEFAULT-partition ATTACH would
// take anyway; taking it first, in the writers' order, means retention cannot deadlock with
// them, and no requeue can make a partition live between the liveness check and the drop.
//
// Idempotency keys of a dropped day. They are rows of `idempotency` (millions a day at the
// mission's rate), and deleting them under that lock would hold every commit back for
// seconds. So the locked transaction records the day in retention_key_sweeps, and once it has
// committed the keys are deleted in batches of KEY_BATCH, each statement its own short
// transaction that locks only the key rows it deletes; commits never wait for it. Meanwhile a
// key may name a job that is gone: a duplicate submission of it is answered with that job's
// id, as if the day had not expired yet (pg-commit.ts, FIND_KEYS_SQL). A key is deleted only
// if its job is gone, so a job that lands in the dropped day afterwards (in DEFAULT: a node
// whose clock is days behind) keeps its key. The day's row goes once its keys are gone; a pass
// that stopped before (a crash, a lost connection) leaves it, and the next pass that runs
// finishes the day.
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
import { isLockNotAvailable } from './pg-errors.ts';
import { msFromTs, tsFromMs } from './pg-rows.ts';
import { inTransaction, query } from './pg-tx.ts';

const DAILY_PARTITION = /^jobs_p(\d{4})(\d{2})(\d{2})$/;

/** jobs_pYYYYMMDD for the UTC day that starts at dayStartMs (the name every store reports). */
function dailyPartitionName(dayStartMs: number): string {
  return partitionName(partitionDay(dayStartMs));
}

/* Retention waits at most this long for a lock: while it waits for ACCESS EXCLUSIVE, new
 * commits queue behind it, so it gives up (StoreUnavailableError; the next pass retries)
 * rather than stall the cluster's writes behind one long transaction. */
const BEGIN_SQL = "BEGIN; SET LOCAL lock_timeout = '5s'";

/* Waiting for ACCESS EXCLUSIVE holds every new commit back until the commits in flight end
 * (measured: 166 ms under load, 2.5x the commits' p99). So the lock is first tried with a wait
 * of LOCK_TRY_MS, inside a savepoint; a try that times out steps back, lets the queued commits
 * through for LOCK_PAUSE_MS, and tries again. Commits are short, so a try soon finds none in
 * flight. The last of LOCK_TRIES waits as long as BEGIN_SQL allows. */
const LOCK_TRY_MS = 30;
const LOCK_PAUSE_MS = 20;
const LOCK_TRIES = 20;
const LOCK_JOBS_SQL = 'LOCK TABLE ONLY jobs IN ACCESS EXCLUSIVE MODE';

/* Only one node runs retention at a time; the others skip (ran: false). Released at commit.
 * Also the database's clock, by which days are counted (Store.retention). */
const TRY_LOCK_SQL = `SELECT pg_try_advisory_xact_lock($1) AS locked, ${msFromTs('now()')} AS now_ms`;
/* The attached partitions of jobs, by name. */
const LIST_PARTITIONS_SQL = `
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'jobs'::regclass`;
/* Whether a partition holds a live job. In: $1 every shard id.
 * Phrased on (shard, status) with the partial ready index's own predicate (LIVE_STATES), so
 * that index answers with one probe per shard instead of a scan of a day of finished jobs. */
const HAS_LIVE_SQL = (table: string) =>
  `SELECT EXISTS (SELECT 1 FROM ${table} WHERE shard = ANY($1::int[]) AND status IN ('pending', 'running')) AS live`;
/* Notes a dropped day whose keys are to be deleted (in the locked transaction). In: $1 its start in ms. */
const RECORD_SWEEP_SQL = `INSERT INTO retention_key_sweeps (day_start) VALUES (${tsFromMs('$1::float8')}) ON CONFLICT DO NOTHING`;
/* The days whose keys are still to be deleted: this pass's and any an earlier pass left. */
const PENDING_SWEEPS_SQL = `SELECT ${msFromTs('day_start')} AS day FROM retention_key_sweeps ORDER BY day_start`;
const SWEEP_DONE_SQL = `DELETE FROM retention_key_sweeps WHERE day_start = ${tsFromMs('$1::float8')}`;

/* Keys deleted per statement: about 0.1 s of work, so a key row is locked at most that long
 * (only a resubmission of an expired key could wait for it), and WAL and locks stay small. */
const KEY_BATCH = 10_000;

/* One batch of a dropped day's keys, the earliest first, each only if its job is gone.
 * In: $1 where to start (the day's start, then the last scheduled_at of the previous batch),
 * $2 the day's end, both timestamptz as text (exact to the microsecond, so the next batch
 * starts where this one stopped even among keys of one instant), $3 the batch size.
 * Out: seen (keys picked), deleted (fewer when a concurrent pass took some), last (text).
 * The range scan of idempotency_scheduled_at starts where the previous batch stopped, not at
 * the day's start, so it does not walk the index entries of the keys already deleted. The
 * job's range bound prunes the NOT EXISTS to DEFAULT (the day's partition is gone): no probe
 * of the daily partitions. ctid = ANY(ARRAY(...)) is a TID scan: the picked rows, no join. */
const DELETE_KEYS_BATCH_SQL = `
WITH batch AS (
  SELECT k.ctid, k.scheduled_at FROM idempotency k
  WHERE k.scheduled_at >= $1::timestamptz AND k.scheduled_at < $2::timestamptz
    AND NOT EXISTS (
      SELECT 1 FROM jobs j WHERE j.id = k.job_id AND j.scheduled_at = k.scheduled_at
        AND j.scheduled_at >= $1::timestamptz AND j.scheduled_at < $2::timestamptz)
  ORDER BY k.scheduled_at LIMIT $3
), gone AS (
  DELETE FROM idempotency WHERE ctid = ANY (ARRAY(SELECT ctid FROM batch)) RETURNING 1
)
SELECT (SELECT count(*) FROM batch)::int AS seen, (SELECT count(*) FROM gone)::int AS deleted,
  (SELECT max(scheduled_at) FROM batch)::text AS last`;

/** Timings of a pass's two parts, for the benchmark (test/bench/drop-partition.ts). */
export interface RetentionObserver {
  /** ACCESS EXCLUSIVE on jobs is held, ms after BEGIN: the wait for the commits in flight. */
  lockTaken?(ms: number): void;
  /** The transaction that creates and drops partitions ended (committed or not): ms from
   * BEGIN to COMMIT's answer. ACCESS EXCLUSIVE on jobs is held from lockTaken until the
   * commit, which removes the dropped partitions' files after releasing its locks. */
  lockedDone?(ms: number): void;
  /** The keys of the dropped days are deleted: how many, and the ms that took. */
  keysDeleted?(keys: number, ms: number): void;
}

export async function runRetention(
  pool: pg.Pool,
  shardCount: number,
  options: RetentionOptions,
  asOfMs?: number,
  observer: RetentionObserver = {},
): Promise<RetentionReport> {
  const { daysAhead, keepDays } = options;
  if (!Number.isInteger(daysAhead) || daysAhead < 0 || !Number.isInteger(keepDays) || keepDays < 0) {
    throw new RangeError(`retention: daysAhead and keepDays must be non-negative integers (${daysAhead}, ${keepDays})`);
  }
  const lockedStart = performance.now();
  const report = await inTransaction<RetentionReport>(pool, 'retention', async (client) => {
    const lock = await client.query<{ locked: boolean; now_ms: number }>(TRY_LOCK_SQL, [RETENTION_LOCK_KEY]);
    if (!lock.rows[0]!.locked) return { commit: false, value: { created: [], dropped: [], keptLive: [], ran: false } };
    const nowMs = asOfMs ?? lock.rows[0]!.now_ms;

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

    await lockJobs(client);
    observer.lockTaken?.(performance.now() - lockedStart);
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
      await client.query(RECORD_SWEEP_SQL, [day]);
      report.dropped.push(name);
    }
    return { commit: true, value: report };
  }, BEGIN_SQL).finally(() => observer.lockedDone?.(performance.now() - lockedStart));
  // Only the node that ran the pass deletes keys: the others would find the same rows.
  if (report.ran) await deleteDroppedDaysKeys(pool, observer);
  return report;
}

/** Deletes the keys of every day in retention_key_sweeps, outside any lock on jobs. A failure
 * here rejects the pass although its partitions are dropped: the days stay recorded, and the
 * next pass deletes the rest of their keys. */
async function deleteDroppedDaysKeys(pool: pg.Pool, observer: RetentionObserver): Promise<void> {
  const started = performance.now();
  let keys = 0;
  for (const { day } of await query<{ day: number }>(pool, 'retention', PENDING_SWEEPS_SQL, [])) {
    const end = new Date(day + DAY_MS).toISOString();
    let from = new Date(day).toISOString();
    for (;;) {
      const [batch] = await query<{ seen: number; deleted: number; last: string | null }>(pool, 'retention', DELETE_KEYS_BATCH_SQL, [from, end, KEY_BATCH]);
      keys += batch!.deleted;
      // Fewer than a batch, all deleted: none left. Picked but not deleted: a concurrent pass
      // (another node's, after ours committed) is deleting them; look again until none is left.
      if (batch!.seen === 0 || (batch!.seen < KEY_BATCH && batch!.deleted === batch!.seen)) break;
      from = batch!.last!;
    }
    await query(pool, 'retention', SWEEP_DONE_SQL, [day]);
  }
  observer.keysDeleted?.(keys, performance.now() - started);
}

/** ACCESS EXCLUSIVE on jobs, tried in short waits first (LOCK_TRY_MS). */
async function lockJobs(client: pg.PoolClient): Promise<void> {
  for (let attempt = 1; attempt < LOCK_TRIES; attempt++) {
    await client.query(`SAVEPOINT lock_try; SET LOCAL lock_timeout = '${LOCK_TRY_MS}ms'`);
    try {
      await client.query(LOCK_JOBS_SQL);
      // RELEASE keeps the lock and the short timeout; the rest of the pass gets the long one.
      await client.query("RELEASE SAVEPOINT lock_try; SET LOCAL lock_timeout = '5s'");
      return;
    } catch (error) {
      if (!isLockNotAvailable(error)) throw error;
      // Undoes the failed LOCK and the short timeout alike.
      await client.query('ROLLBACK TO SAVEPOINT lock_try; RELEASE SAVEPOINT lock_try');
      await new Promise((resolve) => setTimeout(resolve, LOCK_PAUSE_MS));
    }
  }
  await client.query(LOCK_JOBS_SQL);
}

async function createPartition(client: pg.PoolClient, dayStartMs: number): Promise<string> {
  const name = dailyPartitionName(dayStartMs);
  const table = client.escapeIdentifier(name);
  const from = client.escapeLiteral(new Date(dayStartMs).toISOString());
  const to = client.escapeLiteral(new Date(dayStartMs + DAY_MS).toISOString());
  // LIKE copies the columns (same order, so rows move with SELECT *), the status CHECK, which
  // ATTACH requires, and the columns' compression (migration 0005); ATTACH builds the parent's
  // indexes on the new table.
  await client.query(`CREATE TABLE ${table} (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMPRESSION)`);
  await client.query(
    `WITH moved AS (DELETE FROM jobs_default WHERE scheduled_at >= ${from} AND scheduled_at < ${to} RETURNING *)
     INSERT INTO ${table} SELECT * FROM moved`,
  );
  await client.query(`ALTER TABLE jobs ATTACH PARTITION ${table} FOR VALUES FROM (${from}) TO (${to})`);
  return name;
}
