// Row ↔ Job mapping, in one place: which column holds which Job field, the select list every
// query reads, the conversion of a row to a Job, and the per-column arrays that the multi-row
// writes unnest.
//
// Timestamps travel as float8 milliseconds since the Unix epoch in both directions and are
// converted in SQL (`to_timestamp(ms / 1000)`, `extract(epoch ...) * 1000`): exact for whole
// milliseconds (a timestamptz holds microseconds), cheaper to parse than Date strings, and free
// of the client's time zone.

import type { Job } from '../core/job/job.ts';
import type { JobState } from '../../protocol/job-rules.ts';
import { binaryArray } from './pg-arrays.ts';

/** SQL for float8 milliseconds (a parameter or an unnest column) as a timestamptz. */
export const tsFromMs = (expression: string): string => `to_timestamp(${expression} / 1000)`;
/** SQL for a timestamptz column as float8 milliseconds. */
export const msFromTs = (column: string): string => `(extract(epoch FROM ${column}) * 1000)::float8`;

type ColumnType = 'text' | 'int' | 'bigint' | 'float8' | 'bytea' | 'ts';

interface Column {
  name: string;
  /** 'ts' is a timestamptz column sent and read as float8 milliseconds. */
  type: ColumnType;
  of(job: Job): string | number | Uint8Array | null;
}

const column = (name: string, type: ColumnType, of: Column['of']): Column => ({ name, type, of });

/** Set when the job is created, never changed by a write. */
export const IDENTITY_COLUMNS: readonly Column[] = [
  column('id', 'text', (j) => j.id),
  column('shard', 'int', (j) => j.shard),
  column('tenant', 'text', (j) => j.tenant),
  column('queue', 'text', (j) => j.queue),
  column('payload', 'bytea', (j) => j.payload),
  column('priority', 'int', (j) => j.priority),
  column('retry_backoff_base_ms', 'int', (j) => j.retry.backoffBaseMs),
  column('retry_backoff_max_ms', 'int', (j) => j.retry.backoffMaxMs),
  column('retry_jitter', 'float8', (j) => j.retry.jitter),
  column('scheduled_at', 'ts', (j) => j.scheduledAtMs),
  column('idempotency_key', 'text', (j) => j.idempotencyKey),
  column('created_at', 'ts', (j) => j.createdAtMs),
];

/** What an update sets from `next`: every field some transition (transition.ts) changes, and
 * no other, since each is one more array for the client to build and the server to unnest per
 * updated row. `version` is absent: the store sets expected + 1. */
export const MUTABLE_COLUMNS: readonly Column[] = [
  column('status', 'text', (j) => j.state),
  column('run_at', 'ts', (j) => j.runAtMs),
  column('attempts', 'int', (j) => j.attempts),
  // Release and requeue raise it.
  column('retry_attempts_max', 'int', (j) => j.retry.attemptsMax),
  column('lease_epoch', 'bigint', (j) => j.leaseEpoch),
  column('lease_expires_at', 'ts', (j) => j.leaseExpiresAtMs),
  column('lease_worker', 'text', (j) => j.leaseWorker),
  column('last_error', 'text', (j) => j.lastError),
  column('result', 'bytea', (j) => j.result),
  column('updated_at', 'ts', (j) => j.updatedAtMs),
  column('finished_at', 'ts', (j) => j.finishedAtMs),
];

export const INSERT_COLUMNS: readonly Column[] = [
  ...IDENTITY_COLUMNS,
  ...MUTABLE_COLUMNS,
  column('version', 'int', (j) => j.version),
];

/** The select list jobFromRow reads: every column, timestamps as milliseconds. */
export const JOB_SELECT = INSERT_COLUMNS.map((c) => (c.type === 'ts' ? `${msFromTs(c.name)} AS ${c.name}` : c.name)).join(', ');

/** `$n::type[]` for each column, numbered from `first`, for `unnest(...)`. */
export function unnestParams(columns: readonly Column[], first: number): string {
  return columns.map((c, i) => `$${first + i}::${c.type === 'ts' ? 'float8' : c.type}[]`).join(', ');
}

/** The value an unnest column contributes to a write, converting timestamps. */
export function unnestValue(c: Column, alias: string): string {
  return c.type === 'ts' ? tsFromMs(`${alias}.${c.name}`) : `${alias}.${c.name}`;
}

/** One binary array parameter per column, in column order, for the given jobs. */
export function columnArrays(columns: readonly Column[], jobs: readonly Job[]): Buffer[] {
  return columns.map((c) => binaryArray(c.type === 'ts' ? 'float8' : c.type, jobs.map((job) => c.of(job))));
}

export interface JobRow {
  id: string;
  shard: number;
  tenant: string;
  queue: string;
  payload: Buffer;
  priority: number;
  run_at: number;
  scheduled_at: number;
  status: JobState;
  attempts: number;
  retry_attempts_max: number;
  retry_backoff_base_ms: number;
  retry_backoff_max_ms: number;
  retry_jitter: number;
  idempotency_key: string | null;
  /** bigint: node-postgres returns it as a string. */
  lease_epoch: string | null;
  lease_expires_at: number | null;
  lease_worker: string | null;
  version: number;
  last_error: string | null;
  result: Buffer | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export function jobFromRow(row: JobRow): Job {
  return {
    id: row.id,
    shard: row.shard,
    tenant: row.tenant,
    queue: row.queue,
    payload: plainBytes(row.payload),
    priority: row.priority,
    runAtMs: row.run_at,
    scheduledAtMs: row.scheduled_at,
    state: row.status,
    attempts: row.attempts,
    retry: {
      attemptsMax: row.retry_attempts_max,
      backoffBaseMs: row.retry_backoff_base_ms,
      backoffMaxMs: row.retry_backoff_max_ms,
      jitter: row.retry_jitter,
    },
    idempotencyKey: row.idempotency_key,
    leaseEpoch: row.lease_epoch === null ? null : Number(row.lease_epoch),
    leaseWorker: row.lease_worker,
    leaseExpiresAtMs: row.lease_expires_at,
    version: row.version,
    lastError: row.last_error,
    result: row.result === null ? null : plainBytes(row.result),
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
    finishedAtMs: row.finished_at,
  };
}

/** A copy as a plain Uint8Array: callers compare and serialise Jobs without meeting pg's
 * Buffers, which may be views into a shared pool slab. */
export function plainBytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer);
}
