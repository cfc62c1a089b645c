// The one fenced write path: a CommitBatch in one transaction, with one statement per kind of
// write rather than one per job (Postgres round trips, not CPU, bound a job system: a
// 1,000-row unnest statement writes about 40x faster than 1,000 single-row ones).
//
// Order inside the transaction:
// 1. lock the batch's shard rows FOR SHARE and compare epochs: a concurrent acquisition (an
//    UPDATE of those rows) waits for us, or we wait for it and then see its new epoch;
// 2. per round (below), the inserts, then the lookup of the inserts' duplicates, then the
//    updates.
//
// Same job twice in one batch (e.g. an insert and its lease, or a lease and its completion):
// a multi-row statement sees every row against the same snapshot, so two writes of one job in
// one statement would both test the old version. Writes are therefore split into rounds: the
// k-th write of a job in batch order goes to round k, and rounds run one after another, so the
// second write sees the first. A batch with no repeated job is one round.

import type pg from 'pg';
import { parseJobId } from '../../protocol/job-id.ts';
import type { Job } from '../core/job/job.ts';
import { DAY_MS, partitionDay } from '../core/retention-days.ts';
import type { CommitBatch, CommitResult, JobWrite, WriteOutcome } from '../core/store.ts';
import { binaryArray } from './pg-arrays.ts';
import { INSERT_COLUMNS, MUTABLE_COLUMNS, columnArrays, tsFromMs, unnestParams, unnestValue } from './pg-rows.ts';
import { inTransaction } from './pg-tx.ts';

type Insert = Extract<JobWrite, { kind: 'insert' }>;
type Update = Extract<JobWrite, { kind: 'update' }>;
interface Indexed<W> {
  /** Position in batch.writes, where its outcome goes. */
  index: number;
  write: W;
}

/* Every statement of a commit joins an unnest of the batch to jobs by primary key. The
 * planner, costing a young daily partition from stale statistics, may prefer hashing the
 * whole partition over a thousand index probes; that is fine for a 20k-row partition and
 * ruinous for a 20M-row one, so nested loops (one pruned index probe per row) are fixed for
 * the transaction. Sent with BEGIN in one round trip. */
const BEGIN_SQL = 'BEGIN; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off';

/* Lock and read the epochs of the batch's shards.
 * In: $1 shard ids. Out: (id, epoch) of those that exist.
 * FOR SHARE, not FOR UPDATE: batches of one owner may run concurrently and must not queue
 * behind each other; only an acquisition (which updates the row) has to wait. ORDER BY id
 * makes every transaction take these locks in the same order, so two never deadlock on them. */
export const LOCK_SHARDS_SQL = 'SELECT id, epoch FROM shards WHERE id = ANY($1::int[]) ORDER BY id FOR SHARE';

export async function commitBatch(pool: pg.Pool, batch: CommitBatch): Promise<CommitResult> {
  checkBatch(batch);
  const attempt = (tolerateExistingIds: boolean) =>
    inTransaction<CommitResult>(
      pool,
      'commit',
      async (client) => {
        const locked = await client.query<{ id: number; epoch: string }>(LOCK_SHARDS_SQL, [batch.shards.map((s) => s.shard)]);
        const epochs = new Map(locked.rows.map((row) => [row.id, Number(row.epoch)]));
        const staleShards = batch.shards.filter((s) => epochs.get(s.shard) !== s.epoch).map((s) => s.shard);
        if (staleShards.length > 0) return { commit: false, value: { status: 'stale_epoch', staleShards } };

        const outcomes: WriteOutcome[] = new Array(batch.writes.length);
        for (const round of splitIntoRounds(batch.writes)) {
          const inserts = round.filter((w): w is Indexed<Insert> => w.write.kind === 'insert');
          const updates = round.filter((w): w is Indexed<Update> => w.write.kind === 'update');
          if (inserts.length > 0) await applyInserts(client, inserts, outcomes, tolerateExistingIds);
          if (updates.length > 0) await applyUpdates(client, updates, outcomes);
        }
        return { commit: true, value: { status: 'committed', outcomes } };
      },
      BEGIN_SQL,
    );
  try {
    return await attempt(false);
  } catch (error) {
    // Ids are unique by construction, so an existing id means this batch was sent before and
    // its outcome was unknown to the sender. Only then pay for the conflict-tolerant insert.
    if (!isExistingJobId(error)) throw error;
    return attempt(true);
  }
}

function isExistingJobId(error: unknown): boolean {
  const { code, constraint } = error as { code?: unknown; constraint?: unknown };
  return code === '23505' && typeof constraint === 'string' && /^jobs_.*pkey$/.test(constraint);
}

/** Programmer errors in a batch: the owner built it wrong, so crash rather than write.
 * (Plain checks rather than assert(): this runs for every write, and messages are built only
 * on failure.) */
function checkBatch(batch: CommitBatch): void {
  const shards = new Set(batch.shards.map((s) => s.shard));
  if (shards.size !== batch.shards.length) throw new Error('commit: a shard appears twice in batch.shards');
  for (const write of batch.writes) {
    const job = write.kind === 'insert' ? write.job : write.next;
    const parts = parseJobId(job.id);
    if (parts === null || parts.scheduledAtMs !== job.scheduledAtMs || parts.shard !== job.shard) {
      throw new Error(`commit: job ${job.id} has a malformed id, or shard/scheduledAtMs that differ from it`);
    }
    if (!shards.has(job.shard)) throw new Error(`commit: job ${job.id} is in shard ${job.shard}, which the batch does not fence`);
    if (write.kind === 'update' && write.next.version !== write.expectedVersion + 1) {
      throw new Error(`commit: job ${job.id}: next.version must be expectedVersion + 1`);
    }
    if (write.kind === 'update' && write.token !== null && write.token.jobId !== job.id) {
      throw new Error(`commit: job ${job.id} written under the lease token of ${write.token.jobId}`);
    }
  }
}

function jobIdOf(write: JobWrite): string {
  return write.kind === 'insert' ? write.job.id : write.next.id;
}

function splitIntoRounds(writes: readonly JobWrite[]): Indexed<JobWrite>[][] {
  const rounds: Indexed<JobWrite>[][] = [];
  const seen = new Map<string, number>();
  writes.forEach((write, index) => {
    const id = jobIdOf(write);
    const round = seen.get(id) ?? 0;
    seen.set(id, round + 1);
    (rounds[round] ??= []).push({ index, write });
  });
  return rounds;
}

const INSERT_NAMES = INSERT_COLUMNS.map((c) => c.name).join(', ');

/* Insert new jobs, each only if its idempotency key (when it has one) is not taken yet.
 * In: one array per INSERT_COLUMNS column ($1..$n), ordered by (tenant, key).
 * Out: ids of the jobs inserted.
 * Why this shape: keys_won claims the keys first, ON CONFLICT DO NOTHING, and only jobs whose
 * claim won (or that have no key) are inserted, so a duplicate leaves no job behind. Under
 * concurrency, a claim that meets another transaction's uncommitted claim of the same key
 * waits for it: if that one commits, ours does nothing; if it rolls back, ours wins. So one
 * key yields one job whatever the interleaving. Within one statement the first row of a key
 * wins, so the earlier write of the batch wins. Claiming keys in a fixed order means two
 * transactions never wait on each other's keys in a cycle.
 * The jobs insert itself has no ON CONFLICT: a speculative insertion per row cost about a
 * sixth of the insert's server CPU, for a case (a re-sent batch) that is rare and detectable.
 * The tolerant variant adds it and runs only after the plain one met an existing id. */
const insertJobsSql = (tolerateExistingIds: boolean): string => `
WITH input AS (
  SELECT * FROM unnest(${unnestParams(INSERT_COLUMNS, 1)}) WITH ORDINALITY AS i(${INSERT_NAMES}, ord)
),
keys_won AS (
  INSERT INTO idempotency (tenant, key, job_id, scheduled_at)
  SELECT i.tenant, i.idempotency_key, i.id, ${tsFromMs('i.scheduled_at')}
  FROM input i WHERE i.idempotency_key IS NOT NULL ORDER BY i.ord
  ON CONFLICT (tenant, key) DO NOTHING
  RETURNING job_id
)
INSERT INTO jobs (${INSERT_NAMES})
SELECT ${INSERT_COLUMNS.map((c) => unnestValue(c, 'i')).join(', ')}
FROM input i
WHERE i.idempotency_key IS NULL OR i.id IN (SELECT job_id FROM keys_won)
${tolerateExistingIds ? 'ON CONFLICT (id, scheduled_at) DO NOTHING' : ''}
RETURNING id`;
const INSERT_JOBS_SQL = insertJobsSql(false);
const INSERT_JOBS_TOLERANT_SQL = insertJobsSql(true);

/* The jobs that idempotency keys already name.
 * In: $1 tenants, $2 keys (pairwise). Out: (tenant, key, job_id) of those present; the job
 * named may be gone, for a while after retention dropped its day (see applyInserts).
 * A separate statement on purpose: under READ COMMITTED it takes a fresh snapshot, so it sees
 * a key that a concurrent transaction committed while INSERT_JOBS_SQL waited for it; a read
 * inside that statement would use the statement's older snapshot and find nothing. */
const FIND_KEYS_SQL = `
SELECT k.tenant, k.key, k.job_id
FROM idempotency k JOIN unnest($1::text[], $2::text[]) AS q(tenant, key) ON k.tenant = q.tenant AND k.key = q.key`;

async function applyInserts(
  client: pg.PoolClient,
  inserts: Indexed<Insert>[],
  outcomes: WriteOutcome[],
  tolerateExistingIds: boolean,
): Promise<void> {
  const ordered = [...inserts].sort((a, b) => compareKeys(a.write.job, b.write.job));
  const jobs = ordered.map((w) => w.write.job);
  const sql = tolerateExistingIds ? INSERT_JOBS_TOLERANT_SQL : INSERT_JOBS_SQL;
  const inserted = await client.query<{ id: string }>(sql, columnArrays(INSERT_COLUMNS, jobs));
  const insertedIds = new Set(inserted.rows.map((row) => row.id));

  const keyed: Job[] = [];
  for (const { index, write } of inserts) {
    if (insertedIds.has(write.job.id)) outcomes[index] = { ok: true };
    else if (write.job.idempotencyKey === null) outcomes[index] = { ok: false, reason: 'conflict' }; // id exists
    else keyed.push(write.job);
  }
  if (keyed.length === 0) return;
  const found = await client.query<{ tenant: string; key: string; job_id: string }>(FIND_KEYS_SQL, [
    binaryArray('text', keyed.map((job) => job.tenant)),
    binaryArray('text', keyed.map((job) => job.idempotencyKey)),
  ]);
  const existing = new Map(found.rows.map((row) => [keyOf(row.tenant, row.key), row.job_id]));
  for (const { index, write } of inserts) {
    if (outcomes[index] !== undefined) continue;
    const existingJobId = existing.get(keyOf(write.job.tenant, write.job.idempotencyKey!));
    // No row: retention deleted the key (its job's day was dropped) between the two
    // statements. Nothing was written for this insert; the caller may submit it again.
    // A row whose job is gone: its day was dropped and retention has not deleted the day's
    // keys yet (pg-retention.ts deletes them after the drop, in batches). The submission is a
    // duplicate of a job that ran and expired, as it would have been the moment before.
    outcomes[index] = existingJobId === undefined ? { ok: false, reason: 'conflict' } : { ok: false, reason: 'duplicate', existingJobId };
  }
}

/** Keyed jobs by (tenant, key), then the keyless; stable, so batch order breaks ties. */
function compareKeys(a: Job, b: Job): number {
  if (a.idempotencyKey === null || b.idempotencyKey === null) {
    return Number(a.idempotencyKey === null) - Number(b.idempotencyKey === null);
  }
  return compareStrings(a.tenant, b.tenant) || compareStrings(a.idempotencyKey, b.idempotencyKey);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function keyOf(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}

const UPDATE_FENCE_COLUMNS = 'id, scheduled_at, expected_version, token_attempt, token_epoch';
const UPDATE_MUTABLE_FIRST_PARAM = 6;
const UPDATE_FIRST_DAY_PARAM = UPDATE_MUTABLE_FIRST_PARAM + MUTABLE_COLUMNS.length;

/* Apply each write's `next` if the job is still at the expected version and, for a lease-bound
 * write, still holds the write's lease token: running, under that attempt and lease epoch (a
 * lease given back leaves the job pending with both kept, and its token must no longer write).
 * In: $1 ids, $2 scheduled_at (ms, parsed from the id), $3 expected versions, $4 token
 * attempts and $5 token epochs (null for writes without a token), then one array per
 * MUTABLE_COLUMNS column, then the bounds of the days of the batch's scheduled_at (timestamptz).
 * Out: ids of the jobs updated; the others were at another version or token, or are gone.
 * scheduled_at lets the executor prune each probe to one daily partition. The bounds let the
 * planner leave out, at plan time, every partition outside them: without them an
 * UPDATE of a partitioned table plans, opens and locks every partition and all their indexes,
 * a cost that grows with the days kept (30 days preloaded: PostgreSQL's CPU per job was
 * 356-367 µs without the bounds, 251 with them). They must be parameters of their own, constants once
 * the plan is made for this statement's values; the per-row to_timestamp is not. The version
 * is set to expected + 1 here rather than taken from `next`, so the store owns the counter. */
const UPDATE_JOBS_SQL = `
UPDATE jobs AS j SET
  ${MUTABLE_COLUMNS.map((c) => `${c.name} = ${unnestValue(c, 'u')}`).join(',\n  ')},
  version = u.expected_version + 1
FROM unnest($1::text[], $2::float8[], $3::int[], $4::int[], $5::bigint[], ${unnestParams(MUTABLE_COLUMNS, UPDATE_MUTABLE_FIRST_PARAM)})
  AS u(${UPDATE_FENCE_COLUMNS}, ${MUTABLE_COLUMNS.map((c) => c.name).join(', ')})
WHERE j.id = u.id
  AND j.scheduled_at = ${tsFromMs('u.scheduled_at')}
  AND j.scheduled_at BETWEEN $${UPDATE_FIRST_DAY_PARAM}::timestamptz AND $${UPDATE_FIRST_DAY_PARAM + 1}::timestamptz
  AND j.version = u.expected_version
  AND (u.token_attempt IS NULL OR (j.status = 'running' AND j.attempts = u.token_attempt AND j.lease_epoch = u.token_epoch))
RETURNING j.id`;

async function applyUpdates(client: pg.PoolClient, updates: Indexed<Update>[], outcomes: WriteOutcome[]): Promise<void> {
  // Rows are locked in this order; a fixed order keeps concurrent batches from deadlocking.
  const ordered = [...updates].sort((a, b) => compareStrings(a.write.next.id, b.write.next.id));
  const writes = ordered.map((w) => w.write);
  const updated = await client.query<{ id: string }>(UPDATE_JOBS_SQL, [
    binaryArray('text', writes.map((w) => w.next.id)),
    binaryArray('float8', writes.map((w) => w.next.scheduledAtMs)), // equal to the id's (checkBatch)
    binaryArray('int', writes.map((w) => w.expectedVersion)),
    binaryArray('int', writes.map((w) => w.token?.attempt ?? null)),
    binaryArray('bigint', writes.map((w) => w.token?.epoch ?? null)),
    ...columnArrays(MUTABLE_COLUMNS, writes.map((w) => w.next)),
    ...scheduledBounds(writes),
  ]);
  const updatedIds = new Set(updated.rows.map((row) => row.id));
  for (const { index, write } of updates) {
    outcomes[index] = updatedIds.has(write.next.id) ? { ok: true } : { ok: false, reason: 'conflict' };
  }
}

/** The start of the day of the earliest scheduled_at of the writes and the last millisecond of
 * the day of the latest, as timestamptz text: whole daily partitions, not the batch's own span.
 * The planner estimates how many rows the bounds select from the partition's statistics, which
 * during the day are always older than the batch: a batch of the newest jobs lies past
 * everything the last ANALYZE saw, so its own span was estimated at one row, and the planner
 * then scanned the whole day once per batch or once per row instead of probing by key
 * (test/conformance/pg-stale-statistics.test.ts). A whole day's bounds select everything the
 * statistics know of, as they should. */
function scheduledBounds(writes: readonly Update[]): [string, string] {
  let first = Infinity;
  let last = -Infinity;
  for (const w of writes) {
    first = Math.min(first, w.next.scheduledAtMs);
    last = Math.max(last, w.next.scheduledAtMs);
  }
  const firstDayStartMs = partitionDay(first) * DAY_MS;
  const lastDayEndMs = (partitionDay(last) + 1) * DAY_MS - 1;
  return [new Date(firstDayStartMs).toISOString(), new Date(lastDayEndMs).toISOString()];
}
