// The errors the SDK throws. Refusals from the node keep their protocol code (KairosError);
// the two ways a request can end without an answer have classes of their own, because a
// caller handles them differently: a timeout leaves the outcome unknown, a closed client
// means no answer will ever come. NonRetryableError goes the other way: a handler throws it.

import { ERROR_CODES, type ErrorBody, type ErrorCode } from '../errors.ts';

/** The node refused a request (an `error` frame, or one failed item of a batch). */
export class KairosError extends Error {
  override readonly name = 'KairosError';
  readonly code: ErrorCode;
  /** For `overloaded`, `rate_limited`, `unavailable`: when the node suggests trying again. */
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

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No answer came within the request timeout. The outcome is unknown: a submission may have
 * been committed. Submitting again with the same idempotency key is safe. */
export class RequestTimeoutError extends Error {
  override readonly name = 'RequestTimeoutError';
  readonly timeoutMs: number;

  constructor(request: string, timeoutMs: number) {
    super(`no answer to ${request} within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** Thrown by a handler: the attempt failed and must not be retried (the job goes to the
 * dead-letter queue at once). Any other exception fails the attempt as retryable. */
export class NonRetryableError extends Error {
  override readonly name = 'NonRetryableError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
