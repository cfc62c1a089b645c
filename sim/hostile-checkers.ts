// The checkers of what connections may do to jobs, and what the node owes them. They watch
// every request as it reaches a gateway (sim-link.ts's tap), every commit the store applies,
// the nodes' logs and the answers hostile clients get, and report to the run's Checkers (the
// first violation stops the run):
// (i)   a job changes only through its own tenant's requests and its current lease holder's
//       connection: every committed complete, retry, bury and release was asked for, under the
//       lease's token, by the connection the lease was granted to, or is the owner's own
//       expiry or worker-loss action; every cancel and requeue by the job's tenant; every lease
//       goes to a worker of the job's tenant. No hostile request is ever accepted, nor answered
//       with another tenant's job, and every stranger gets the same refusal text;
// (ii)  a worker connection's close ends its leases: within 1 s of the close reaching its node
//       none of its jobs is still running under it, unless its shard changed hands meanwhile,
//       its owner is not serving, its node could not tell the owner's (not in its ring), or
//       the nodes could not talk promptly (health.ts);
// (iii) store work is never starved: no node loses a shard (stops serving it because it could
//       not renew in time, or finds it taken) while it is healthy, read floods or not;
// (iv)  a connection that never sends `hello` is closed by the hello deadline.

import type { NodeToClient } from '../protocol/client-messages.ts';
import type { Job } from '../node/core/job/job.ts';
import type { LeaseToken } from '../protocol/job-rules.ts';
import type { CommitBatch, WriteOutcome } from '../node/core/store.ts';
import type { Checkers } from './checkers.ts';
import type { EventQueue } from './event-queue.ts';
import type { Health } from './health.ts';
import type { SimHost } from './sim-host.ts';
import type { FromNode, LinkTap, SimLink, ToNode } from './sim-link.ts';

/** The owner's own reasons for ending an attempt (shard-owner.ts): nobody asked for these. */
const LEASE_EXPIRED = 'lease expired';
const WORKER_LOST = 'the worker connection holding the lease closed';
/** How long after the close reaches its node a worker connection's leases may still run. */
export const WORKER_LOSS_BOUND_MS = 1_000;
/** How far back a fault can make a node lose a shard: a shard lease and a renewal period. */
const SHARD_LOSS_LOOKBACK_MS = 8_000;
/** The hello deadline fires on a timer; the close follows at once. */
const HELLO_SLACK_MS = 100;

/** What the checkers need to know of the simulated world. */
export interface World {
  readonly nowMs: () => number;
  readonly host: (id: string) => SimHost | undefined;
  /** The store's shard row: who holds it, at which epoch. */
  readonly shard: (shard: number) => { owner: string | null; epoch: number };
  readonly cluster: boolean;
  readonly helloDeadlineMs: number;
}

/** One settling request as it reached a gateway. */
interface Settle {
  t: 'complete' | 'fail' | 'return';
  worker: string;
  tenant: string;
  result: Uint8Array | null;
  error: string | null;
}

export class HostileCheckers implements LinkTap {
  /** `jobId/attempt/epoch` → the settling requests sent under that token. */
  private readonly settles = new Map<string, Settle[]>();
  /** Job id → tenants that asked to cancel or requeue it. */
  private readonly cancels = new Map<string, Set<string>>();
  private readonly requeues = new Map<string, Set<string>>();
  /** Worker id (`<node>/<connection>`) → its tenant, once it sent credit. */
  private readonly workerTenants = new Map<string, string>();
  /** Worker id → when its connection's close reached its node. */
  private readonly closedAt = new Map<string, number>();
  /** Workers whose node crashed or left under them: a later owner of their jobs, on that node
   * again, finds them gone when it loads the jobs, and ends their leases. */
  private readonly lostWithNodes = new Set<string>();
  /** Worker id → the jobs running under its leases (as committed). */
  private readonly runningBy = new Map<string, Set<string>>();
  /** Every job id the store accepted, in order: what hostile clients may guess. */
  readonly knownIds: string[] = [];
  /** Refusal texts strangers got, per code, with the job id and token taken out. */
  private readonly strangerTexts = new Map<string, string>();
  /** How often each check applied, for the run's report: hostile requests answered, leases
   * of a closed connection held to the bound (the cluster healthy), silent connections closed
   * in time. */
  readonly counts = { strangers: 0, leaseEnds: 0, silentClosed: 0 };

  constructor(
    private readonly checkers: Checkers,
    private readonly queue: EventQueue,
    private readonly health: Health,
    private readonly world: World,
    private readonly startMs: number,
  ) {}

  private fail(invariant: string, detail: string): void {
    this.checkers.report(invariant, detail);
  }

  private get relMs(): number {
    return this.world.nowMs() - this.startMs;
  }

  // ---- What reaches the gateways (LinkTap) -----------------------------------------------

  delivered(link: SimLink, message: ToNode): void {
    switch (message.t) {
      case 'credit':
        this.workerTenants.set(link.workerId, link.tenant);
        return;
      case 'complete':
      case 'fail':
      case 'return': {
        const key = tokenKey(message.token);
        let list = this.settles.get(key);
        if (list === undefined) this.settles.set(key, (list = []));
        list.push({
          t: message.t,
          worker: link.workerId,
          tenant: link.tenant,
          result: message.t === 'complete' ? (message.result ?? null) : null,
          error: message.t === 'fail' ? message.error : null,
        });
        return;
      }
      case 'cancel':
        return add(this.cancels, message.jobId, link.tenant);
      case 'dlq_requeue':
        return add(this.requeues, message.jobId, link.tenant);
      default:
        return;
    }
  }

  lostWithNode(link: SimLink): void {
    this.lostWithNodes.add(link.workerId);
  }

  closeReached(link: SimLink): void {
    const worker = link.workerId;
    if (this.closedAt.has(worker)) return;
    this.closedAt.set(worker, this.world.nowMs());
    for (const jobId of this.runningBy.get(worker) ?? []) this.expectLeaseEnds(link, worker, jobId);
  }

  // ---- What the store applies (after Checkers has checked it) ----------------------------

  committed(batch: CommitBatch, outcomes: WriteOutcome[], before: Array<Job | undefined>): void {
    batch.writes.forEach((write, i) => {
      if (!outcomes[i]!.ok) return;
      if (write.kind === 'insert') {
        this.knownIds.push(write.job.id);
        if (write.job.state === 'running') this.leased(write.job);
        return;
      }
      const prev = before[i];
      const next = write.next;
      if (prev === undefined) return;
      if (prev.state === 'running' && prev.leaseWorker !== null) remove(this.runningBy, prev.leaseWorker, prev.id);
      if (next.state === 'running' && prev.state !== 'running') return this.leased(next);
      if (next.state === 'cancelled') return this.byTenant(this.cancels, 'cancel', prev);
      if (prev.state === 'dead' && next.state === 'pending') return this.byTenant(this.requeues, 'requeue', prev);
      if (prev.state === 'running' && write.token !== null) this.settled(prev, next);
    });
  }

  private leased(job: Job): void {
    const worker = job.leaseWorker;
    if (worker === null) return;
    const tenant = this.workerTenants.get(worker);
    if (tenant !== undefined && tenant !== job.tenant) {
      this.fail('only its tenant changes a job', `${job.id} of ${job.tenant} leased to ${worker}, a worker of ${tenant}`);
    }
    add(this.runningBy, worker, job.id);
    // Leased to a connection whose close already reached its node: a credit offer of the worker
    // to another node was overtaken there by the close (`conn_closed`), so that node's owners
    // heard the worker was gone before they were offered its slots (seeds 350, 569). The
    // worker's node answers the lease with `conn_closed` again, and the lease ends in the bound.
    if (this.closedAt.has(worker)) this.expectLeaseEnds(null, worker, job.id, true);
  }

  private byTenant(asked: Map<string, Set<string>>, what: string, prev: Job): void {
    if (asked.get(prev.id)?.has(prev.tenant) !== true) {
      this.fail('only its tenant changes a job', `${what} of ${prev.id} (${prev.tenant}) committed, but no connection of ${prev.tenant} asked for it`);
    }
  }

  /** A committed complete, retry, bury or release under `prev`'s lease. */
  private settled(prev: Job, next: Job): void {
    const holder = prev.leaseWorker;
    const key = `${prev.id}/${prev.attempts}/${prev.leaseEpoch}`;
    const asked = this.settles.get(key) ?? [];
    const byHolder = asked.filter((s) => s.worker === holder && s.tenant === prev.tenant);
    let ok: boolean;
    let what: string;
    if (next.state === 'succeeded') {
      what = 'complete';
      ok = byHolder.some((s) => s.t === 'complete' && sameBytes(s.result, next.result));
    } else if (next.state === 'pending' && next.retry.attemptsMax === prev.retry.attemptsMax + 1) {
      what = 'release';
      ok = byHolder.some((s) => s.t === 'return');
    } else {
      what = next.state === 'dead' ? 'bury' : 'retry';
      const error = next.lastError;
      // The owner's own texts, unless a stranger sent a failure that says the same.
      const mimicked = asked.some((s) => s.t === 'fail' && s.error === error && !byHolder.includes(s));
      ok =
        (error === LEASE_EXPIRED && !mimicked) ||
        (error === WORKER_LOST && !mimicked && holder !== null && (this.closedAt.has(holder) || this.lostWithNodes.has(holder))) ||
        byHolder.some((s) => s.t === 'fail' && s.error === error);
    }
    if (ok) return;
    const others = asked.filter((s) => !byHolder.includes(s)).map((s) => `${s.t} from ${s.worker} (${s.tenant})`);
    this.fail(
      'only its lease holder settles a lease',
      `${what} of ${key} committed (error ${JSON.stringify(next.lastError)}); the lease was granted to ${holder} (${prev.tenant}), ` +
        `which asked for nothing like it${others.length > 0 ? `; asked by: ${others.join(', ')}` : ''}`,
    );
  }

  // ---- (ii) A closed worker connection's leases ------------------------------------------

  /** `late`: leased after the close had reached the worker's node. */
  private expectLeaseEnds(link: SimLink | null, worker: string, jobId: string, late = false): void {
    const job = this.checkers.job(jobId);
    if (job === undefined || job.state !== 'running') return;
    const attempt = job.attempts;
    const shardAtStart = { ...this.world.shard(job.shard) };
    const home = link?.host ?? this.world.host(worker.slice(0, worker.indexOf('/')));
    // The close is told to the members of the ring its node knows: the owner must be one.
    const ring = home?.node?.ring() ?? null;
    // (Outside a cluster only the worker's own node hears; owners elsewhere let the lease run out.)
    const told = shardAtStart.owner === home?.id || (this.world.cluster && shardAtStart.owner !== null && ring?.includes(shardAtStart.owner) === true);
    const fromMs = this.relMs;
    const leasedAtMs = this.world.nowMs();
    this.queue.schedule(WORKER_LOSS_BOUND_MS, () => {
      const shard = this.world.shard(job.shard);
      const owner = shard.owner === null ? undefined : this.world.host(shard.owner);
      const serving = owner?.node?.routes.ownerOf(job.shard) !== undefined && !owner.paused;
      if (!told || !serving || shard.epoch !== shardAtStart.epoch || !this.health.talkHealthy(fromMs - 2_000, this.relMs)) return;
      this.counts.leaseEnds++;
      const now = this.checkers.job(jobId);
      if (now === undefined || now.state !== 'running' || now.attempts !== attempt || now.leaseWorker !== worker) return;
      this.fail(
        "a closed worker connection's leases end at once",
        `${jobId}/${attempt} still runs under ${worker} ${WORKER_LOSS_BOUND_MS} ms after ` +
          (late ? `it was leased to it, ${Math.round(leasedAtMs - this.closedAt.get(worker)!)} ms after ` : '') +
          `its connection's close reached ${home?.id ?? 'its node'} ` +
          `(shard ${job.shard} served by ${shard.owner} at epoch ${shard.epoch} throughout, nodes talking freely)`,
      );
    });
  }

  // ---- (iii) Shards lost by healthy nodes ------------------------------------------------

  /** A node's log line. */
  logged(host: string, event: string, fields: Record<string, unknown> | undefined): void {
    if (event !== 'shards.lost' && event !== 'shards.lease_expiring') return;
    const node = Number(host.slice(1));
    const nowMs = this.relMs;
    if (!this.health.nodeHealthy(node, nowMs - SHARD_LOSS_LOOKBACK_MS, nowMs)) return;
    // A majority of the nodes that could not hear this one declares it dead and takes its
    // shards over at once: a fault between any two nodes excuses the loss.
    if (!this.health.talkHealthy(nowMs - SHARD_LOSS_LOOKBACK_MS, nowMs)) return;
    const why = event === 'shards.lost' ? 'found it taken when renewing' : 'could not renew it in time';
    this.fail(
      'no healthy node loses a shard',
      `${host} ${why}: shard ${String(fields?.shard)} at epoch ${String(fields?.epoch)}, with no fault of its own, between nodes or of the store in the last ${SHARD_LOSS_LOOKBACK_MS / 1000} s`,
    );
  }

  // ---- (iv) Connections that never say hello ---------------------------------------------

  /** `link` was opened and will never send `hello`: its node must close it by the deadline. */
  silentOpened(link: SimLink): void {
    const check = (): void => {
      if (!link.open) return void this.counts.silentClosed++;
      // A paused host runs its timers when it wakes.
      if (link.host.pausedUntil + HELLO_SLACK_MS > this.world.nowMs()) return void this.queue.schedule(link.host.pausedUntil + HELLO_SLACK_MS - this.world.nowMs(), check);
      this.fail('silent connections are closed by the hello deadline', `${link.id} on ${link.host.id} sent nothing for ${this.world.helloDeadlineMs + HELLO_SLACK_MS} ms and is still open`);
    };
    this.queue.schedule(this.world.helloDeadlineMs + HELLO_SLACK_MS, check);
  }

  // ---- Answers to hostile requests -------------------------------------------------------

  /** `reply` answered `request`, which `link` sent on purpose as a stranger: the token is not
   * its to use, or the job is not its tenant's. */
  hostileAnswered(link: SimLink, request: ToNode, reply: FromNode): void {
    this.counts.strangers++;
    const what = `${request.t}${'token' in request ? ` of ${tokenKey(request.token)}` : 'jobId' in request ? ` of ${request.jobId}` : ''} from ${link.workerId} (${link.tenant})`;
    switch (reply.t) {
      case 'ack':
      case 'lease_extended':
      case 'cancelled':
      case 'requeued':
        return this.fail('no hostile request changes a job', `${what} was answered ${reply.t}`);
      case 'error': {
        if (reply.code !== 'stale_lease' && reply.code !== 'not_found') return;
        let text = reply.message;
        if ('token' in request) text = text.replaceAll(`${request.token.jobId}/${request.token.attempt}/${request.token.epoch}`, '<token>');
        const jobId = 'token' in request ? request.token.jobId : 'jobId' in request ? request.jobId : null;
        if (jobId !== null) text = text.replaceAll(jobId, '<job>');
        const seen = this.strangerTexts.get(reply.code);
        if (seen === undefined) this.strangerTexts.set(reply.code, text);
        else if (seen !== text) this.fail('refusals tell strangers nothing', `${what} was refused ${reply.code} "${text}", another stranger "${seen}"`);
        return;
      }
      default:
        return;
    }
  }

  /** A read `link` made: it may only ever see its own tenant's jobs. */
  readAnswered(link: SimLink, reply: NodeToClient | FromNode): void {
    const ids = reply.t === 'job' ? [reply.job.id] : reply.t === 'job_page' ? reply.jobs.map((j) => j.id) : [];
    for (const id of ids) {
      const tenant = this.checkers.job(id)?.tenant;
      if (tenant !== link.tenant) this.fail('a tenant reads only its own jobs', `${link.id} of ${link.tenant} was shown ${id}, a job of ${tenant ?? 'nobody'}`);
    }
  }

  /** Jobs running now, as committed. */
  running(): string[] {
    const out: string[] = [];
    for (const jobs of this.runningBy.values()) out.push(...jobs);
    return out;
  }
}

export function tokenKey(token: LeaseToken): string {
  return `${token.jobId}/${token.attempt}/${token.epoch}`;
}

function add<V>(map: Map<string, Set<V>>, key: string, value: V): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(value);
}

function remove<V>(map: Map<string, Set<V>>, key: string, value: V): void {
  const set = map.get(key);
  if (set?.delete(value) === true && set.size === 0) map.delete(key);
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return (a === null || a.length === 0) && (b === null || b.length === 0);
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
