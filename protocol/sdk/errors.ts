// The errors the SDK throws. Refusals from the node keep their protocol code (KairosError);
// the two ways a request can end without an answer have classes of their own, because a
// caller handles them differently: a timeout may be worth another try, a closed client will
// never answer. A submission whose outcome stays unknown ends in OutcomeUnknownError, which
// says what the caller can do about it. NonRetryableError, DownstreamError and JobError go the
// other way: a handler throws them.

import { ERROR_CODES, type ErrorBody, type ErrorCode } from '../errors.ts';

/** The node refused a request (an `error` frame, or one failed item of a batch). */
export class KairosError extends Error {
  override readonly name = 'KairosError';
  readonly code: ErrorCode;
  /** For `overloaded`, `rate_limited`, `unavailable`: when the node suggests trying again. For
   * `circuit_open`: when the queue's breaker probes again. */
  readonly retryAfterMs: number | undefined;
  /** Path of the offending field for `bad_request`, e.g. `job.queue`. */
  readonly field: string | undefined;

  constructor(body: ErrorBody) {
    super(body.message);
    this.code = body.code;
    this.retryAfterMs = body.retryAfterMs;
    this.field = body.field;
  }

  /** Whether sending the same request again may succeed: nothing was applied. */
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}

/** The client was closed (by `close()`, a fatal refusal, or reconnection giving up) before the
 * request was answered. */
export class ConnectionClosedError extends Error {
  override readonly name = 'ConnectionClosedError';
  /** The request had gone out on a link before the client closed, so it may have been
   * applied. False: it never left this client. */
  readonly sent: boolean;

  constructor(message: string, options?: { cause?: unknown; sent?: boolean }) {
    super(message, options);
    this.sent = options?.sent ?? false;
  }
}

/** No answer came within the request timeout. If the request had been sent (`sent`), its
 * outcome is unknown; if not (no link was up, or it waited for room under the connection's
 * `inflightMax`), nothing was applied. */
export class RequestTimeoutError extends Error {
  override readonly name = 'RequestTimeoutError';
  readonly timeoutMs: number;
  readonly sent: boolean;

  constructor(request: string, timeoutMs: number, sent: boolean) {
    super(`no answer to ${request} within ${timeoutMs} ms${sent ? '' : '; it was never sent'}`);
    this.timeoutMs = timeoutMs;
    this.sent = sent;
  }
}

/** A submission was tried (until its retry deadline, unless retry is off) and it is still
 * unknown whether it was committed: the node answered `internal`, or no answer came to a copy
 * that had been sent. The job may or may not exist. Submitting again under `idempotencyKey` settles it: the job is
 * created if it does not exist, and returned (`duplicate: true`) if it does. */
export class OutcomeUnknownError extends Error {
  override readonly name = 'OutcomeUnknownError';
  /** The key the submission carried: the caller's own, or the one the SDK generated. */
  readonly idempotencyKey: string;

  constructor(idempotencyKey: string, cause: Error) {
    super(`the job may or may not exist (${cause.message}); submit it again under idempotency key ${idempotencyKey} to find out`, { cause });
    this.idempotencyKey = idempotencyKey;
  }
}

/** Whether a request that ended in `error` may have been applied all the same. */
export function mayHaveApplied(error: unknown): boolean {
  if (error instanceof KairosError) return error.code === 'internal';
  return (error instanceof RequestTimeoutError || error instanceof ConnectionClosedError) && error.sent;
}

/** Thrown by a handler: the attempt failed and must not be retried (the job goes to the
 * dead-letter queue at once). Any other exception fails the attempt as retryable. */
export class NonRetryableError extends Error {
  override readonly name = 'NonRetryableError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Thrown by a handler: the attempt failed because a service the job depends on failed (a
 * timeout, a 503). It is retried like any failure, and it counts towards the queue's circuit
 * breaker (`fail` with `downstream: true`). */
export class DownstreamError extends Error {
  override readonly name = 'DownstreamError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Thrown by a handler: the attempt failed for a reason of the job's own (its input, say), which
 * says nothing about the services it calls. It is retried like any failure, but does not count
 * towards the queue's circuit breaker (`fail` with `downstream: false`). Throw
 * NonRetryableError instead when retrying cannot help. */
export class JobError extends Error {
  override readonly name = 'JobError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
