// The client: what a program calls. Each method is one protocol request (submitMany: one per
// batch), sent through the connection with automatic retry of refusals that applied nothing.
//
// What happens to a request whose link drops before the answer (the connection re-sends it):
// - submit, submit_batch: every job carries an idempotency key (one is generated when the
//   caller gave none), so a second copy maps to the job the first created. For the same
//   reason a submission whose outcome is unknown (`internal`, or no answer in time) is sent
//   again (retry.ts) until the retry deadline, and one still unknown then is reported as
//   OutcomeUnknownError with its key, never as a plain failure: the job may exist.
// - get, list, dlq_list, subscribe, schedule_get, schedule_list: reads; asking twice changes
//   nothing.
// - cancel: cancelling is idempotent in effect. If the first copy committed, the second is
//   refused with `illegal_state` (the job is finished); the client then reads the job and
//   reports success when it is cancelled.
// - dlq_requeue: likewise, a second copy is refused with `illegal_state` once the job has
//   left the dead-letter queue, and the client reports the job as it now is. The one
//   window it cannot close: if the requeued job runs, dies again and is dead before the copy
//   arrives, the copy requeues it a second time (one extra attempt, never a lost job).
// - schedule_upsert, schedule_pause: a copy sets the schedule to what the first copy set, and
//   the reply is the schedule as it then is. The one window: a replacement sets the next tick
//   to the first after it arrives, so a tick that fell between the two copies, if it had not
//   fired yet, is not run (resuming what is not paused changes nothing).
// - schedule_delete: a second copy is refused with `not_found` once the first has deleted the
//   schedule, and the client reports success: the schedule is gone, as asked. If another
//   client made a schedule of that name again in between, the copy deletes that one.
// - breaker_set, breaker_clear: a copy sets (or clears) the same settings again; the reply is
//   the breaker as it then is. breaker_get, breaker_list: reads. breaker_watch: watching twice
//   asks for the same pushes.
//
// A submission refused with `circuit_open` (its queue's breaker is open and set to refuse) is
// not retried: the caller gets the KairosError, with `retryAfterMs` until the breaker probes.

import type { JobState } from '../job-rules.ts';
import type { MemberView, SubmitSpec, Welcome } from '../client-messages.ts';
import type { JobView } from '../job-view.ts';
import type { ScheduleSpec, ScheduleView } from '../schedule-view.ts';
import type { BreakerSpec, BreakerView } from '../breaker-view.ts';
import { BreakerWatches, type OnBreakerChange } from './breaker-watch.ts';
import type { Lease } from '../worker-messages.ts';
import { Connection, type ConnectionSettings } from './connection.ts';
import { ConnectionClosedError, KairosError, mayHaveApplied, OutcomeUnknownError } from './errors.ts';
import type { Answerer, Push, ReplyTo, Request } from './messages.ts';
import { requestRetrying, type AutoRetryPolicy } from './retry.ts';
import type { SdkRuntime } from './runtime.ts';
import { submitMany, type SubmitManyResult, type SubmitResult } from './submit-many.ts';
import { Subscriptions, type OnChange, type Subscription } from './subscriptions.ts';
import { QueueWorker, type Handler, type Worker, type WorkerHost, type WorkerOptions } from './worker.ts';

export interface ListFilter {
  state?: JobState;
  queue?: string;
  /** Jobs per page, up to 1000; default 100. */
  limit?: number;
  /** The `next` of the previous page. */
  after?: string;
}

export interface Page {
  jobs: JobView[];
  /** Cursor of the next page; null on the last. */
  next: string | null;
}

export interface ScheduleListOptions {
  /** Schedules per page, up to 1000. */
  limit?: number;
  /** The `next` of the previous page. */
  after?: string;
}

export interface SchedulesPage {
  schedules: ScheduleView[];
  /** Cursor of the next page; null on the last. */
  next: string | null;
}

/** A queue's breaker settings; omitted fields take the defaults (see BreakerSpec). */
export type BreakerOptions = Omit<BreakerSpec, 'queue'>;

export interface BreakerListOptions {
  /** Breakers per page, up to 1000. */
  limit?: number;
  /** The `next` of the previous page. */
  after?: string;
}

export interface BreakersPage {
  /** Without their live window (`window` is null): `get` one to see it. */
  breakers: BreakerView[];
  /** Cursor of the next page; null on the last. */
  next: string | null;
}

export interface ClientSettings {
  connection: Omit<ConnectionSettings, 'warn' | 'runtime'>;
  runtime: SdkRuntime;
  retry: AutoRetryPolicy | null;
  warn(message: string): void;
}

export interface ClusterInfo {
  /** The node that answered. */
  node: string;
  members: MemberView[];
  /** For each shard, the node the ring names its owner; null before the first ring. */
  owners: Array<string | null>;
}

export class KairosClient {
  private readonly conn: Connection;
  private readonly runtime: SdkRuntime;
  private readonly retry: AutoRetryPolicy | null;
  private readonly warn: (message: string) => void;
  private readonly subscriptions: Subscriptions;
  private readonly breakerWatches: BreakerWatches;
  private readonly workers = new Map<string, QueueWorker>();
  private readonly workerHost: WorkerHost;
  /** Calls not yet answered; `close()` waits for them. */
  private readonly inflight = new InFlight();
  private closing: Promise<void> | null = null;

  /** Dials and completes the handshake; `connect()` in index.ts is the public way in. */
  static async open(settings: ClientSettings): Promise<KairosClient> {
    const client = new KairosClient(settings);
    await client.conn.start();
    return client;
  }

  private constructor(settings: ClientSettings) {
    this.runtime = settings.runtime;
    this.retry = settings.retry;
    this.warn = settings.warn;
    this.conn = new Connection(
      { ...settings.connection, runtime: settings.runtime, warn: settings.warn },
      {
        ready: (reconnected) => this.ready(reconnected),
        push: (message) => this.push(message),
        failed: (error) => this.failed(error),
      },
    );
    this.subscriptions = new Subscriptions({
      request: (request, answerer) => this.send(request, answerer),
      unsubscribe: (request) =>
        new Promise((resolve, reject) =>
          // Abandoned on a dropped link: the node forgets a connection's subscriptions with
          // it, and this one is not made again.
          this.conn.request(request, { answered: (outcome) => (outcome instanceof ConnectionClosedError || !(outcome instanceof Error) ? resolve() : reject(outcome)) }, true),
        ),
      warn: this.warn,
    });
    this.breakerWatches = new BreakerWatches({ request: (request, answerer) => this.send(request, answerer), warn: this.warn });
    this.workerHost = {
      conn: this.conn,
      runtime: this.runtime,
      retry: this.retry,
      resultBytesMax: () => this.limits.resultBytesMax,
      detach: (worker) => {
        if (this.workers.get(worker.queue) === worker) this.workers.delete(worker.queue);
      },
      returnLease: (lease) => this.returnLease(lease),
    };
  }

  /** Id of the node this client is connected to (it may change on reconnect). */
  get node(): string {
    return this.conn.welcome.node;
  }

  get shardCount(): number {
    return this.conn.welcome.shardCount;
  }

  /** What the node accepts: frame size, payload and result size, jobs per batch, requests in
   * flight on this connection. */
  get limits(): Welcome['limits'] {
    return this.conn.welcome.limits;
  }

  // ---- Jobs ----------------------------------------------------------------------------

  /** Submits one job. Resolves once it is committed: an acknowledged job is durable. Rejects
   * with OutcomeUnknownError when, at the retry deadline, the job may or may not exist. */
  async submit(spec: SubmitSpec): Promise<SubmitResult> {
    const generated = spec.idempotencyKey === undefined;
    const job = generated ? { ...spec, idempotencyKey: this.runtime.uuid(), anyShard: true } : spec;
    const reply = await this.call({ t: 'submit', rid: 0, job }).catch((error: Error) => {
      throw mayHaveApplied(error) ? new OutcomeUnknownError(job.idempotencyKey!, error) : error;
    });
    return { jobId: reply.jobId, duplicate: !generated && reply.duplicate };
  }

  /** Submits many jobs in as few frames as the limits allow, all batches handed to the
   * connection at once (it sends them as the connection's `inflightMax` allows). Resolves with
   * one result per job, in order; a refused job does not fail the others. */
  async submitMany(specs: readonly SubmitSpec[]): Promise<SubmitManyResult[]> {
    this.assertOpen();
    this.inflight.started();
    try {
      return await submitMany(specs, {
        limits: this.limits,
        runtime: this.runtime,
        retry: this.retry,
        submitBatch: (jobs, deadlineMs) => this.call({ t: 'submit_batch', rid: 0, jobs }, deadlineMs),
      });
    } finally {
      this.inflight.settled();
    }
  }

  async get(jobId: string): Promise<JobView> {
    return (await this.call({ t: 'get', rid: 0, jobId })).job;
  }

  /** The cluster as the connected node sees it: its members, and for each shard the node the
   * ring names its owner (null before the first ring). */
  async cluster(): Promise<ClusterInfo> {
    const view = await this.call({ t: 'cluster', rid: 0 });
    const bytes = new DataView(view.owners.buffer, view.owners.byteOffset, view.owners.byteLength);
    const owners = Array.from({ length: view.owners.byteLength / 2 }, (_, shard) => view.members[bytes.getUint16(2 * shard)]?.node ?? null);
    return { node: view.node, members: view.members, owners };
  }

  /** One page of the tenant's jobs, newest first. */
  async list(filter: ListFilter = {}): Promise<Page> {
    const reply = await this.call({ t: 'list', rid: 0, state: filter.state, queue: filter.queue, limit: filter.limit, after: filter.after });
    return { jobs: reply.jobs, next: reply.next };
  }

  /** Cancels a pending or running job; a running attempt's worker is told to stop. Resolves
   * with the job as committed. A finished job is refused with `illegal_state`. */
  async cancel(jobId: string): Promise<JobView> {
    const { outcome, resent } = await this.exchange({ t: 'cancel', rid: 0, jobId });
    if (!(outcome instanceof Error)) return outcome.job;
    if (resent && outcome instanceof KairosError && outcome.code === 'illegal_state') {
      const job = await this.get(jobId);
      if (job.state === 'cancelled') return job;
    }
    throw outcome;
  }

  /** Follows a job: `onChange` runs after every committed change until it is terminal. */
  subscribe(jobId: string, onChange: OnChange): Promise<Subscription> {
    if (this.closing !== null) return Promise.reject(new ConnectionClosedError('client is closing'));
    return this.subscriptions.subscribe(jobId, onChange);
  }

  /** The dead-letter queue. */
  readonly dlq = {
    list: async (filter: Omit<ListFilter, 'state'> = {}): Promise<Page> => {
      const reply = await this.call({ t: 'dlq_list', rid: 0, queue: filter.queue, limit: filter.limit, after: filter.after });
      return { jobs: reply.jobs, next: reply.next };
    },
    /** Sends a dead job back to its queue with `attempts` more attempts (default 1). */
    requeue: async (jobId: string, options: { attempts?: number } = {}): Promise<JobView> => {
      const { outcome, resent } = await this.exchange({ t: 'dlq_requeue', rid: 0, jobId, attempts: options.attempts });
      if (!(outcome instanceof Error)) return outcome.job;
      if (resent && outcome instanceof KairosError && outcome.code === 'illegal_state') {
        const job = await this.get(jobId);
        if (job.state !== 'dead') return job;
      }
      throw outcome;
    },
  };

  /** Recurring schedules: each tick of a schedule submits one job to its queue. */
  readonly schedules = {
    /** Creates the schedule, or replaces the one of that name; its next tick is then the first
     * after now. Resolves with the schedule as committed. */
    upsert: async (spec: ScheduleSpec): Promise<ScheduleView> => (await this.call({ t: 'schedule_upsert', rid: 0, schedule: spec })).schedule,
    get: async (name: string): Promise<ScheduleView> => (await this.call({ t: 'schedule_get', rid: 0, name })).schedule,
    /** One page of the tenant's schedules, by name. */
    list: async (options: ScheduleListOptions = {}): Promise<SchedulesPage> => {
      const reply = await this.call({ t: 'schedule_list', rid: 0, limit: options.limit, after: options.after });
      return { schedules: reply.schedules, next: reply.next };
    },
    /** No tick fires until it is resumed. */
    pause: async (name: string): Promise<ScheduleView> => (await this.call({ t: 'schedule_pause', rid: 0, name, paused: true })).schedule,
    /** The next tick is the first after now: ticks that fell while it was paused do not run. */
    resume: async (name: string): Promise<ScheduleView> => (await this.call({ t: 'schedule_pause', rid: 0, name, paused: false })).schedule,
    /** Deletes the schedule; the jobs it already made stay. */
    delete: async (name: string): Promise<void> => {
      const { outcome, resent } = await this.exchange({ t: 'schedule_delete', rid: 0, name });
      if (!(outcome instanceof Error)) return;
      if (resent && outcome instanceof KairosError && outcome.code === 'not_found') return;
      throw outcome;
    },
  };

  /** Circuit breakers, one per queue for the whole cluster: while a queue's breaker is open no
   * job of it is leased (they wait, pending, and spend no attempt), then a few probe jobs decide
   * whether it closes again. */
  readonly breakers = {
    /** Sets the queue's own breaker settings, replacing any it had; omitted fields take the
     * defaults, and `enabled: false` turns the node's default breaker off for the queue.
     * Resolves with the breaker as committed. */
    set: async (queue: string, options: BreakerOptions = {}): Promise<BreakerView> =>
      (await this.call({ t: 'breaker_set', rid: 0, breaker: { ...options, queue } })).breaker,
    /** The queue's breaker with its live window. Rejects with `not_found` when the queue has
     * none (no settings of its own, and the node has no default breaker). */
    get: async (queue: string): Promise<BreakerView> => (await this.call({ t: 'breaker_get', rid: 0, queue })).breaker,
    /** One page of the tenant's breakers, by queue. */
    list: async (options: BreakerListOptions = {}): Promise<BreakersPage> => {
      const reply = await this.call({ t: 'breaker_list', rid: 0, limit: options.limit, after: options.after });
      return { breakers: reply.breakers, next: reply.next };
    },
    /** Drops the queue's own settings: the node's default breaker applies to it again. Rejects
     * with `not_found` when the queue has no settings of its own and the node has no default. */
    clear: async (queue: string): Promise<BreakerView> => (await this.call({ t: 'breaker_clear', rid: 0, queue })).breaker,
    /** Calls `onChange` for every change of state of the tenant's breakers, as the connected
     * node sees them, until the client closes (after a reconnect the watch is made again;
     * changes while the link was down are not replayed). Resolves once the node has agreed. */
    watch: (onChange: OnBreakerChange): Promise<void> => {
      if (this.closing !== null) return Promise.reject(new ConnectionClosedError('client is closing'));
      return this.breakerWatches.watch(onChange);
    },
  };

  // ---- Workers -------------------------------------------------------------------------

  /** Runs `handler` for jobs of `queue`, up to `concurrency` at once. One worker per queue
   * per client. */
  worker(queue: string, handler: Handler, options: WorkerOptions = {}): Worker {
    this.assertOpen();
    if (this.workers.has(queue)) throw new Error(`this client already runs a worker for queue ${queue}`);
    const worker = new QueueWorker(this.workerHost, queue, handler, options, this.warn);
    this.workers.set(queue, worker);
    return worker;
  }

  private returnLease(lease: Lease): void {
    requestRetrying(this.conn, this.runtime, this.retry, { t: 'return', rid: 0, token: lease.token }, { answered: (outcome) => {
      if (outcome instanceof Error) this.warn(`could not return the lease of ${lease.token.jobId}: ${outcome.message}`);
    } });
  }

  // ---- Lifecycle -----------------------------------------------------------------------

  /** Closes the workers (gracefully, see Worker.close), waits for calls in flight to be
   * answered, then closes the connection. Calls made after this reject with
   * ConnectionClosedError. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    await Promise.all([...this.workers.values()].map((worker) => worker.close()));
    await this.inflight.idle();
    this.subscriptions.closeAll(new ConnectionClosedError('client closed'));
    await this.conn.close();
  }

  private ready(reconnected: boolean): void {
    this.learnNodes();
    if (!reconnected) return;
    this.subscriptions.resubscribe();
    this.breakerWatches.rewatch();
    for (const worker of this.workers.values()) worker.reconnected();
  }

  /** Asks the node for the cluster's client URLs, so that a lost node is replaced by another
   * one. Best effort: a node that cannot say is no reason to fail. */
  private learnNodes(): void {
    this.conn.request({ t: 'cluster', rid: 0 }, {
      answered: (outcome) => {
        if (outcome instanceof Error) return;
        this.conn.learnUrls(outcome.members.filter((m) => m.clientUrl !== '' && m.status !== 'dead' && m.status !== 'leaving').map((m) => m.clientUrl));
      },
    }, true);
  }

  private push(message: Push): void {
    switch (message.t) {
      case 'lease': {
        const worker = this.workers.get(message.queue);
        if (worker === undefined) return this.returnLease(message);
        return worker.leased(message);
      }
      case 'revoke':
        for (const worker of this.workers.values()) if (worker.revoked(message)) return;
        return;
      case 'job_changed':
        return this.subscriptions.changed(message);
      case 'breaker_changed':
        return this.breakerWatches.changed(message);
    }
  }

  private failed(error: Error): void {
    this.warn(`client closed: ${error.message}`);
    this.subscriptions.closeAll(error instanceof ConnectionClosedError ? error : new ConnectionClosedError(error.message, { cause: error }));
    for (const worker of this.workers.values()) worker.connectionFailed(error);
  }

  // ---- Requests ------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closing !== null) throw new ConnectionClosedError('client is closing');
  }

  /** Sends with automatic retry and counts the call as in flight until it is answered. */
  private send<R extends Request>(request: R, answerer: Answerer<ReplyTo<R>>, deadlineMs?: number): void {
    this.inflight.started();
    try {
      requestRetrying(this.conn, this.runtime, this.retry, request, new Counted(this.inflight, answerer), deadlineMs);
    } catch (error) {
      // A value the codec cannot encode: the request never left, and the caller gets the throw.
      this.inflight.settled();
      throw error;
    }
  }

  private call<R extends Request>(request: R, deadlineMs?: number): Promise<ReplyTo<R>> {
    if (this.closing !== null) return Promise.reject(new ConnectionClosedError('client is closing'));
    return new Promise((resolve, reject) => this.send(request, new Settles(resolve, reject), deadlineMs));
  }

  /** Like `call`, but also says whether the request was re-sent after a dropped link. */
  private exchange<R extends Request>(request: R): Promise<{ outcome: ReplyTo<R> | Error; resent: boolean }> {
    if (this.closing !== null) return Promise.reject(new ConnectionClosedError('client is closing'));
    return new Promise((resolve) => this.send(request, { answered: (outcome, resent) => resolve({ outcome, resent }) }));
  }
}

class InFlight {
  private count = 0;
  private waiter: (() => void) | null = null;

  started(): void {
    this.count++;
  }

  settled(): void {
    if (--this.count > 0 || this.waiter === null) return;
    this.waiter();
    this.waiter = null;
  }

  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => (this.waiter = resolve));
  }
}

/** Counts a call out of the client's in-flight calls when it is answered. */
class Counted<R> implements Answerer<R> {
  constructor(
    private readonly inflight: InFlight,
    private readonly answerer: Answerer<R>,
  ) {}

  answered(outcome: R | Error, resent: boolean): void {
    this.inflight.settled();
    this.answerer.answered(outcome, resent);
  }
}

/** Settles a promise with the answer. */
class Settles<R> implements Answerer<R> {
  constructor(
    private readonly resolve: (reply: R) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  answered(outcome: R | Error): void {
    if (outcome instanceof Error) this.reject(outcome);
    else this.resolve(outcome);
  }
}
