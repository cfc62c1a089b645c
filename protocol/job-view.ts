// A job as clients see it. It leaves out what is internal to the cluster (shard, tenant, lease
// bookkeeping, the row version) and names instants `…At` (ms since the Unix epoch).

import type { JobState } from './job-rules.ts';
import { ERROR_CHARS_MAX, IDEMPOTENCY_KEY_CHARS_MAX, JOB_STATES, NAME_CHARS_MAX, PAYLOAD_BYTES_MAX, PRIORITY_MAX, PRIORITY_MIN, RESULT_BYTES_MAX } from './job-rules.ts';
import { JOB_ID_CHARS_MAX, parseJobId } from './job-id.ts';
import { TIME_MS_MAX } from './limits.ts';
import { bin, int, nullable, obj, oneOf, str, type Schema } from './schema.ts';

export interface JobView {
  id: string;
  queue: string;
  state: JobState;
  priority: number;
  /** Not run before this instant. */
  runAt: number;
  /** When the job was accepted (it is also encoded in the id). */
  scheduledAt: number;
  /** Attempts started so far. */
  attempts: number;
  attemptsMax: number;
  idempotencyKey: string | null;
  /** The error of the last failed attempt. */
  lastError: string | null;
  /** Set when the job succeeded with a result. */
  result: Uint8Array | null;
  payload: Uint8Array;
  createdAt: number;
  updatedAt: number;
  /** When the job reached a terminal state; null while it has not. */
  finishedAt: number | null;
}


// Field schemas shared by every family.
export const jobIdSchema = str(JOB_ID_CHARS_MAX, {
  minChars: 1,
  format: { name: 'a job id', test: (id) => parseJobId(id) !== null },
});
export const queueSchema = str(NAME_CHARS_MAX, { minChars: 1 });
export const idempotencyKeySchema = str(IDEMPOTENCY_KEY_CHARS_MAX, { minChars: 1 });
export const prioritySchema = int(PRIORITY_MIN, PRIORITY_MAX);
export const timeSchema = int(0, TIME_MS_MAX);
export const countSchema = int(0, Number.MAX_SAFE_INTEGER);
export const errorTextSchema = str(ERROR_CHARS_MAX);
export const payloadSchema = bin(PAYLOAD_BYTES_MAX);
export const resultSchema = bin(RESULT_BYTES_MAX);

export const jobViewSchema: Schema<JobView> = obj({
  id: jobIdSchema,
  queue: queueSchema,
  state: oneOf(JOB_STATES),
  priority: prioritySchema,
  runAt: timeSchema,
  scheduledAt: timeSchema,
  attempts: countSchema,
  attemptsMax: countSchema,
  idempotencyKey: nullable(idempotencyKeySchema),
  lastError: nullable(errorTextSchema),
  result: nullable(resultSchema),
  payload: payloadSchema,
  createdAt: timeSchema,
  updatedAt: timeSchema,
  finishedAt: nullable(timeSchema),
});
