// A worker for one queue: it announces credit, runs a handler per lease, heartbeats, reports
// each outcome, and credits the slot again once the node has acknowledged it.
//
// Why it is shaped this way:
// - Credits freed in one turn go out as one `credit` frame: the node dispatches per frame,
//   and at tens of thousands of jobs a second a frame per job is the bottleneck.
// - One timer per worker heartbeats every lease that is due and is re-armed for the
//   earliest next deadline; a timer per lease would cost more than most short jobs.
// - Outcomes (complete, fail, return) are re-sent after a reconnect. The token fences them:
//   a second copy of an outcome already committed is refused with `stale_lease`, which is
//   then reported to onError and never thrown at a handler.
// - An outcome answered `internal`, or not answered in time, is sent again under the same
//   token until the retry deadline (retry.ts): an `ack` then records it for certain. If the
//   copies keep failing, or one is refused with `stale_lease` (already recorded by the
//   unknown one, or the lease was lost: the node cannot say which), onError gets the unknown
//   outcome itself, not the refusal, because the verdict may or may not have been recorded.
//   Nothing is lost either way: an attempt not recorded runs again once its lease lapses.
// - After a reconnect the node has forgotten this worker's credit (credit is per connection),
//   so the worker announces what is free again, and heartbeats every lease at once because
//   revocations sent while the link was down were lost.

import { ERROR_CHARS_MAX } from '../job-rules.ts';
import { CREDIT_SLOTS_MAX, PROGRESS_CHARS_MAX } from '../limits.ts';
import { clip } from '../msgpack-read.ts';
import type { Ack, Fail, Lease, Revoke } from '../worker-messages.ts';
import { Attempt, type AttemptOwner, type JobContext } from './attempt.ts';
import type { Connection } from './connection.ts';
import { DownstreamError, JobError, KairosError, NonRetryableError } from './errors.ts';
import { requestRetrying, type AutoRetryPolicy } from './retry.ts';
import type { SdkRuntime } from './runtime.ts';

/** Resolve with the job's result (or nothing); throw to fail the attempt. */
export type Handler = (ctx: JobContext) => Promise<Uint8Array | undefined | void> | Uint8Array | undefined | void;

export interface WorkerOptions {
  /** Handlers running at once; default 1. */
  concurrency?: number;
  /** How long `close()` lets running handlers finish before it aborts them and returns their
   * leases; default 10 s. */
  shutdownDeadlineMs?: number;
  /** Problems that concern no caller: an outcome the node did not record, a lease lost. */
  onError?: (error: Error, jobId: string | null) => void;
}

export interface Worker {
  readonly queue: string;
  /** Handlers running now. */
  readonly running: number;
  /** Stops taking leases, lets running handlers finish within the shutdown deadline, returns
   * the leases of those that do not, and resolves when the node has acknowledged every
   * outcome. */
  close(): Promise<void>;
}

/** What a worker needs from its client. */
export interface WorkerHost {
  readonly conn: Connection;
  readonly runtime: SdkRuntime;
  readonly retry: AutoRetryPolicy | null;
  resultBytesMax(): number;
  /** The worker has closed; leases for its queue are returned from now on. */
  detach(worker: QueueWorker): void;
  /** Gives back a lease no worker wants. */
  returnLease(lease: Lease): void;
}

export class QueueWorker implements Worker, AttemptOwner {
  private runningCount = 0;
  /** Leases held: handler running, or outcome not yet acknowledged. Keyed by job id. */
  private readonly held = new Map<string, Attempt>();
  private readonly concurrency: number;
  private readonly shutdownDeadlineMs: number;
  private readonly onError: (error: Error, jobId: string | null) => void;
  private creditOwed = 0;
  private creditFlushQueued = false;
  private draining = false;
  private closing: Promise<void> | null = null;
  private heartbeatTimer: unknown = null;
  private heartbeatAtMs = Infinity;
  /** Woken whenever a handler ends or a lease is released, while close() waits. */
  private wake: (() => void) | null = null;

  constructor(
    private readonly host: WorkerHost,
    readonly queue: string,
    private readonly handler: Handler,
    options: WorkerOptions,
    warn: (message: string) => void,
  ) {
    this.concurrency = options.concurrency ?? 1;
    this.shutdownDeadlineMs = options.shutdownDeadlineMs ?? 10_000;
    this.onError = options.onError ?? ((error, jobId) => warn(`worker ${queue}${jobId === null ? '' : ` job ${jobId}`}: ${error.message}`));
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1 || this.concurrency > CREDIT_SLOTS_MAX) {
      throw new RangeError(`concurrency must be an integer in [1, ${CREDIT_SLOTS_MAX}]`);
    }
    this.host.conn.send({ t: 'credit', queue, slots: this.concurrency });
  }

  get running(): number {
    return this.runningCount;
  }

  // ---- From the node -------------------------------------------------------------------

  leased(lease: Lease): void {
    // More leases than slots would be a node bug; running them would break the promise
    // `concurrency` makes to the handler's author.
    if (this.draining || this.held.size >= this.concurrency) return this.host.returnLease(lease);
    const nowMs = this.host.runtime.clock.monotonicMs();
    const attempt = new Attempt(this, lease, nowMs);
    this.held.set(attempt.jobId, attempt);
    this.runningCount++;
    this.armHeartbeat(attempt.heartbeatDueMs, nowMs);
    let result: ReturnType<Handler>;
    try {
      result = this.handler(attempt);
    } catch (error) {
      return this.handlerEnded(attempt, error, true);
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.handlerEnded(attempt, value, false),
        (error: unknown) => this.handlerEnded(attempt, error, true),
      );
    } else {
      this.handlerEnded(attempt, result, false);
    }
  }

  /** Returns whether the revoked lease was this worker's. */
  revoked(revoke: Revoke): boolean {
    const attempt = this.held.get(revoke.token.jobId);
    if (attempt === undefined || attempt.attempt !== revoke.token.attempt || attempt.token.epoch !== revoke.token.epoch) return false;
    const cancelled = revoke.reason === 'cancelled';
    const reason = new KairosError({ code: 'stale_lease', message: cancelled ? 'the job was cancelled' : 'the lease is no longer held (revoked by the node)' });
    this.leaseLost(attempt, reason, cancelled ? null : reason);
    return true;
  }

  /** A new link was welcomed. */
  reconnected(): void {
    this.creditOwed = 0;
    const free = this.concurrency - this.held.size;
    if (free > 0 && !this.draining) this.host.conn.send({ t: 'credit', queue: this.queue, slots: free });
    const nowMs = this.host.runtime.clock.monotonicMs();
    for (const attempt of this.held.values()) attempt.heartbeatDueMs = nowMs;
    this.armHeartbeat(nowMs, nowMs);
  }

  /** The client failed for good: no outcome can be reported, so handlers may as well stop. */
  connectionFailed(error: Error): void {
    for (const attempt of this.held.values()) this.leaseLost(attempt, error, null);
    this.held.clear();
    this.poke();
  }

  // ---- Outcomes ------------------------------------------------------------------------

  private handlerEnded(attempt: Attempt, value: unknown, threw: boolean): void {
    this.runningCount--;
    this.poke();
    if (attempt.returned) return;
    if (attempt.lost) {
      // The node has said it will refuse any outcome under this token: do not send one.
      const loss = attempt.lossToReport;
      if (loss !== null) this.onError(new KairosError({ code: 'stale_lease', message: `${loss.message}: the attempt's outcome was not recorded` }), attempt.jobId);
      return this.release(attempt);
    }
    attempt.phase = 'reporting';
    // The attempt is the answerer of its own outcome (see outcomeAnswered).
    const { conn, runtime, retry } = this.host;
    if (threw) return requestRetrying(conn, runtime, retry, failureOf(attempt, value), attempt);
    if (value === undefined || value === null) return requestRetrying(conn, runtime, retry, { t: 'complete', rid: 0, token: attempt.token }, attempt);
    const problem = resultProblem(value, this.host.resultBytesMax());
    if (problem !== null) {
      return requestRetrying(conn, runtime, retry, { t: 'fail', rid: 0, token: attempt.token, error: problem, retryable: false }, attempt);
    }
    requestRetrying(conn, runtime, retry, { t: 'complete', rid: 0, token: attempt.token, result: value as Uint8Array }, attempt);
  }

  outcomeAnswered(attempt: Attempt, outcome: Ack | Error, resent: boolean): void {
    if (outcome instanceof KairosError && outcome.code === 'stale_lease') {
      const message = resent
        ? // The first copy may well have been committed before the link dropped.
          `${outcome.message}: the outcome was re-sent after a reconnect, and the first copy may have been recorded`
        : `${outcome.message}: the attempt's outcome was not recorded`;
      this.onError(new KairosError({ code: 'stale_lease', message }), attempt.jobId);
    } else if (outcome instanceof Error) {
      this.onError(outcome, attempt.jobId);
    }
    this.release(attempt);
  }

  /** The slot is free again. */
  private release(attempt: Attempt): void {
    if (this.held.get(attempt.jobId) !== attempt) return;
    this.held.delete(attempt.jobId);
    this.poke();
    if (this.draining) return;
    this.creditOwed++;
    if (this.creditFlushQueued) return;
    this.creditFlushQueued = true;
    this.host.runtime.defer(this.flushCredit);
  }

  private readonly flushCredit = (): void => {
    this.creditFlushQueued = false;
    const slots = this.creditOwed;
    this.creditOwed = 0;
    // Not sent when the link is down: `reconnected` announces the free slots instead.
    if (slots > 0 && !this.draining) this.host.conn.send({ t: 'credit', queue: this.queue, slots });
  };

  /** The handler learns of it through its signal at once; onError hears of `toReport` once
   * the handler ends, as the outcome that was not recorded. */
  private leaseLost(attempt: Attempt, reason: Error, toReport: KairosError | null): void {
    if (attempt.phase === 'running' && !attempt.lost) attempt.lossToReport = toReport;
    attempt.lost = true;
    attempt.abort(reason);
  }

  // ---- Heartbeats ----------------------------------------------------------------------

  heartbeat(attempt: Attempt, progress: string | undefined): Promise<void> {
    return new Promise((resolve, reject) => this.sendHeartbeat(attempt, progress, (error) => (error === null ? resolve() : reject(error))));
  }

  private sendHeartbeat(attempt: Attempt, progress: string | undefined, done: ((error: Error | null) => void) | null): void {
    if (attempt.lost || attempt.returned) {
      done?.(new KairosError({ code: 'stale_lease', message: 'the lease is no longer held' }));
      return;
    }
    attempt.heartbeatsInFlight++;
    const note = progress === undefined ? undefined : clip(progress, PROGRESS_CHARS_MAX);
    // Abandoned on a dropped link rather than re-sent: `reconnected` heartbeats afresh.
    this.host.conn.request({ t: 'heartbeat', rid: 0, token: attempt.token, progress: note }, { answered: (outcome) => {
      attempt.heartbeatsInFlight--;
      const nowMs = this.host.runtime.clock.monotonicMs();
      if (outcome instanceof Error) {
        if (outcome instanceof KairosError && outcome.code === 'stale_lease') this.leaseLost(attempt, outcome, outcome);
        // Otherwise try again soon, well before the lease runs out.
        else attempt.heartbeatDueMs = nowMs + Math.max(1, (attempt.expiresAtMs - nowMs) / 4);
      } else {
        attempt.extended(nowMs, outcome.leaseMs);
      }
      this.armHeartbeat(attempt.heartbeatDueMs, nowMs);
      done?.(outcome instanceof Error ? outcome : null);
    } }, true);
  }

  private armHeartbeat(atMs: number, nowMs: number): void {
    if (atMs >= this.heartbeatAtMs) return;
    if (this.heartbeatTimer !== null) this.host.runtime.timers.cancelTimer(this.heartbeatTimer);
    this.heartbeatAtMs = atMs;
    this.heartbeatTimer = this.host.runtime.timers.setTimer(Math.max(0, atMs - nowMs), this.heartbeatDue);
  }

  /** Heartbeats every running attempt that is due, aborts those whose lease ran out on this
   * worker's clock, and re-arms for the earliest next deadline. */
  private readonly heartbeatDue = (): void => {
    this.heartbeatTimer = null;
    this.heartbeatAtMs = Infinity;
    const nowMs = this.host.runtime.clock.monotonicMs();
    const linkUp = this.host.conn.isOpen;
    let nextMs = Infinity;
    for (const attempt of this.held.values()) {
      if (attempt.phase !== 'running' || attempt.lost || attempt.returned) continue;
      if (nowMs >= attempt.expiresAtMs) {
        // Not marked lost: the node may not have re-granted it yet, so the outcome is still
        // worth sending.
        attempt.abort(new KairosError({ code: 'stale_lease', message: 'the lease ran out before it could be extended' }));
        continue;
      }
      if (linkUp && attempt.heartbeatsInFlight === 0 && nowMs >= attempt.heartbeatDueMs) this.sendHeartbeat(attempt, undefined, null);
      const dueMs = attempt.heartbeatsInFlight > 0 || !linkUp ? attempt.expiresAtMs : attempt.heartbeatDueMs;
      if (dueMs < nextMs) nextMs = dueMs;
    }
    if (nextMs < Infinity) this.armHeartbeat(nextMs, nowMs);
  };

  // ---- Shutdown ------------------------------------------------------------------------

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.draining = true;
    this.host.conn.send({ t: 'drain', queue: this.queue });
    await this.waitUntil(() => this.runningCount === 0, this.shutdownDeadlineMs);
    const reason = new DOMException('the worker is shutting down', 'AbortError');
    for (const attempt of this.held.values()) {
      if (attempt.phase !== 'running' || attempt.lost) continue;
      attempt.returned = true;
      attempt.abort(reason);
      const { conn, runtime, retry } = this.host;
      requestRetrying(conn, runtime, retry, { t: 'return', rid: 0, token: attempt.token }, { answered: (outcome) => {
        if (outcome instanceof Error && !(outcome instanceof KairosError && outcome.code === 'stale_lease')) this.onError(outcome, attempt.jobId);
        this.release(attempt);
      } });
    }
    await this.waitUntil(() => this.held.size === 0, Infinity);
    if (this.heartbeatTimer !== null) this.host.runtime.timers.cancelTimer(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.host.detach(this);
  }

  /** Resolves once `done()` holds (checked whenever a handler ends or a slot frees) or after
   * `timeoutMs`. One wait at a time: shutDown is its only user. */
  private waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve();
    const { timers } = this.host.runtime;
    return new Promise((resolve) => {
      let timer: unknown = null;
      const finish = (): void => {
        this.wake = null;
        if (timer !== null) timers.cancelTimer(timer);
        resolve();
      };
      this.wake = () => {
        if (done()) finish();
      };
      if (timeoutMs !== Infinity) timer = timers.setTimer(timeoutMs, finish);
    });
  }

  private poke(): void {
    this.wake?.();
  }
}

/** The `fail` for what a handler threw: NonRetryableError is not retried; DownstreamError and
 * JobError say whose failure it was, for the queue's circuit breaker (anything else leaves it
 * to the node: a retryable failure counts). */
function failureOf(attempt: Attempt, error: unknown): Fail {
  const fail: Fail = { t: 'fail', rid: 0, token: attempt.token, error: errorText(error), retryable: !(error instanceof NonRetryableError) };
  if (error instanceof DownstreamError) fail.downstream = true;
  else if (error instanceof JobError) fail.downstream = false;
  return fail;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** What a handler threw, as the `error` text of `fail`: the stack when there is one (it names
 * the line), within the protocol's limit. */
function errorText(error: unknown): string {
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  return clip(text, ERROR_CHARS_MAX);
}

function resultProblem(value: unknown, resultBytesMax: number): string | null {
  if (!(value instanceof Uint8Array)) {
    const kind = typeof value === 'object' ? (value as object).constructor?.name ?? 'object' : typeof value;
    return `the handler resolved with a ${kind}; a result must be a Uint8Array or undefined`;
  }
  if (value.byteLength > resultBytesMax) return `the result has ${value.byteLength} bytes; at most ${resultBytesMax} are allowed`;
  return null;
}
