// The Kairos client SDK: submit and follow jobs, manage recurring schedules and circuit
// breakers, and run workers, over one WebSocket to any node. It speaks only the protocol
// (../*.ts) and needs nothing from Node.js but the `ws` package, which the `transport` option
// can replace (a browser WebSocket, the simulator's network).

import type { SubmitSpec } from '../client-messages.ts';
import { KairosClient } from './client.ts';
import type { SdkRuntime } from './runtime.ts';
import { systemRuntime } from './runtime.ts';
import type { Dial } from './transport.ts';
import { dialWebSocket } from './ws-transport.ts';

export interface ConnectOptions {
  /** `ws://host:port` of a node. */
  url: string;
  /** Bearer token; sent in the Authorization header of the upgrade. */
  token: string;
  /** Client name and version, for the node's logs. */
  client?: string;
  /** More nodes, tried in turn after `url` when connecting and reconnecting. */
  urls?: string[];
  /** How long a request may wait for its answer, reconnections and waiting for room under
   * the node's `inflightMax` included; default 30 s. */
  requestTimeoutMs?: number;
  /** Reconnection after a dropped link, with exponential backoff and jitter; `false` closes
   * the client instead. Defaults: 100 ms doubling to 5 s, forever. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; maxAttempts?: number } | false;
  /** Automatic retry, after `retryAfterMs` or with backoff, until `deadlineMs` after the first
   * try: of refusals that applied nothing (`overloaded`, `rate_limited`, `unavailable`; never
   * `circuit_open`, which the queue's breaker settings asked for), and
   * of submissions and worker outcomes whose outcome is unknown (`internal`, or no answer
   * within `requestTimeoutMs`), under the same idempotency key or lease token. A submission
   * still unknown at the deadline rejects with OutcomeUnknownError. `false` hands everything
   * to the caller at once (an unknown submission, too, as OutcomeUnknownError). Default
   * deadline 30 s. */
  retry?: { deadlineMs?: number; initialDelayMs?: number; maxDelayMs?: number } | false;
  /** Things worth a log line that concern no caller: a dropped link, an undecodable frame.
   * Default: console.warn. */
  onWarning?: (message: string) => void;
  /** Replaces the WebSocket link: `webSocketDialer({ keepaliveMs })` to tune it, or a browser
   * binding, or the simulator's network. */
  transport?: Dial;
  /** Replaces clock, timers and randomness (the simulator's virtual ones). */
  runtime?: SdkRuntime;
}

/** Connects to a node and completes the handshake. Rejects when no URL accepts the
 * connection (each is tried once) or the token is refused. */
export function connect(options: ConnectOptions): Promise<KairosClient> {
  const reconnect = options.reconnect === false ? null : options.reconnect ?? {};
  const retry = options.retry === false ? null : options.retry ?? {};
  return KairosClient.open({
    connection: {
      urls: [options.url, ...(options.urls ?? [])],
      token: options.token,
      client: options.client,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      reconnect:
        reconnect === null
          ? null
          : { initialDelayMs: reconnect.initialDelayMs ?? 100, maxDelayMs: reconnect.maxDelayMs ?? 5_000, maxAttempts: reconnect.maxAttempts ?? Infinity },
      dial: options.transport ?? dialWebSocket,
    },
    runtime: options.runtime ?? systemRuntime,
    retry: retry === null ? null : { deadlineMs: retry.deadlineMs ?? 30_000, initialDelayMs: retry.initialDelayMs ?? 100, maxDelayMs: retry.maxDelayMs ?? 5_000 },
    warn: options.onWarning ?? ((message) => console.warn(`kairos: ${message}`)),
  });
}

export { KairosClient };
export type { BreakerListOptions, BreakerOptions, BreakersPage, ClusterInfo, ListFilter, Page, ScheduleListOptions, SchedulesPage } from './client.ts';
export type { BreakerChange, OnBreakerChange } from './breaker-watch.ts';
export type { SubmitManyResult, SubmitResult } from './submit-many.ts';
export type { Subscription, OnChange } from './subscriptions.ts';
export type { Handler, Worker, WorkerOptions } from './worker.ts';
export type { JobContext } from './attempt.ts';
export { ConnectionClosedError, DownstreamError, JobError, KairosError, NonRetryableError, OutcomeUnknownError, RequestTimeoutError } from './errors.ts';
export type { Dial, Link, LinkListener } from './transport.ts';
export { webSocketDialer, type WebSocketOptions } from './ws-transport.ts';
export type { SdkRuntime } from './runtime.ts';
export type { SubmitSpec };
export type { MemberView } from '../client-messages.ts';
export type { RetrySpec } from '../client-messages.ts';
export type { JobView } from '../job-view.ts';
export type { ScheduleSpec, ScheduleView } from '../schedule-view.ts';
export type { BreakerSource, BreakerSpec, BreakerView } from '../breaker-view.ts';
export type { BreakerState } from '../breaker-view.ts';
export type { MissedPolicy } from '../schedule-view.ts';
export type { LeaseJob } from '../worker-messages.ts';
export type { ErrorCode } from '../errors.ts';
export type { JobState, LeaseToken } from '../job-rules.ts';
