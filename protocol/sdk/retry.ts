// Automatic retry of refusals that promise nothing was applied (`overloaded`, `rate_limited`,
// `unavailable`): wait `retryAfterMs` when the node says, back off otherwise, and give up
// with the last refusal once the next try would land past the deadline.

import { backoffDelayMs, type BackoffPolicy } from './backoff.ts';
import type { Connection } from './connection.ts';
import { KairosError } from './errors.ts';
import type { Answerer, ReplyTo, Request } from './messages.ts';
import type { SdkRuntime } from './runtime.ts';

export interface AutoRetryPolicy extends BackoffPolicy {
  /** How long after the first try the last one may start. */
  deadlineMs: number;
}

/** Sends `request` until it is answered with anything but a retryable refusal. `resent` in the
 * answer is true when any try was re-sent after a dropped link. */
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

  constructor(
    private readonly conn: Connection,
    private readonly runtime: SdkRuntime,
    private readonly policy: AutoRetryPolicy,
    private readonly request: R,
    private readonly answerer: Answerer<ReplyTo<R>>,
    private readonly deadlineMs: number,
  ) {}

  answered(outcome: ReplyTo<R> | Error, resent: boolean): void {
    this.resentAny ||= resent;
    const delayMs = retryDelayMs(outcome, this.policy, this.tries, this.runtime);
    if (delayMs !== null && this.runtime.clock.monotonicMs() + delayMs <= this.deadlineMs) {
      this.tries++;
      this.runtime.timers.setTimer(delayMs, () => this.conn.request(this.request, this));
      return;
    }
    this.answerer.answered(outcome, this.resentAny);
  }
}

/** How long to wait before retrying after `outcome`; null when it is not worth retrying. */
export function retryDelayMs(outcome: unknown, policy: BackoffPolicy, tries: number, runtime: SdkRuntime): number | null {
  if (!(outcome instanceof KairosError) || !outcome.retryable) return null;
  return outcome.retryAfterMs ?? backoffDelayMs(policy, tries, runtime.random);
}
