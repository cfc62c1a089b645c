// submitMany: cutting a list of jobs into `submit_batch` frames and settling every job.
// Batches hold at most min(batchMax, inflightMax) jobs (a larger one the node would refuse
// whole) and stay within the frame limit by an upper bound of each job's encoded size
// (encoding twice to measure would cost more than the slack). All batches are handed to the
// connection at once, which sends them as the node's `inflightMax` allows. A job refused with
// a retryable code, or whose outcome is unknown (`internal`), is tried again under the same
// idempotency key, in a smaller batch of what is left, until the retry deadline; one still
// unknown then is reported as OutcomeUnknownError.

import type { SubmitSpec, SubmittedBatch, Welcome } from '../client-messages.ts';
import type { ConnectionClosedError, RequestTimeoutError } from './errors.ts';
import { KairosError, mayHaveApplied, OutcomeUnknownError } from './errors.ts';
import { retryDelayMs, type AutoRetryPolicy } from './retry.ts';
import type { SdkRuntime } from './runtime.ts';

export interface SubmitResult {
  jobId: string;
  /** True when the caller's own idempotency key matched an existing job. Always false for a
   * job submitted without a key: the generated key can only match this call's own re-send. */
  duplicate: boolean;
}

/** One job's outcome in `submitMany`. */
export type SubmitManyResult = SubmitResult | KairosError | OutcomeUnknownError | RequestTimeoutError | ConnectionClosedError;

export interface SubmitManyDeps {
  limits: Welcome['limits'];
  runtime: SdkRuntime;
  retry: AutoRetryPolicy | null;
  /** Sends one `submit_batch`, retrying whole-frame refusals and unknown outcomes until
   * `deadlineMs`; a rejection for which mayHaveApplied holds is an unknown outcome. */
  submitBatch(jobs: SubmitSpec[], deadlineMs: number): Promise<SubmittedBatch>;
}

/** Room for a spec's keys, numbers, retry policy and headers: its fixed fields encode to well
 * under 200 bytes. */
const SPEC_OVERHEAD_BYTES = 256;
/** Room for the frame's own map, `v`, `t`, `rid` and the array header. */
const FRAME_OVERHEAD_BYTES = 64;

export async function submitMany(specs: readonly SubmitSpec[], deps: SubmitManyDeps): Promise<SubmitManyResult[]> {
  const { runtime } = deps;
  // Every job gets a key, so a batch re-sent after a dropped link creates nothing twice.
  const generated = specs.map((spec) => spec.idempotencyKey === undefined);
  const keyed = specs.map((spec, i) => (generated[i] ? { ...spec, idempotencyKey: runtime.uuid(), anyShard: true } : spec));
  const results = new Array<SubmitManyResult>(specs.length);
  const deadlineMs = runtime.clock.monotonicMs() + (deps.retry?.deadlineMs ?? 0);
  const { batchMax, inflightMax, frameBytesMax } = deps.limits;
  const batches = batchIndices(keyed, Math.min(batchMax, inflightMax), frameBytesMax);
  await Promise.all(batches.map((batch) => settleBatch(keyed, generated, batch, results, deadlineMs, deps)));
  return results;
}

/** Indices of `specs`, grouped into batches in order. */
export function batchIndices(specs: readonly SubmitSpec[], batchMax: number, frameBytesMax: number): number[][] {
  const budget = frameBytesMax - FRAME_OVERHEAD_BYTES;
  const batches: number[][] = [];
  let batch: number[] = [];
  let bytes = 0;
  for (let i = 0; i < specs.length; i++) {
    const size = specBytesMax(specs[i]!);
    if (batch.length > 0 && (batch.length === batchMax || bytes + size > budget)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(i);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** An upper bound on the bytes `spec` adds to a frame. A string's UTF-8 form is at most three
 * bytes per UTF-16 unit. */
function specBytesMax(spec: SubmitSpec): number {
  return spec.payload.byteLength + 3 * (spec.queue.length + (spec.idempotencyKey?.length ?? 0)) + SPEC_OVERHEAD_BYTES;
}

/** Sends one batch until every job in it has its result. */
async function settleBatch(
  specs: readonly SubmitSpec[],
  generated: readonly boolean[],
  batch: number[],
  results: SubmitManyResult[],
  deadlineMs: number,
  deps: SubmitManyDeps,
): Promise<void> {
  const { runtime, retry } = deps;
  /** Jobs a try of which may have been applied, with that try's outcome. */
  const unknown = new Map<number, Error>();
  /** A job's final error: unknown if any try may have been applied, whatever the last said. */
  const fail = (i: number, error: Error): void => {
    const cause = mayHaveApplied(error) ? error : unknown.get(i);
    results[i] = cause === undefined ? (error as SubmitManyResult) : new OutcomeUnknownError(specs[i]!.idempotencyKey!, cause);
  };
  for (let tries = 0; batch.length > 0; tries++) {
    let reply: SubmittedBatch;
    try {
      reply = await deps.submitBatch(batch.map((i) => specs[i]!), deadlineMs);
    } catch (error) {
      const culprit = culpritOf(error, batch.length);
      if (culprit === null) {
        for (const i of batch) fail(i, error as Error);
        return;
      }
      // One invalid job refuses the whole frame; the others were not looked at.
      fail(batch[culprit.index]!, culprit.error);
      batch = batch.filter((_, k) => k !== culprit.index);
      continue;
    }
    if (reply.results.length !== batch.length) {
      const error = new KairosError({ code: 'internal', message: `the node answered ${batch.length} jobs with ${reply.results.length} results` });
      for (const i of batch) fail(i, error);
      return;
    }
    const again: number[] = [];
    let waitMs = 0;
    for (let k = 0; k < batch.length; k++) {
      const i = batch[k]!;
      const result = reply.results[k]!;
      if ('jobId' in result) {
        results[i] = { jobId: result.jobId, duplicate: !generated[i] && result.duplicate };
        continue;
      }
      const error = new KairosError(result.error);
      if (mayHaveApplied(error)) unknown.set(i, error);
      fail(i, error);
      const delayMs = retry === null ? null : retryDelayMs(error, retry, tries, runtime, true);
      if (delayMs === null) continue;
      again.push(i);
      waitMs = Math.max(waitMs, delayMs);
    }
    if (again.length === 0 || runtime.clock.monotonicMs() + waitMs > deadlineMs) return;
    await new Promise<void>((resolve) => runtime.timers.setTimer(waitMs, resolve));
    batch = again;
  }
}

/** The job a frame refusal names (`jobs[3].queue`), with the error as that job's own. */
function culpritOf(error: unknown, batchLength: number): { index: number; error: KairosError } | null {
  if (!(error instanceof KairosError) || error.code !== 'bad_request' || error.field === undefined) return null;
  const match = /^jobs\[(\d+)\](?:\.(.*))?$/.exec(error.field);
  if (match === null) return null;
  const index = Number(match[1]);
  if (index >= batchLength) return null;
  const field = match[2];
  return { index, error: new KairosError({ code: error.code, message: error.message, ...(field === undefined ? {} : { field }) }) };
}
