// Hostile tenants and connections. They speak the protocol over the same simulated links as
// everyone else, so every request goes through a real gateway and a real owner, and each
// answer they get is handed to the checkers (hostile-checkers.ts), which know it must be a
// refusal. What they do, each on in some seeds (swarm style):
// - forger: a tenant of its own (`tx`) sends complete, fail, heartbeat and return under tokens
//   it makes up from job ids it sees (its own submissions) or guesses (other tenants' jobs; the
//   token is (jobId, attempt 1.., the epoch in the id), or the exact one: the token is a fence,
//   not a secret), cancels and reads other tenants' jobs; and a rogue connection of an honest
//   tenant settles that tenant's running leases, granted to other connections;
// - worker: `tx`'s worker, which runs `tx`'s jobs but settles some of its leases from a second
//   connection first, replays the tokens of its earlier leases once they were granted again,
//   and sometimes drops its connection while it holds leases (they must end at once);
// - silent: connections that never send `hello`;
// - flood: a connection that pipelines bursts of `get` and `list`, past its read bound.

import { formatJobId, parseJobId } from '../protocol/job-id.ts';
import { isTerminal, type LeaseToken } from '../protocol/job-rules.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Checkers } from './checkers.ts';
import type { EventQueue } from './event-queue.ts';
import { tokenKey, type HostileCheckers } from './hostile-checkers.ts';
import type { FromNode, LinkEnds, SimLink, ToNode } from './sim-link.ts';

/** The hostile tenant. */
export const HOSTILE_TENANT = 'tx';
/** Share of seeds with hostile clients. */
const HOSTILE_SEEDS = 0.5;
const REDIAL_MS = 300;

export interface HostileMix {
  forger: boolean;
  worker: boolean;
  /** Connections that never say hello. */
  silent: number;
  flood: boolean;
}

/** What this seed's hostile clients do, or null for none; `always` puts some in every seed. */
export function drawHostileMix(random: SeededRandom, always: boolean): HostileMix | null {
  if (!always && random.next() >= HOSTILE_SEEDS) return null;
  const on = (p: number) => random.next() < p;
  const mix = { forger: on(0.7), worker: on(0.7), silent: on(0.5) ? 1 + random.int(4) : 0, flood: on(0.5) };
  if (!mix.forger && !mix.worker && mix.silent === 0 && !mix.flood) mix.forger = true;
  return mix;
}

export function describeHostile(mix: HostileMix | null): string {
  if (mix === null) return '';
  const parts = [mix.forger && 'forger', mix.worker && 'worker', mix.silent > 0 && `silent×${mix.silent}`, mix.flood && 'flood'].filter(Boolean);
  return `hostile=${parts.join('+')}`;
}

export interface HostileContext {
  queue: EventQueue;
  random: SeededRandom;
  /** Connects to node `host` (a random one when absent) as `tenant`; null when it cannot be
   * reached. */
  dial(tenant: string, ends: LinkEnds, host?: number): SimLink | null;
  hosts: number;
  checks: HostileCheckers;
  checkers: Checkers;
  /** The honest tenants. */
  tenants: readonly string[];
  /** Mischief stops here (virtual ms, absolute); the worker then only works. */
  activeUntilMs: number;
}

export function startHostiles(mix: HostileMix, ctx: HostileContext): void {
  if (mix.forger) new Forger(ctx).start();
  // One on every node: outside a cluster a node's workers get only the jobs of its own shards.
  if (mix.worker) for (let host = 0; host < ctx.hosts; host++) new HostileWorker(ctx, host).start();
  if (mix.flood) new ReadFlood(ctx).start();
  for (let i = 0; i < mix.silent; i++) {
    ctx.queue.schedule(ctx.random.next() * (ctx.activeUntilMs - ctx.queue.nowMs), () => {
      const link = ctx.dial(HOSTILE_TENANT, { onMessage() {}, onClose() {} });
      if (link !== null) link.host.run(() => ctx.checks.silentOpened(link));
    });
  }
}

/** One connection: says hello, matches answers to requests, dials again when dropped. */
class Conn {
  link: SimLink | null = null;
  greeted = false;
  private nextRid = 0;
  private readonly waiting = new Map<number, (reply: FromNode) => void>();
  onWelcome: () => void = () => {};
  onPush: (message: FromNode) => void = () => {};
  onClosed: () => void = () => {};

  constructor(
    private readonly ctx: HostileContext,
    readonly tenant: string,
    /** The node it always dials; a random one each time when undefined. */
    private readonly host?: number,
  ) {}

  connect(): void {
    if (this.link?.open) return;
    this.greeted = false;
    const link: SimLink | null = this.ctx.dial(
      this.tenant,
      {
        onMessage: (m) => {
          if (this.link === link) this.message(m);
        },
        onClose: () => {
          if (this.link === link) this.closed();
        },
      },
      this.host,
    );
    this.link = link;
    if (link === null) return void this.ctx.queue.schedule(REDIAL_MS, () => this.connect());
    link.send({ t: 'hello', versions: [1] });
  }

  /** Sends the request `build` makes with a fresh rid; false when not connected. */
  request(build: (rid: number) => ToNode, answered: (reply: FromNode, link: SimLink, request: ToNode) => void): boolean {
    const link = this.link;
    if (link === null || !link.open || !this.greeted) return false;
    const rid = ++this.nextRid;
    const request = build(rid);
    this.waiting.set(rid, (reply) => answered(reply, link, request));
    link.send(request);
    return true;
  }

  send(message: ToNode): void {
    if (this.link?.open && this.greeted) this.link.send(message);
  }

  private message(m: FromNode): void {
    if (m.t === 'welcome') {
      this.greeted = true;
      return this.onWelcome();
    }
    const rid = 'rid' in m ? m.rid : null;
    const answered = rid === null ? undefined : this.waiting.get(rid);
    if (answered === undefined) return this.onPush(m);
    this.waiting.delete(rid!);
    answered(m);
  }

  private closed(): void {
    this.greeted = false;
    this.waiting.clear();
    this.onClosed();
    this.ctx.queue.schedule(REDIAL_MS, () => this.connect());
  }
}

/** A request under `token` that its sender has no right to make; `writes` leaves heartbeats
 * out. */
function mischief(random: SeededRandom, token: LeaseToken, n: number, writes = false): (rid: number) => ToNode {
  switch (random.int(writes ? 3 : 4)) {
    case 0:
      // A result no honest worker sends: a commit carrying it came from here.
      return (rid) => ({ t: 'complete', rid, token, result: new Uint8Array([0xee, n & 0xff, (n >> 8) & 0xff]) });
    case 1:
      return (rid) => ({ t: 'fail', rid, token, error: `forged failure #${n}`, retryable: random.next() < 0.5 });
    case 2:
      return (rid) => ({ t: 'return', rid, token });
    default:
      return (rid) => ({ t: 'heartbeat', rid, token });
  }
}

function pick<T>(random: SeededRandom, items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[random.int(items.length)];
}

/** Tokens made up for job ids seen or guessed, from a connection of its own tenant; and a rogue
 * connection of an honest tenant settling that tenant's leases. */
class Forger {
  private readonly conn: Conn;
  private readonly rogue: Conn;
  private n = 0;

  constructor(private readonly ctx: HostileContext) {
    this.conn = new Conn(ctx, HOSTILE_TENANT);
    this.rogue = new Conn(ctx, pick(ctx.random, ctx.tenants)!);
  }

  start(): void {
    this.conn.connect();
    this.rogue.connect();
    this.tick();
  }

  private tick(): void {
    const { ctx } = this;
    if (ctx.queue.nowMs >= ctx.activeUntilMs) return;
    ctx.queue.schedule(250 + ctx.random.int(750), () => {
      this.forge();
      this.rogueSettle();
      this.tick();
    });
  }

  /** A job id this tenant could know of: a running job of another tenant or its own, any job,
   * or a guess next to one of its own. */
  private target(): string | undefined {
    const { ctx } = this;
    const r = ctx.random.next();
    const running = ctx.checks.running();
    const tenantOf = (id: string) => ctx.checkers.job(id)?.tenant;
    if (r < 0.35) return pick(ctx.random, running.filter((id) => tenantOf(id) !== HOSTILE_TENANT));
    if (r < 0.55) return pick(ctx.random, running.filter((id) => tenantOf(id) === HOSTILE_TENANT));
    if (r < 0.8) return pick(ctx.random, ctx.checks.knownIds);
    const own = pick(ctx.random, ctx.checks.knownIds.filter((id) => tenantOf(id) === HOSTILE_TENANT));
    const parts = own === undefined ? null : parseJobId(own);
    if (parts === null) return undefined;
    return formatJobId({ ...parts, seq: Math.max(0, parts.seq + ctx.random.int(11) - 5) });
  }

  /** The token of a job as a stranger would make it: attempt 1 (or a few), the epoch in the
   * id; sometimes the exact current one. */
  private token(jobId: string): LeaseToken {
    const { ctx } = this;
    const job = ctx.checkers.job(jobId);
    if (job !== undefined && job.state === 'running' && job.leaseEpoch !== null && ctx.random.next() < 0.4) {
      return { jobId, attempt: job.attempts, epoch: job.leaseEpoch };
    }
    return { jobId, attempt: ctx.random.next() < 0.7 ? 1 : 1 + ctx.random.int(3), epoch: parseJobId(jobId)?.epoch ?? 1 };
  }

  private forge(): void {
    const { ctx } = this;
    const jobId = this.target();
    if (jobId === undefined) return;
    const tenant = ctx.checkers.job(jobId)?.tenant;
    const answered = (reply: FromNode, link: SimLink, request: ToNode) => {
      ctx.checks.hostileAnswered(link, request, reply);
      if (request.t === 'get') ctx.checks.readAnswered(link, reply);
    };
    // Another tenant's job: cancelled or read, now and then, as well as settled.
    if (tenant !== HOSTILE_TENANT && ctx.random.next() < 0.25) {
      this.conn.request((rid) => (ctx.random.next() < 0.5 ? { t: 'cancel', rid, jobId } : { t: 'get', rid, jobId }), answered);
      return;
    }
    this.conn.request(mischief(ctx.random, this.token(jobId), ++this.n), answered);
  }

  private rogueSettle(): void {
    const { ctx } = this;
    const mine = ctx.checks.running().filter((id) => ctx.checkers.job(id)?.tenant === this.rogue.tenant);
    const jobId = pick(ctx.random, mine);
    if (jobId === undefined) return;
    this.rogue.request(mischief(ctx.random, this.token(jobId), ++this.n), (reply, link, request) => ctx.checks.hostileAnswered(link, request, reply));
  }
}

interface Held {
  token: LeaseToken;
  queue: string;
  link: SimLink;
}

/** The hostile tenant's worker: it does run its tenant's jobs (they must finish), from one
 * connection, but settles some leases from another connection first, replays old tokens, and
 * drops its connection with leases held. */
class HostileWorker {
  private readonly main: Conn;
  private readonly other: Conn;
  private readonly held = new Map<string, Held>();
  private readonly history: LeaseToken[] = [];
  private n = 0;

  constructor(
    private readonly ctx: HostileContext,
    host: number,
  ) {
    this.main = new Conn(ctx, HOSTILE_TENANT, host);
    this.other = new Conn(ctx, HOSTILE_TENANT);
    this.main.onWelcome = () => {
      this.main.send({ t: 'credit', queue: 'q0', slots: 3 });
      this.main.send({ t: 'credit', queue: 'q1', slots: 3 });
    };
    this.main.onPush = (m) => {
      if (m.t === 'lease') this.leased(m.token, m.queue);
      else if (m.t === 'revoke') this.finished(tokenKey(m.token));
    };
    // Its attempts died with the connection; it comes back with fresh credit.
    this.main.onClosed = () => this.held.clear();
  }

  start(): void {
    this.main.connect();
    this.other.connect();
    this.replayLater();
  }

  private get active(): boolean {
    return this.ctx.queue.nowMs < this.ctx.activeUntilMs;
  }

  private leased(token: LeaseToken, queue: string): void {
    const { ctx } = this;
    const link = this.main.link!;
    this.held.set(tokenKey(token), { token, queue, link });
    this.history.push(token);
    const r = this.active ? ctx.random.next() : 1;
    const soon = 1 + ctx.random.int(30);
    if (r < 0.3) {
      // Settled first from the other connection (refused), then properly from this one.
      ctx.queue.schedule(soon, () => this.other.request(mischief(ctx.random, token, ++this.n), (reply, l, request) => ctx.checks.hostileAnswered(l, request, reply)));
      ctx.queue.schedule(soon + 20 + ctx.random.int(200), () => this.settle(token, 'complete'));
    } else if (r < 0.5) {
      ctx.queue.schedule(soon, () => this.settle(token, 'fail'));
    } else if (r < 0.58) {
      ctx.queue.schedule(soon, () => this.settle(token, 'return'));
    } else if (r < 0.66) {
      // The process dies with its leases: they must end at once, everywhere.
      ctx.queue.schedule(soon, () => {
        if (this.main.link === link) link.disconnect();
      });
    } else {
      ctx.queue.schedule(soon, () => this.settle(token, 'complete'));
    }
  }

  /** Settles a lease it holds, from the connection that holds it. */
  private settle(token: LeaseToken, how: 'complete' | 'fail' | 'return'): void {
    const held = this.held.get(tokenKey(token));
    if (held === undefined || this.main.link !== held.link) return;
    this.main.request(
      (rid) =>
        how === 'fail'
          ? { t: 'fail', rid, token, error: `tx gave up on attempt ${token.attempt}`, retryable: true }
          : how === 'return'
            ? { t: 'return', rid, token }
            : { t: 'complete', rid, token },
      (reply) => {
        if (reply.t === 'ack' && how !== 'return') this.ctx.checkers.verdictAcked(token.jobId, token.attempt, how);
        this.finished(tokenKey(token));
      },
    );
  }

  /** The slot of a finished attempt is free again. */
  private finished(key: string): void {
    const held = this.held.get(key);
    if (held === undefined) return;
    this.held.delete(key);
    if (this.main.link === held.link) this.main.send({ t: 'credit', queue: held.queue, slots: 1 });
  }

  /** Now and then, an old token of its own whose job has been leased again (or finished), from
   * either connection. */
  private replayLater(): void {
    const { ctx } = this;
    if (!this.active) return;
    ctx.queue.schedule(200 + ctx.random.int(600), () => {
      // Stale for good: attempts only grow, and a finished job is not leased again (nothing
      // here requeues). (A lease whose write failed may be granted again under the same token,
      // so "not running now" is not enough.)
      const stale = this.history.filter((t) => {
        const job = ctx.checkers.job(t.jobId);
        return job !== undefined && (job.attempts > t.attempt || isTerminal(job.state));
      });
      const token = pick(ctx.random, stale);
      if (token !== undefined) {
        // From the connection that held it, no heartbeat: a zombie owner (paused past its shard
        // lease, not yet aware) still holds the old lease in memory and may extend it, which
        // changes nothing (the heartbeat writes nothing, and every write is fenced).
        const own = ctx.random.next() < 0.6;
        (own ? this.main : this.other).request(mischief(ctx.random, token, ++this.n, own), (reply, link, request) => ctx.checks.hostileAnswered(link, request, reply));
      }
      this.replayLater();
    });
  }
}

/** Bursts of pipelined reads on one connection, well past its read bound (and, in some seeds,
 * its in-flight bound: refusals, then a close). */
class ReadFlood {
  private readonly conn: Conn;

  constructor(private readonly ctx: HostileContext) {
    this.conn = new Conn(ctx, HOSTILE_TENANT);
  }

  start(): void {
    this.conn.connect();
    this.burstLater();
  }

  private burstLater(): void {
    const { ctx } = this;
    if (ctx.queue.nowMs >= ctx.activeUntilMs) return;
    ctx.queue.schedule(3_000 + ctx.random.int(4_000), () => {
      const size = 16 + ctx.random.int(48);
      const answered = (reply: FromNode, link: SimLink, request: ToNode) => {
        ctx.checks.readAnswered(link, reply);
        if (request.t === 'get' && ctx.checkers.job(request.jobId)?.tenant !== HOSTILE_TENANT) ctx.checks.hostileAnswered(link, request, reply);
      };
      for (let i = 0; i < size; i++) {
        const jobId = ctx.random.next() < 0.5 ? pick(ctx.random, ctx.checks.knownIds) : undefined;
        const sent = this.conn.request(
          (rid) =>
            jobId !== undefined
              ? { t: 'get', rid, jobId }
              : { t: 'list', rid, limit: 1 + ctx.random.int(1_000), ...(ctx.random.next() < 0.3 ? { state: 'succeeded' as const } : {}) },
          answered,
        );
        if (!sent) break;
      }
      this.burstLater();
    });
  }
}
