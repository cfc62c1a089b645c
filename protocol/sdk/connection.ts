// One logical connection to the cluster over a series of links: the handshake, request/reply
// matching by rid, request timeouts, the node's bound on requests in flight, and reconnection
// with backoff. Requests outlive links: when a link drops, every request not yet answered stays
// pending (unless it asked to be abandoned) and goes out again, with the same bytes, as soon as
// a new link has been welcomed. Whether re-sending is safe is the caller's business (client.ts
// and worker.ts say why it is).
//
// The node counts every request in flight on a connection (a batch: each of its jobs) and
// refuses a request that would take the count past `inflightMax` with `overloaded`, except a
// worker's heartbeats and outcomes. So a submission goes out only when it fits, and waits in
// order otherwise; other requests go out at once (holding back a heartbeat or an outcome behind
// submissions could cost a lease), and a read that meets a full window is retried after its
// `retryAfterMs` like any `overloaded`. A request this client stopped waiting for (timed out) still counts until
// the node answers it or the link drops, because the node counts it until then.

import type { Redirect, Welcome } from '../client-messages.ts';
import { encodeMessage } from '../codec.ts';
import { PROTOCOL_VERSION, RID_MAX, SUPPORTED_VERSIONS } from '../limits.ts';
import { decodeFromNode } from '../validate.ts';
import type { Credit, Drain } from '../worker-messages.ts';
import { backoffDelayMs, type BackoffPolicy } from './backoff.ts';
import { ConnectionClosedError, KairosError, RequestTimeoutError } from './errors.ts';
import { REPLY_TYPE, type Answerer, type Push, type Reply, type ReplyTo, type Request } from './messages.ts';
import type { SdkRuntime } from './runtime.ts';
import type { Dial, Link } from './transport.ts';

/** Redirects to another cell followed before a welcome: one is normal, a second means a cell
 * map changed meanwhile. */
const REDIRECTS_MAX = 3;

export interface ReconnectPolicy extends BackoffPolicy {
  /** Failed attempts in a row after which the client gives up and closes. */
  maxAttempts: number;
}

export interface ConnectionSettings {
  urls: readonly string[];
  token: string;
  client: string | undefined;
  requestTimeoutMs: number;
  /** Null: a dropped link closes the client. */
  reconnect: ReconnectPolicy | null;
  dial: Dial;
  runtime: SdkRuntime;
  warn(message: string): void;
}

export interface ConnectionEvents {
  /** A link was welcomed and every pending request re-sent on it. */
  ready(reconnected: boolean): void;
  push(message: Push): void;
  /** The connection is closed for good by a failure (not by `close()`). */
  failed(error: Error): void;
}

class Exchange {
  /** Times sent; more than once means a link dropped while it was unanswered. */
  sends = 0;
  /** Sent on the current link and not answered: counted in `Connection.inflight`. */
  onLink = false;
  /** What the node counts it as in flight: a batch counts each of its jobs. */
  readonly slots: number;
  /** A submission: refused past `inflightMax`, so it waits for room. */
  readonly bounded: boolean;

  constructor(
    readonly rid: number,
    readonly request: Request,
    public bytes: Uint8Array,
    public bytesVersion: number,
    readonly deadlineMs: number,
    readonly abandonOnDrop: boolean,
    readonly answerer: Answerer<Reply>,
  ) {
    this.slots = request.t === 'submit_batch' ? request.jobs.length : 1;
    this.bounded = request.t === 'submit' || request.t === 'submit_batch';
  }
}

type State = 'connecting' | 'open' | 'waiting' | 'closing' | 'closed';

export class Connection {
  private state: State = 'connecting';
  private link: Link | null = null;
  private latestWelcome: Welcome | null = null;
  private everOpened = false;
  /** Dial attempts since the last welcome. */
  private failures = 0;
  private urlIndex = 0;
  /** Redirects to another cell since the last welcome. */
  private redirects = 0;
  /** The URLs given, then those learned from the cluster (`learnUrls`). */
  private readonly urls: string[];
  private nextRid = 0;
  /** In send order; since every request has the same timeout, also in deadline order. */
  private readonly pending = new Map<number, Exchange>();
  /** Slots the node counts in flight on the current link: requests sent on it and not yet
   * answered, those timed out here included. */
  private inflight = 0;
  /** Submissions that did not fit under `inflightMax`, in the order they were made. */
  private readonly waiting = new Set<Exchange>();
  /** Requests timed out here but sent on the current link: rid → slots, freed when the node
   * answers them after all. */
  private readonly orphans = new Map<number, number>();
  private timeoutTimer: unknown = null;
  private linkTimer: unknown = null;
  private started: { resolve: () => void; reject: (error: Error) => void } | null = null;
  private closedWaiter: (() => void) | null = null;

  constructor(
    private readonly settings: ConnectionSettings,
    private readonly events: ConnectionEvents,
  ) {
    this.urls = [...settings.urls];
  }

  /** More nodes to fail over to, from the cluster's view; those given to `connect` stay first. */
  learnUrls(urls: readonly string[]): void {
    for (const url of urls) if (!this.urls.includes(url)) this.urls.push(url);
  }

  /** Resolves at the first welcome. Each URL is tried once, so a wrong address or token
   * fails at once instead of retrying forever. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.started = { resolve, reject };
      this.dial();
    });
  }

  /** The latest welcome; set once `start` has resolved. */
  get welcome(): Welcome {
    return this.latestWelcome!;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Sends `request` with a fresh rid (assigned into it) and answers exactly once. A
   * request made while no link is up waits for the next one. With `abandonOnDrop` a request
   * is answered with ConnectionClosedError when its link drops instead of being re-sent.
   * Throws only for a programmer error (a value the codec cannot encode). */
  request<R extends Request>(request: R, answerer: Answerer<ReplyTo<R>>, abandonOnDrop = false): void {
    if (this.state === 'closing' || this.state === 'closed') {
      answerer.answered(new ConnectionClosedError(`client is closed; ${request.t} not sent`), false);
      return;
    }
    const rid = this.allocateRid();
    request.rid = rid;
    const version = this.latestWelcome?.version ?? PROTOCOL_VERSION;
    const bytes = encodeMessage(request, version);
    const deadlineMs = this.settings.runtime.clock.monotonicMs() + this.settings.requestTimeoutMs;
    const exchange = new Exchange(rid, request, bytes, version, deadlineMs, abandonOnDrop, answerer as Answerer<Reply>);
    this.pending.set(rid, exchange);
    if (this.timeoutTimer === null) this.armTimeouts(deadlineMs);
    if (this.state === 'open') this.dispatch(exchange);
  }

  /** Sends a message that has no reply. Returns false when no link is up: such messages
   * (credit, drain) describe the present, so the caller re-announces state on `ready`
   * rather than having stale ones queued. */
  send(message: Credit | Drain): boolean {
    if (this.state !== 'open') return false;
    this.link!.send(encodeMessage(message, this.latestWelcome!.version));
    return true;
  }

  /** Answers what is pending with ConnectionClosedError and closes the link. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    this.cancelTimers();
    this.answerAll((exchange) => new ConnectionClosedError('client closed', { sent: exchange.sends > 0 }));
    const link = this.link;
    if (link === null) {
      this.state = 'closed';
      return;
    }
    await new Promise<void>((resolve) => {
      this.closedWaiter = resolve;
      link.close();
    });
  }

  private allocateRid(): number {
    // Wrap within uint32 and skip rids still waiting (for an answer here, or at the node): a
    // long-lived client reuses them.
    do this.nextRid = this.nextRid === RID_MAX ? 0 : this.nextRid + 1;
    while (this.pending.has(this.nextRid) || this.orphans.has(this.nextRid));
    return this.nextRid;
  }

  /** Sends on the open link, or queues a submission that does not fit: behind any already
   * waiting, so that submissions keep their order and a large batch is not passed over. */
  private dispatch(exchange: Exchange): void {
    if (exchange.bounded && (this.waiting.size > 0 || !this.fits(exchange))) this.waiting.add(exchange);
    else this.transmit(exchange);
  }

  private fits(exchange: Exchange): boolean {
    // Alone, a submission goes out whatever its size: a batch cut for a node with a higher
    // bound before a reconnect would otherwise wait for ever (the node refuses it instead).
    return this.inflight === 0 || this.inflight + exchange.slots <= this.latestWelcome!.limits.inflightMax;
  }

  private transmit(exchange: Exchange): void {
    const version = this.latestWelcome!.version;
    if (exchange.bytesVersion !== version) {
      exchange.bytes = encodeMessage(exchange.request, version);
      exchange.bytesVersion = version;
    }
    exchange.sends++;
    exchange.onLink = true;
    this.inflight += exchange.slots;
    this.link!.send(exchange.bytes);
  }

  /** The node answered `slots` worth of requests. */
  private free(slots: number): void {
    this.inflight -= slots;
    this.pump();
  }

  /** Sends the waiting submissions that fit now, in order. */
  private pump(): void {
    for (const exchange of this.waiting) {
      if (!this.fits(exchange)) return;
      this.waiting.delete(exchange);
      this.transmit(exchange);
    }
  }

  /** The node forgets a connection's requests with it. */
  private forgetLink(): void {
    this.inflight = 0;
    this.waiting.clear();
    this.orphans.clear();
    for (const exchange of this.pending.values()) exchange.onLink = false;
  }

  // ---- Links ---------------------------------------------------------------------------

  private dial(): void {
    const { token, runtime, requestTimeoutMs } = this.settings;
    this.state = 'connecting';
    const url = this.urls[this.urlIndex % this.urls.length]!;
    // Callbacks of a link we have since dropped are ignored: only `this.link` speaks.
    const link: Link = this.settings.dial(url, token, {
      opened: () => {
        if (link !== this.link) return;
        link.send(encodeMessage({ t: 'hello', versions: [...SUPPORTED_VERSIONS], client: this.settings.client }));
      },
      frame: (bytes) => {
        if (link === this.link) this.frame(bytes);
      },
      closed: (reason, httpStatus) => {
        if (link === this.link) this.linkLost(reason, httpStatus);
      },
    });
    this.link = link;
    // The handshake gets the request timeout: a node that accepts the socket but never
    // welcomes is as good as down.
    this.linkTimer = runtime.timers.setTimer(requestTimeoutMs, () => {
      this.linkTimer = null;
      this.abandonLink(`no welcome from ${url} within ${requestTimeoutMs} ms`);
    });
  }

  /** Drops a link that seems dead without waiting for it to say so. */
  private abandonLink(reason: string): void {
    const link = this.link;
    if (link === null) return;
    link.terminate();
    this.linkLost(reason, undefined);
  }

  private linkLost(reason: string, httpStatus: number | undefined): void {
    this.link = null;
    this.cancelLinkTimer();
    this.forgetLink();
    if (this.state === 'closing') return this.finishClose();
    if (httpStatus === 401 || httpStatus === 403) {
      return this.fail(new KairosError({ code: 'unauthorized', message: `the node refused the token (${reason})` }));
    }
    const wasOpen = this.state === 'open';
    this.state = 'waiting';
    if (wasOpen) {
      this.settings.warn(`connection lost: ${reason}`);
      for (const exchange of this.pending.values()) {
        if (!exchange.abandonOnDrop) continue;
        this.pending.delete(exchange.rid);
        exchange.answerer.answered(new ConnectionClosedError(`connection lost before ${exchange.request.t} was answered: ${reason}`, { sent: exchange.sends > 0 }), false);
      }
    }
    this.failures++;
    this.urlIndex++;
    if (!this.everOpened) {
      if (this.failures < this.urls.length) return this.dial();
      return this.fail(new ConnectionClosedError(`could not connect to ${this.urls.join(', ')}: ${reason}`));
    }
    const policy = this.settings.reconnect;
    if (policy === null) return this.fail(new ConnectionClosedError(`connection lost: ${reason}`));
    if (this.failures > policy.maxAttempts) {
      return this.fail(new ConnectionClosedError(`gave up after ${policy.maxAttempts} reconnection attempts: ${reason}`));
    }
    const delayMs = backoffDelayMs(policy, this.failures - 1, this.settings.runtime.random);
    this.linkTimer = this.settings.runtime.timers.setTimer(delayMs, () => {
      this.linkTimer = null;
      this.dial();
    });
  }

  private finishClose(): void {
    this.state = 'closed';
    this.closedWaiter?.();
    this.closedWaiter = null;
  }

  /** Closed for good: nothing pending will be answered by the node. */
  private fail(error: Error): void {
    this.state = 'closed';
    this.cancelTimers();
    this.link?.terminate();
    this.link = null;
    this.answerAll((exchange) => new ConnectionClosedError(error.message, { cause: error, sent: exchange.sends > 0 }));
    if (this.started !== null) {
      this.started.reject(error);
      this.started = null;
    } else {
      this.events.failed(error);
    }
  }

  // ---- Frames --------------------------------------------------------------------------

  private frame(bytes: Uint8Array): void {
    const decoded = decodeFromNode(bytes);
    if (!decoded.ok) {
      this.settings.warn(`dropped a frame from the node: ${decoded.error.code}: ${decoded.error.message}`);
      return;
    }
    const message = decoded.msg;
    switch (message.t) {
      case 'job_changed':
      case 'breaker_changed':
      case 'lease':
      case 'revoke':
        return this.events.push(message);
      case 'welcome':
        return this.welcomed(message);
      case 'redirect':
        return this.redirected(message);
      case 'error': {
        const error = new KairosError(message);
        if (message.rid !== null) return this.settle(message.rid, error);
        if (this.state === 'open') return this.settings.warn(`the node refused a frame: ${error.code}: ${error.message}`);
        // Refused during the handshake: a version mismatch will not go away by retrying.
        if (error.retryable) return this.abandonLink(`handshake refused: ${error.message}`);
        return this.fail(error);
      }
      default:
        return this.settle(message.rid, message);
    }
  }

  private settle(rid: number, outcome: Reply | Error): void {
    const exchange = this.pending.get(rid);
    if (exchange === undefined) {
      // Answered already, by a timeout; the node no longer counts it.
      const slots = this.orphans.get(rid);
      if (slots === undefined) return;
      this.orphans.delete(rid);
      return this.free(slots);
    }
    this.pending.delete(rid);
    if (exchange.onLink) this.free(exchange.slots);
    if (!(outcome instanceof Error) && outcome.t !== REPLY_TYPE[exchange.request.t]) {
      outcome = new KairosError({ code: 'internal', message: `the node answered ${exchange.request.t} with ${outcome.t}` });
    }
    exchange.answerer.answered(outcome, exchange.sends > 1);
  }

  /** The tenant is served by another cell: its nodes replace the ones known, since every node
   * of this cell would send us there too. Bounded, so two cells whose maps disagree cannot send
   * a client back and forth for ever. */
  private redirected(redirect: Redirect): void {
    if (this.state !== 'connecting') return this.settings.warn('ignored a redirect outside the handshake');
    if (++this.redirects > REDIRECTS_MAX || redirect.urls.length === 0) {
      return this.fail(new ConnectionClosedError(`redirected ${this.redirects} times, last to cell ${redirect.cell} (${redirect.urls.join(', ')}): do the cells' maps agree?`));
    }
    this.settings.warn(`tenant served by cell ${redirect.cell}: connecting to ${redirect.urls.join(', ')}`);
    this.urls.splice(0, this.urls.length, ...redirect.urls);
    this.urlIndex = 0;
    const link = this.link;
    this.link = null;
    this.cancelLinkTimer();
    link?.terminate();
    this.dial();
  }

  private welcomed(welcome: Welcome): void {
    if (this.state !== 'connecting') return this.settings.warn('ignored a second welcome');
    this.cancelLinkTimer();
    this.latestWelcome = welcome;
    this.state = 'open';
    this.failures = 0;
    this.redirects = 0;
    const reconnected = this.everOpened;
    this.everOpened = true;
    for (const exchange of this.pending.values()) this.dispatch(exchange);
    if (this.started !== null) {
      this.started.resolve();
      this.started = null;
    }
    this.events.ready(reconnected);
  }

  // ---- Timeouts ------------------------------------------------------------------------

  /** One timer for all requests: it fires at the oldest deadline (deadlineReached), answers
   * every request past its deadline (expire), and re-arms for the next one. */
  private armTimeouts(atMs: number): void {
    const delayMs = Math.max(0, atMs - this.settings.runtime.clock.monotonicMs());
    this.timeoutTimer = this.settings.runtime.timers.setTimer(delayMs, this.deadlineReached);
  }

  /** Not yet a timeout. When this process was stopped (SIGSTOP, a long GC pause, a suspended
   * laptop), replies that came meanwhile are still unread in the socket, and timers that fell
   * due run before it is read. So the requests due now get one more turn of the event loop
   * (a timer of 0 ms set from a timer runs after the I/O that is waiting): a reply read in it
   * settles its request, and only what is still unanswered after it times out. */
  private readonly deadlineReached = (): void => {
    const nowMs = this.settings.runtime.clock.monotonicMs();
    this.timeoutTimer = this.settings.runtime.timers.setTimer(0, () => this.expire(nowMs));
  };

  /** Answers every request whose deadline had passed at `dueMs`. */
  private expire(dueMs: number): void {
    const expired: Exchange[] = [];
    for (const exchange of this.pending.values()) {
      if (exchange.deadlineMs > dueMs) break;
      expired.push(exchange);
    }
    for (const exchange of expired) {
      this.pending.delete(exchange.rid);
      this.waiting.delete(exchange);
      if (exchange.onLink) this.orphans.set(exchange.rid, exchange.slots);
    }
    // A large batch that timed out waiting no longer holds back the smaller ones behind it.
    this.pump();
    // Re-armed before anyone is answered: an answer may make a request, which arms the timer
    // itself when none is set.
    const next = this.pending.values().next();
    this.timeoutTimer = null;
    if (!next.done) this.armTimeouts(next.value.deadlineMs);
    const { requestTimeoutMs } = this.settings;
    for (const exchange of expired) {
      exchange.answerer.answered(new RequestTimeoutError(exchange.request.t, requestTimeoutMs, exchange.sends > 0), exchange.sends > 1);
    }
  }

  private answerAll(error: (exchange: Exchange) => Error): void {
    const exchanges = [...this.pending.values()];
    this.pending.clear();
    this.waiting.clear();
    for (const exchange of exchanges) exchange.answerer.answered(error(exchange), exchange.sends > 1);
  }

  private cancelLinkTimer(): void {
    if (this.linkTimer === null) return;
    this.settings.runtime.timers.cancelTimer(this.linkTimer);
    this.linkTimer = null;
  }

  private cancelTimers(): void {
    this.cancelLinkTimer();
    if (this.timeoutTimer !== null) this.settings.runtime.timers.cancelTimer(this.timeoutTimer);
    this.timeoutTimer = null;
  }
}
