// A small fake node for the SDK tests: a real `ws` WebSocketServer on 127.0.0.1 that checks
// the bearer token on the upgrade, decodes every frame with the protocol's own validator and
// answers like a node would, from an in-memory job table. It pushes leases by credit, so a
// worker test runs the real flow, and like the node's gateway it counts each connection's
// requests in flight and refuses a submission past `inflightMax`. Tests steer it with
// `intercept` (answer, drop or ignore a message instead) and wait for what it received with
// `waitFor`, never by sleeping.

import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ClientToNode, NodeToClient, SubmitSpec, Welcome } from '../../protocol/client-messages.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import type { ErrorBody } from '../../protocol/errors.ts';
import type { JobView } from '../../protocol/job-view.ts';
import { ADVERTISED_LIMITS } from '../../protocol/limits.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import type { NodeToWorker, WorkerToNode } from '../../protocol/worker-messages.ts';
import { DEFAULT_GATEWAY_CONFIG } from '../../node/core/gateway/gateway.ts';
import { formatJobId } from '../../protocol/job-id.ts';
import { isTerminal } from '../../protocol/job-rules.ts';

export type Inbound = ClientToNode | WorkerToNode;
export type Outbound = NodeToClient | NodeToWorker;

export interface Received {
  conn: FakeConnection;
  msg: Inbound;
}

export class FakeConnection {
  /** Lease slots this connection's worker has announced, per queue. */
  readonly credit = new Map<string, number>();
  readonly subscriptions = new Set<string>();
  closed = false;
  /** Requests received and not yet answered, rid → slots (a batch counts each job). */
  readonly inflight = new Map<number, number>();
  /** The most `inflight` ever held, in slots. */
  inflightPeak = 0;

  constructor(
    readonly index: number,
    private readonly ws: WebSocket,
  ) {}

  send(message: Outbound): void {
    if ('rid' in message && message.rid !== null) this.inflight.delete(message.rid);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeMessage(message));
  }

  get inflightSlots(): number {
    let slots = 0;
    for (const n of this.inflight.values()) slots += n;
    return slots;
  }

  /** Sends in one socket write, so the client reads the frames in one chunk (as it would
   * under load) and handles them in one turn. */
  sendTogether(messages: Outbound[]): void {
    const socket = this.socket();
    socket.cork();
    for (const message of messages) this.send(message);
    socket.uncork();
  }

  /** Stops reading from the socket, pings included: a peer that vanished without closing. */
  freeze(): void {
    this.socket().pause();
  }

  /** ws has no public accessor; its socket is the plain net.Socket underneath. */
  private socket(): { cork(): void; uncork(): void; pause(): void } {
    return (this.ws as unknown as { _socket: { cork(): void; uncork(): void; pause(): void } })._socket;
  }

  /** Cuts the TCP connection without a close handshake, as a crash or a network fault would. */
  drop(): void {
    this.ws.terminate();
  }
}

export interface FakeNodeOptions {
  token?: string;
  leaseMs?: number;
  limits?: Partial<Welcome['limits']>;
}

export class FakeNode {
  readonly received: Received[] = [];
  readonly connections: FakeConnection[] = [];
  readonly jobs = new Map<string, JobView>();
  /** Called before the default handling; return true when the message was dealt with. */
  intercept: ((msg: Inbound, conn: FakeConnection) => boolean) | null = null;
  /** Leases pushed on credit; false leaves jobs pending until a test leases them. */
  autoLease = true;
  leaseMs: number;
  private readonly keys = new Map<string, string>();
  private readonly waiters = new Set<() => void>();
  private seq = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    readonly url: string,
    private readonly limits: Welcome['limits'],
    options: FakeNodeOptions,
  ) {
    this.leaseMs = options.leaseMs ?? 30_000;
  }

  static async start(options: FakeNodeOptions = {}): Promise<FakeNode> {
    const token = options.token ?? 'secret';
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      verifyClient: (info: { req: { headers: Record<string, string | string[] | undefined> } }) => info.req.headers['authorization'] === `Bearer ${token}`,
    });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const { port } = wss.address() as AddressInfo;
    const limits = { ...ADVERTISED_LIMITS, inflightMax: DEFAULT_GATEWAY_CONFIG.connInflightMax, ...options.limits };
    const node = new FakeNode(wss, `ws://127.0.0.1:${port}`, limits, options);
    wss.on('connection', (ws) => node.accept(ws));
    return node;
  }

  /** Resolves with the first message at or after index `from` of `received` that matches. */
  waitFor(match: (msg: Inbound, conn: FakeConnection) => boolean, options: { from?: number; timeoutMs?: number } = {}): Promise<Received> {
    const from = options.from ?? 0;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.received.slice(from).find((r) => match(r.msg, r.conn));
        if (found === undefined) return false;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      const waiter = () => void check();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`fake node: no matching message within ${options.timeoutMs ?? 5000} ms`));
      }, options.timeoutMs ?? 5000);
      if (!check()) this.waiters.add(waiter);
    });
  }

  /** Received messages of one type. */
  messages<T extends Inbound['t']>(t: T): Array<Extract<Inbound, { t: T }>> {
    return this.received.filter((r) => r.msg.t === t).map((r) => r.msg as Extract<Inbound, { t: T }>);
  }

  get live(): FakeConnection | undefined {
    return this.connections.filter((c) => !c.closed).at(-1);
  }

  /** Adds a job as if it had been submitted. */
  addJob(spec: SubmitSpec, state: JobView['state'] = 'pending'): JobView {
    const now = Date.now();
    const job: JobView = {
      id: formatJobId({ shard: this.seq % 16, scheduledAtMs: now, epoch: 1, seq: this.seq++ }),
      queue: spec.queue,
      state,
      priority: spec.priority ?? 0,
      runAt: now,
      scheduledAt: now,
      attempts: 0,
      attemptsMax: spec.retry?.attemptsMax ?? 5,
      idempotencyKey: spec.idempotencyKey ?? null,
      lastError: null,
      result: null,
      payload: spec.payload,
      createdAt: now,
      updatedAt: now,
      finishedAt: isTerminal(state) ? now : null,
    };
    this.jobs.set(job.id, job);
    if (spec.idempotencyKey !== undefined) this.keys.set(spec.idempotencyKey, job.id);
    this.dispatch();
    return job;
  }

  /** Commits a change and pushes it to every subscriber. */
  update(jobId: string, change: Partial<JobView>): JobView {
    const before = this.jobs.get(jobId)!;
    const updatedAt = Math.max(Date.now(), before.updatedAt + 1);
    const job: JobView = { ...before, ...change, updatedAt };
    if (isTerminal(job.state) && job.finishedAt === null) job.finishedAt = updatedAt;
    this.jobs.set(jobId, job);
    for (const conn of this.connections) {
      if (conn.subscriptions.has(jobId)) conn.send({ t: 'job_changed', jobId, job });
    }
    return job;
  }

  /** Pushes a lease for a pending job to `conn`, whatever its credit. */
  lease(conn: FakeConnection, jobId: string): void {
    const job = this.update(jobId, { state: 'running', attempts: this.jobs.get(jobId)!.attempts + 1 });
    conn.send({
      t: 'lease',
      token: { jobId, attempt: job.attempts, epoch: 7 },
      queue: job.queue,
      payload: job.payload,
      attemptsMax: job.attemptsMax,
      leaseMs: this.leaseMs,
      job: { priority: job.priority, runAt: job.runAt, createdAt: job.createdAt, idempotencyKey: job.idempotencyKey, lastError: job.lastError },
    });
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private accept(ws: WebSocket): void {
    const conn = new FakeConnection(this.connections.length, ws);
    this.connections.push(conn);
    ws.on('close', () => {
      conn.closed = true;
    });
    ws.on('message', (data) => {
      const decoded = decodeFromClient(data as Buffer);
      if (!decoded.ok) return conn.send({ t: 'error', rid: decoded.rid, ...decoded.error });
      const msg = decoded.msg;
      this.received.push({ conn, msg });
      if ('rid' in msg && !this.admit(msg, conn)) return;
      if (this.intercept?.(msg, conn) !== true) this.answer(msg, conn);
      for (const waiter of [...this.waiters]) waiter();
    });
  }

  private answer(msg: Inbound, conn: FakeConnection): void {
    switch (msg.t) {
      case 'hello':
        return conn.send({ t: 'welcome', version: 1, node: 'fake-1', shardCount: 16, limits: this.limits });
      case 'cluster':
        return conn.send({
          t: 'cluster_view',
          rid: msg.rid,
          node: 'fake-1',
          members: [{ node: 'fake-1', status: 'alive', incarnation: 1, clientUrl: this.url, inRing: true, shards: 16 }],
          owners: new Uint8Array(32),
        });
      case 'submit': {
        const { jobId, duplicate } = this.submit(msg.job);
        return conn.send({ t: 'submitted', rid: msg.rid, jobId, duplicate });
      }
      case 'submit_batch':
        return conn.send({ t: 'submitted_batch', rid: msg.rid, results: msg.jobs.map((spec) => this.submit(spec)) });
      case 'get':
        return this.withJob(conn, msg.rid, msg.jobId, (job) => conn.send({ t: 'job', rid: msg.rid, job }));
      case 'list':
      case 'dlq_list': {
        const state = msg.t === 'dlq_list' ? 'dead' : msg.state;
        const all = [...this.jobs.values()].reverse().filter((j) => (state === undefined || j.state === state) && (msg.queue === undefined || j.queue === msg.queue));
        const start = msg.after === undefined ? 0 : Number(msg.after);
        const limit = msg.limit ?? 100;
        const jobs = all.slice(start, start + limit);
        return conn.send({ t: 'job_page', rid: msg.rid, jobs, next: start + limit < all.length ? String(start + limit) : null });
      }
      case 'cancel':
        return this.withJob(conn, msg.rid, msg.jobId, (job) => {
          if (isTerminal(job.state)) return conn.send(refusal(msg.rid, { code: 'illegal_state', message: `job ${job.id} is ${job.state}` }));
          conn.send({ t: 'cancelled', rid: msg.rid, job: this.update(job.id, { state: 'cancelled' }) });
        });
      case 'dlq_requeue':
        return this.withJob(conn, msg.rid, msg.jobId, (job) => {
          if (job.state !== 'dead') return conn.send(refusal(msg.rid, { code: 'illegal_state', message: `job ${job.id} is not dead` }));
          conn.send({ t: 'requeued', rid: msg.rid, job: this.update(job.id, { state: 'pending', attemptsMax: job.attemptsMax + (msg.attempts ?? 1), finishedAt: null }) });
        });
      case 'subscribe':
        return this.withJob(conn, msg.rid, msg.jobId, (job) => {
          conn.subscriptions.add(job.id);
          conn.send({ t: 'subscribed', rid: msg.rid, job });
        });
      case 'unsubscribe':
        conn.subscriptions.delete(msg.jobId);
        return conn.send({ t: 'ok', rid: msg.rid });
      case 'credit':
        conn.credit.set(msg.queue, (conn.credit.get(msg.queue) ?? 0) + msg.slots);
        return this.dispatch();
      case 'drain':
        for (const queue of conn.credit.keys()) if (msg.queue === undefined || msg.queue === queue) conn.credit.set(queue, 0);
        return;
      case 'heartbeat':
        return this.withLease(conn, msg.rid, msg.token.jobId, () => conn.send({ t: 'lease_extended', rid: msg.rid, token: msg.token, leaseMs: this.leaseMs }));
      case 'complete':
        return this.withLease(conn, msg.rid, msg.token.jobId, () => {
          this.update(msg.token.jobId, { state: 'succeeded', result: msg.result ?? null });
          conn.send({ t: 'ack', rid: msg.rid });
        });
      case 'fail':
        return this.withLease(conn, msg.rid, msg.token.jobId, (job) => {
          const dead = !msg.retryable || job.attempts >= job.attemptsMax;
          this.update(job.id, { state: dead ? 'dead' : 'pending', lastError: msg.error });
          conn.send({ t: 'ack', rid: msg.rid });
          if (!dead) this.dispatch();
        });
      case 'return':
        return this.withLease(conn, msg.rid, msg.token.jobId, (job) => {
          this.update(job.id, { state: 'pending', attempts: job.attempts - 1 });
          conn.send({ t: 'ack', rid: msg.rid });
        });
    }
  }

  /** Counts a request in flight; refuses a submission past `inflightMax` as the gateway does. */
  private admit(msg: Extract<Inbound, { rid: number }>, conn: FakeConnection): boolean {
    const slots = msg.t === 'submit_batch' ? msg.jobs.length : 1;
    if ((msg.t === 'submit' || msg.t === 'submit_batch') && conn.inflightSlots + slots > this.limits.inflightMax) {
      conn.send(refusal(msg.rid, { code: 'overloaded', message: `connection has ${conn.inflightSlots} requests in flight`, retryAfterMs: 20 }));
      return false;
    }
    conn.inflight.set(msg.rid, slots);
    conn.inflightPeak = Math.max(conn.inflightPeak, conn.inflightSlots);
    return true;
  }

  private submit(spec: SubmitSpec): { jobId: string; duplicate: boolean } {
    const existing = spec.idempotencyKey === undefined ? undefined : this.keys.get(spec.idempotencyKey);
    if (existing !== undefined) return { jobId: existing, duplicate: true };
    return { jobId: this.addJob(spec).id, duplicate: false };
  }

  private withJob(conn: FakeConnection, rid: number, jobId: string, then: (job: JobView) => void): void {
    const job = this.jobs.get(jobId);
    if (job === undefined) return conn.send(refusal(rid, { code: 'not_found', message: `no job ${jobId}` }));
    then(job);
  }

  /** Like the node, a token is only as good as the job's state: running, or it is stale. */
  private withLease(conn: FakeConnection, rid: number, jobId: string, then: (job: JobView) => void): void {
    const job = this.jobs.get(jobId);
    if (job?.state !== 'running') return conn.send(refusal(rid, { code: 'stale_lease', message: `no running job ${jobId}` }));
    then(job);
  }

  private dispatch(): void {
    if (!this.autoLease) return;
    for (const job of this.jobs.values()) {
      if (job.state !== 'pending') continue;
      const conn = this.connections.find((c) => !c.closed && (c.credit.get(job.queue) ?? 0) > 0);
      if (conn === undefined) continue;
      conn.credit.set(job.queue, conn.credit.get(job.queue)! - 1);
      this.lease(conn, job.id);
    }
  }
}

function refusal(rid: number, body: ErrorBody): Outbound {
  return { t: 'error', rid, ...body };
}
