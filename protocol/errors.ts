// Error codes of the protocol. Every refusal a node sends is an `error` frame (or, inside a
// batch result, an `ErrorBody`) carrying one of these codes; the receiver acts on the code,
// the message is for people.

/** Each code with whether the same request may be sent again as is. A client retries only
 * retryable codes, after `retryAfterMs` when given, with backoff otherwise. */
export const ERROR_CODES = {
  /** A field is missing, has the wrong type or is out of range; `field` names it. The
   * request was not applied. */
  bad_request: { retryable: false },
  /** `hello` offered no version the node speaks, or a frame carried a version other than the
   * negotiated one. The node closes the connection after sending it. */
  unsupported_version: { retryable: false },
  /** The frame is larger than `frameBytesMax`. It was not decoded at all. */
  frame_too_large: { retryable: false },
  /** The bytes are not one msgpack map within the codec's limits: truncated, trailing bytes,
   * an extension type, a non-string or forbidden key (`__proto__`, `constructor`,
   * `prototype`), a duplicate key, invalid UTF-8, nesting too deep, a collection too long,
   * too many values. */
  malformed: { retryable: false },
  /** `t` names no message this receiver accepts from this sender. */
  unknown_type: { retryable: false },
  /** The connection's credentials do not allow this request (or any: then the node closes). */
  unauthorized: { retryable: false },
  /** No job with this id (for this tenant). Ids of other tenants are reported the same way. */
  not_found: { retryable: false },
  /** The request is legal but not in the job's current state, e.g. cancelling a finished job
   * or requeueing one that is not dead. */
  illegal_state: { retryable: false },
  /** The shard owner's queue is full. Nothing was applied; retry after `retryAfterMs`. */
  overloaded: { retryable: true },
  /** The tenant exceeded its rate. Nothing was applied; retry after `retryAfterMs`. */
  rate_limited: { retryable: true },
  /** The shard has no reachable owner right now (hand-off, crash, partition). Nothing was
   * applied; retry with backoff. */
  unavailable: { retryable: true },
  /** A submission refused because its queue's circuit breaker is open and the queue is set to
   * refuse while open (`refuseWhenOpen`). It left no job; the breaker probes again after
   * `retryAfterMs`. The SDK does not retry it on its own: refusing was asked for. */
  circuit_open: { retryable: true },
  /** The lease token is no longer current: the lease expired and was re-granted, the job was
   * cancelled, or the shard changed owner and the token's epoch is gone. The worker must drop
   * the attempt: its outcome will not be recorded. */
  stale_lease: { retryable: false },
  /** The node failed in a way it did not expect. The outcome is unknown: a submit may or may
   * not have been applied, so retry it only with an idempotency key. */
  internal: { retryable: false },
} as const satisfies Record<string, { retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export const ERROR_CODE_NAMES = Object.keys(ERROR_CODES) as ErrorCode[];

/** What is wrong, as carried by an `error` frame and by failed batch items. */
export interface ErrorBody {
  code: ErrorCode;
  /** For people; never parse it. */
  message: string;
  /** Path of the offending field, e.g. `jobs[3].priority`, when one field is to blame. */
  field?: string;
  /** For `overloaded`, `rate_limited` and `circuit_open`: when to try again. */
  retryAfterMs?: number;
}

/** An `ErrorBody` as an exception. The codec throws it inside its reader and turns it back into
 * a value at its boundary; the SDK will throw it for an `error` reply. Nothing decoding frames
 * from outside lets it escape. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly body: ErrorBody;

  constructor(body: ErrorBody) {
    super(body.message);
    this.body = body;
  }
}
