// Automatic retry. Refusals that promise nothing was applied (`overloaded`, `rate_limited`,
// `unavailable`) are retried for every request. `circuit_open` applied nothing either, but is
// never retried here: the queue was set to refuse submissions while its breaker is open, so
// the caller hears of it at once (with `retryAfterMs`) and decides. Requests that are safe to send twice (see
// REPEATABLE) are also retried when their outcome is unknown (`internal`) or no answer came in
// time. Each retry waits `retryAfterMs` when the node says, backs off otherwise, and the last
// answer is given up once the next try would land past the deadline.

import { backoffDelayMs, type BackoffPolicy } from './backoff.ts';
import type { Connection } from './connection.ts';
import { KairosError, mayHaveApplied, RequestTimeoutError } from './errors.ts';
import type { Answerer, ReplyTo, Request } from './messages.ts';
import type { SdkRuntime } from './runtime.ts';

export interface AutoRetryPolicy extends BackoffPolicy {
  /** How long after the first try the last one may start. */
  deadlineMs: number;
}

/** Requests a second copy of which changes nothing the first did not. Submissions: the client
 * gives every job an idempotency key, so a copy maps to the job an earlier one created.
 * Worker verdicts (complete, fail, return): they carry the lease token, and the node refuses a
 * copy of a verdict already recorded with `stale_lease`. After an unknown outcome that refusal
 * is itself ambiguous (recorded by the earlier copy, or the lease was lost), so what the
 * caller hears is the unknown outcome, not the refusal (see requestRetrying); an `ack` is
 * certain either way. Retrying is the honest choice: giving up on `internal` would leave an
 * outcome that may well be recordable unrecorded, and the job would run again after its lease
 * ran out. */
const REPEATABLE: ReadonlySet<Request['t']> = new Set(['submit', 'submit_batch', 'complete', 'fail', 'return']);

/** Sends `request` until it is answered with anything but a refusal worth retrying. `resent`
 * in the answer is true when an earlier copy may have been applied: a try was re-sent after a
 * dropped link, or retried after an unknown outcome. When some try's outcome was unknown and
 * the last one is an error too, the answer is that unknown outcome (mayHaveApplied holds for
 * it), not a later refusal that only speaks for its own try. */
export function requestRetrying<R extends Request>(
  conn: Connection,
  runtime: SdkRuntime,
  policy: AutoRetryPolicy | null,
  request: R,
  answerer: Answerer<ReplyTo<R>>,
  deadlineMs?: number,
): void {
  if (policy === null) return conn.request(request, answerer);
  const retrying = new RetryingRequest(conn, runtime, policy, request, answerer, deadlineMs ?? runtime.clock.monotonicMs() + policy.deadlineMs);
  conn.request(request, retrying);
}

class RetryingRequest<R extends Request> implements Answerer<ReplyTo<R>> {
  private tries = 0;
  private resentAny = false;
  /** The latest outcome that may have been applied, if any try had one. */
  private unknown: Error | null = null;
  private readonly repeatable: boolean;

  constructor(
    private readonly conn: Connection,
    private readonly runtime: SdkRuntime,
    private readonly policy: AutoRetryPolicy,
    private readonly request: R,
    private readonly answerer: Answerer<ReplyTo<R>>,
    private readonly deadlineMs: number,
  ) {
    this.repeatable = REPEATABLE.has(request.t);
  }

  answered(outcome: ReplyTo<R> | Error, resent: boolean): void {
    this.resentAny ||= resent;
    if (mayHaveApplied(outcome)) this.unknown = outcome as Error;
    const delayMs = retryDelayMs(outcome, this.policy, this.tries, this.runtime, this.repeatable);
    if (delayMs !== null && this.runtime.clock.monotonicMs() + delayMs <= this.deadlineMs) {
      this.tries++;
      this.resentAny ||= this.unknown !== null;
      this.runtime.timers.setTimer(delayMs, () => this.conn.request(this.request, this));
      return;
    }
    this.answerer.answered(this.unknown !== null && outcome instanceof Error ? this.unknown : outcome, this.resentAny);
  }
}

/** How long to wait before retrying after `outcome`; null when it is not worth retrying.
 * `repeatable`: the request may be sent again although an earlier copy may have been applied. */
export function retryDelayMs(outcome: unknown, policy: BackoffPolicy, tries: number, runtime: SdkRuntime, repeatable: boolean): number | null {
  if (outcome instanceof KairosError) {
    if (outcome.code === 'circuit_open') return null;
    if (!outcome.retryable && !(repeatable && outcome.code === 'internal')) return null;
    return outcome.retryAfterMs ?? backoffDelayMs(policy, tries, runtime.random);
  }
  // No answer in time: a copy may be lost, slow or applied, all of which a repeatable request
  // tolerates (and one that never left was not applied at all).
  if (repeatable && outcome instanceof RequestTimeoutError) return backoffDelayMs(policy, tries, runtime.random);
  return null;
}
