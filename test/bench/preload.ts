// `npm run bench -- --preload N` (Kairos only): before anything is measured, the jobs table is
// given what a cluster that keeps 30 days holds, so that the figures are those of a full table
// rather than an empty one: N succeeded jobs spread evenly over the 30 days that end
// yesterday, each in its day's partition, each with its idempotency key (the SDK gives every
// job one), and a payload of the benchmark's (`payloadText`, which PostgreSQL compresses about
// as it does typical JSON).
//
// Fast, and without a second copy of the store's logic:
// - the partitions are created by the store's retention pass (runRetention), run as of the
//   first of the 30 days with 30 days ahead;
// - every row is a copy of one finished job built with the node's own constructor and
//   transition function, written through the store's column list (pg-rows.ts): only the id,
//   shard, scheduled time (every timestamp keeps its offset from it) and key differ per row;
// - ids come from formatJobId, built here and sent as arrays; keys are random UUIDs (v4)
//   made by the server. The SDK's are time-ordered (v7), so the benchmark's own keys all land
//   at one end of the key index, past these;
// - the payload is compressed once: it is read from a one-row temporary table, where
//   PostgreSQL stored it compressed, and a value that arrives compressed is stored as it is
//   (compressing the same 2 KB for every row was most of the time: about 40 of 70 µs a row).
//   The bytes on disk are the same: the same value, compressed the same way;
// - one INSERT ... SELECT FROM unnest per day (more for days of over ROWS_PER_STATEMENT jobs),
//   writing the keys and the jobs in the same statement, then VACUUM (ANALYZE) and CHECKPOINT.
//
// It runs after the nodes have started (kairos-side.ts): a node's first retention pass, with
// its default keepDays of 7, would drop most of these days. Its next pass is an hour later,
// after any run of this benchmark.

import pg from 'pg';
import { formatJobId } from '../../protocol/job-id.ts';
import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import { leaseTokenOf, type Job } from '../../node/core/job/job.ts';
import { newJob } from '../../node/core/job/new-job.ts';
import { transition } from '../../node/core/job/transition.ts';
import { DEFAULT_OWNER_CONFIG } from '../../node/core/owner/shard-owner.ts';
import { DAY_MS, partitionDay, partitionName } from '../../node/core/retention-days.ts';
import { binaryArray } from '../../node/store/pg-arrays.ts';
import { runRetention } from '../../node/store/pg-retention.ts';
import { INSERT_COLUMNS, tsFromMs } from '../../node/store/pg-rows.ts';
import { payloadText } from './process-protocol.ts';

export const PRELOAD_DAYS = 30;
/** Bounds the arrays of one statement (an id array of about 5 MB). */
const ROWS_PER_STATEMENT = 200_000;
const PAYLOAD_TABLE = 'preload_payload';
/** How long to wait for the retention lock that a node's own pass may hold for a moment. */
const RETENTION_LOCK_WAIT_MS = 30_000;

export interface PreloadOptions {
  jobs: number;
  tenant: string;
  queue: string;
  payloadBytes: number;
  log(line: string): void;
}

export interface Preloaded {
  jobs: number;
  /** Each preloaded day, oldest first: its start (ms, UTC) and how many jobs it holds. */
  days: Array<{ startMs: number; jobs: number }>;
  shardCount: number;
}

export async function preloadJobs(url: string, options: PreloadOptions): Promise<Preloaded> {
  const { jobs, log } = options;
  const started = performance.now();
  // runRetention takes a pool; the rows are written on one session (its temporary table).
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const shardCount = Number((await pool.query<{ n: number }>('SELECT shard_count AS n FROM cluster')).rows[0]!.n);
    const todayMs = partitionDay(Date.now()) * DAY_MS;
    const firstMs = todayMs - PRELOAD_DAYS * DAY_MS;
    await createDays(pool, shardCount, firstMs);
    const partitionsSec = (performance.now() - started) / 1000;

    const days = Array.from({ length: PRELOAD_DAYS }, (_, d) => ({
      startMs: firstMs + d * DAY_MS,
      jobs: Math.floor(jobs / PRELOAD_DAYS) + (d < jobs % PRELOAD_DAYS ? 1 : 0),
    }));
    const template = finishedJob(options, firstMs);
    await db.query(`CREATE TEMPORARY TABLE ${PAYLOAD_TABLE} AS SELECT $1::bytea AS payload`, [Buffer.from(template.payload)]);
    const insert = insertSql(template);
    for (const day of days) {
      for (let from = 0; from < day.jobs; from += ROWS_PER_STATEMENT) {
        const count = Math.min(ROWS_PER_STATEMENT, day.jobs - from);
        const ids: string[] = new Array(count);
        const shards: number[] = new Array(count);
        const scheduledAt: number[] = new Array(count);
        for (let k = 0; k < count; k++) {
          const seq = from + k;
          // Spread evenly over the day, and over the shards.
          const scheduledAtMs = day.startMs + Math.floor((seq * DAY_MS) / day.jobs);
          const shard = seq % shardCount;
          ids[k] = formatJobId({ shard, scheduledAtMs, epoch: 1, seq });
          shards[k] = shard;
          scheduledAt[k] = scheduledAtMs;
        }
        await db.query(insert.text, [binaryArray('text', ids), binaryArray('int', shards), binaryArray('float8', scheduledAt), ...insert.values]);
      }
    }
    const rowsSec = (performance.now() - started) / 1000 - partitionsSec;

    // VACUUM, not only ANALYZE: after a bulk load every page still lacks its hint bits and its
    // visibility-map bit, and autovacuum (whose insert threshold these tables pass) would set
    // them during the measured phase, on days that a real cluster vacuumed long ago.
    await db.query('VACUUM (ANALYZE) jobs');
    await db.query('VACUUM (ANALYZE) idempotency');
    // And a checkpoint: the load and the vacuum leave gigabytes of dirty pages, which the
    // checkpointer would otherwise write out during the measured phase (one run without it:
    // PostgreSQL 356 µs of CPU per job against 255 on an empty table, WAL 6,056 bytes against
    // 4,664), a cost of the preload, not of the table's size.
    await db.query('CHECKPOINT');
    const totalSec = (performance.now() - started) / 1000;
    log(
      `preload: ${jobs} jobs over ${PRELOAD_DAYS} days in ${totalSec.toFixed(1)} s ` +
        `(partitions ${partitionsSec.toFixed(1)} s, rows ${rowsSec.toFixed(1)} s, vacuum, analyze and checkpoint ${(totalSec - partitionsSec - rowsSec).toFixed(1)} s)`,
    );
    return { jobs, days, shardCount };
  } finally {
    await db.end();
    await pool.end();
  }
}

/** The 30 daily partitions, by the store's retention pass as of the first day: it creates
 * `daysAhead` days from "today", and keepDays is large enough that it drops nothing. */
async function createDays(pool: pg.Pool, shardCount: number, firstMs: number): Promise<void> {
  const expected = Array.from({ length: PRELOAD_DAYS }, (_, d) => partitionName(partitionDay(firstMs) + d));
  const deadline = Date.now() + RETENTION_LOCK_WAIT_MS;
  for (;;) {
    const report = await runRetention(pool, shardCount, { daysAhead: PRELOAD_DAYS, keepDays: 100_000 }, firstMs);
    if (report.ran) {
      const created = [...report.created].sort();
      if (JSON.stringify(created) !== JSON.stringify(expected)) {
        throw new Error(`preload: expected to create ${expected[0]}..${expected.at(-1)}, created ${JSON.stringify(created)} (a database that is not fresh?)`);
      }
      return;
    }
    // A node's own pass holds the retention lock; it takes milliseconds.
    if (Date.now() > deadline) throw new Error('preload: the retention lock stayed taken');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A job as a worker of the benchmark leaves it: submitted at `atMs` with a key, leased and
 * completed (no result), through the node's constructor and transition function. */
function finishedJob(options: PreloadOptions, atMs: number): Job {
  const submitted = newJob({
    shard: 0,
    epoch: 1,
    seq: 0,
    tenant: options.tenant,
    queue: options.queue,
    payload: new TextEncoder().encode(payloadText(options.payloadBytes)),
    priority: 0,
    runAtMs: atMs,
    retry: DEFAULT_RETRY_POLICY,
    idempotencyKey: 'template',
    nowMs: atMs,
  });
  const leased = transition(submitted, { kind: 'lease', epoch: 1, worker: 'preload', expiresAtMs: atMs + 5 + DEFAULT_OWNER_CONFIG.leaseMs }, atMs + 5);
  if (!leased.ok) throw new Error(`preload: lease refused (${leased.reason})`);
  const done = transition(leased.job, { kind: 'complete', token: leaseTokenOf(leased.job)!, result: null }, atMs + 10);
  if (!done.ok) throw new Error(`preload: complete refused (${done.reason})`);
  return done.job;
}

/** The statement that writes one slice of a day: $1 ids, $2 shards, $3 scheduled times (ms),
 * then the template's value of every column that is the same in every row. Each timestamp
 * column keeps its offset from scheduled_at in the template (created = scheduled, finished 10
 * ms later, ...); the key is made once per row (MATERIALIZED) and written to both tables. */
function insertSql(template: Job): { text: string; values: unknown[] } {
  const perRow: Record<string, string> = { id: 'i.id', shard: 'i.shard', idempotency_key: 'i.key', payload: `(SELECT payload FROM ${PAYLOAD_TABLE})` };
  const values: unknown[] = [];
  const expressions = INSERT_COLUMNS.map((column) => {
    if (perRow[column.name] !== undefined) return perRow[column.name]!;
    const value = column.of(template);
    if (column.type === 'ts') return value === null ? 'NULL::timestamptz' : tsFromMs(`(i.at + ${(value as number) - template.scheduledAtMs})`);
    values.push(value instanceof Uint8Array ? Buffer.from(value) : value);
    return `$${3 + values.length}::${column.type}`;
  });
  const createdAt = expressions[INSERT_COLUMNS.findIndex((c) => c.name === 'created_at')]!;
  const tenant = expressions[INSERT_COLUMNS.findIndex((c) => c.name === 'tenant')]!;
  const text = `
WITH input AS MATERIALIZED (
  SELECT u.id, u.shard, u.at, gen_random_uuid()::text AS key
  FROM unnest($1::text[], $2::int[], $3::float8[]) AS u(id, shard, at)
), keys AS (
  INSERT INTO idempotency (tenant, key, job_id, scheduled_at, created_at)
  SELECT ${tenant}, i.key, i.id, ${tsFromMs('i.at')}, ${createdAt} FROM input i
)
INSERT INTO jobs (${INSERT_COLUMNS.map((c) => c.name).join(', ')})
SELECT ${expressions.join(', ')} FROM input i`;
  return { text, values };
}
