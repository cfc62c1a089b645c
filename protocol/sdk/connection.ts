// One logical connection to the cluster over a series of links: the handshake, request/reply
// matching by rid, request timeouts, and reconnection with backoff. Requests outlive links:
// when a link drops, every request not yet answered stays pending (unless it asked to be
// abandoned) and goes out again, with the same bytes, as soon as a new link has been welcomed.
// Whether re-sending is safe is the caller's business (client.ts and worker.ts say why it is).

import type { Welcome } from '../client-messages.ts';
import { encodeMessage } from '../codec.ts';
import { PROTOCOL_VERSION, RID_MAX, SUPPORTED_VERSIONS } from '../limits.ts';
import { decodeFromNode } from '../validate.ts';
import type { Credit, Drain } from '../worker-messages.ts';
import { backoffDelayMs, type BackoffPolicy } from './backoff.ts';
import { ConnectionClosedError, KairosError, RequestTimeoutError } from './errors.ts';
import { REPLY_TYPE, type Answerer, type Push, type Reply, type ReplyTo, type Request } from './messages.ts';
import type { SdkRuntime } from './runtime.ts';
import type { Dial, Link } from './transport.ts';

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

  constructor(
    readonly rid: number,
    readonly request: Request,
    public bytes: Uint8Array,
    public bytesVersion: number,
    readonly deadlineMs: number,
    readonly abandonOnDrop: boolean,
    readonly answerer: Answerer<Reply>,
  ) {}
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
  /** The URLs given, then those learned from the cluster (`learnUrls`). */
  private readonly urls: string[];
  private nextRid = 0;
  /** In send order; since every request has the same timeout, also in deadline order. */
  private readonly pending = new Map<number, Exchange>();
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
    if (this.state === 'open') this.transmit(exchange);
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
    this.answerAll(() => new ConnectionClosedError('client closed'));
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
    // Wrap within uint32 and skip rids still waiting: a long-lived client reuses them.
    do this.nextRid = this.nextRid === RID_MAX ? 0 : this.nextRid + 1;
    while (this.pending.has(this.nextRid));
    return this.nextRid;
  }

  private transmit(exchange: Exchange): void {
    const version = this.latestWelcome!.version;
    if (exchange.bytesVersion !== version) {
      exchange.bytes = encodeMessage(exchange.request, version);
      exchange.bytesVersion = version;
    }
    exchange.sends++;
    this.link!.send(exchange.bytes);
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
        exchange.answerer.answered(new ConnectionClosedError(`connection lost before ${exchange.request.t} was answered: ${reason}`), false);
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
    const cause = error instanceof ConnectionClosedError ? error : new ConnectionClosedError(error.message, { cause: error });
    this.answerAll(() => cause);
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
      case 'lease':
      case 'revoke':
        return this.events.push(message);
      case 'welcome':
        return this.welcomed(message);
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
    // Unknown rids were answered already: by a timeout.
    if (exchange === undefined) return;
    this.pending.delete(rid);
    if (!(outcome instanceof Error) && outcome.t !== REPLY_TYPE[exchange.request.t]) {
      outcome = new KairosError({ code: 'internal', message: `the node answered ${exchange.request.t} with ${outcome.t}` });
    }
    exchange.answerer.answered(outcome, exchange.sends > 1);
  }

  private welcomed(welcome: Welcome): void {
    if (this.state !== 'connecting') return this.settings.warn('ignored a second welcome');
    this.cancelLinkTimer();
    this.latestWelcome = welcome;
    this.state = 'open';
    this.failures = 0;
    const reconnected = this.everOpened;
    this.everOpened = true;
    for (const exchange of this.pending.values()) this.transmit(exchange);
    if (this.started !== null) {
      this.started.resolve();
      this.started = null;
    }
    this.events.ready(reconnected);
  }

  // ---- Timeouts ------------------------------------------------------------------------

  private armTimeouts(atMs: number): void {
    const delayMs = Math.max(0, atMs - this.settings.runtime.clock.monotonicMs());
    this.timeoutTimer = this.settings.runtime.timers.setTimer(delayMs, () => this.expire());
  }

  /** One timer for all requests: it fires at the oldest deadline, answers every request
   * past its deadline, and re-arms for the next one. */
  private expire(): void {
    this.timeoutTimer = null;
    const { requestTimeoutMs, runtime } = this.settings;
    const nowMs = runtime.clock.monotonicMs();
    for (const exchange of this.pending.values()) {
      if (exchange.deadlineMs > nowMs) {
        this.armTimeouts(exchange.deadlineMs);
        break;
      }
      this.pending.delete(exchange.rid);
      exchange.answerer.answered(new RequestTimeoutError(exchange.request.t, requestTimeoutMs), exchange.sends > 1);
    }
  }

  private answerAll(error: () => Error): void {
    const exchanges = [...this.pending.values()];
    this.pending.clear();
    for (const exchange of exchanges) exchange.answerer.answered(error(), exchange.sends > 1);
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
