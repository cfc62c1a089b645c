// The shard manager: moves this node toward owning the shards it should own. It acquires them
// through the store's fenced path (each acquisition bumps the epoch), spawns one owner per
// shard at that epoch, renews all leases in one statement, and stops serving a shard before
// its lease can lapse by this node's own monotonic clock. An owner that was deposed or failed
// is replaced by acquiring the shard again at a new epoch.
//
// Which shards the node should own is policy, given from outside: all of them for a node
// alone; in a cluster, those the consistent-hash ring gives it (node.ts).

import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg } from '../owner/owner-messages.ts';
import type { OwnerExit } from '../owner/shard-owner.ts';
import type { ShardLease } from '../store.ts';
import type { RoutingTable } from './routing-table.ts';

export interface ShardManagerConfig {
  /** Lease on a shard in the store. */
  shardLeaseMs: number;
  /** Stop serving this long before the lease could lapse, to absorb clock rate differences
   * and the renewal's own round trip. */
  safetyMarginMs: number;
  renewEveryMs: number;
  /** Pause before trying again to acquire shards that could not be acquired. */
  acquireRetryMs: number;
}

export const DEFAULT_SHARD_MANAGER_CONFIG: ShardManagerConfig = {
  shardLeaseMs: 15_000,
  safetyMarginMs: 3_000,
  renewEveryMs: 3_000,
  acquireRetryMs: 1_000,
};

const MISSING_WARN_EVERY_MS = 60_000;

export type ShardManagerMsg =
  | { kind: 'start'; desired: number[] }
  /** `deadOwners`: nodes the failure detector has declared dead; shards they hold are taken
   * over at once (the epoch, not the lease, keeps their writes out). */
  | { kind: 'desired'; shards: number[]; deadOwners?: string[] }
  | { kind: 'acquire' }
  | { kind: 'acquired'; leases: ShardLease[] }
  | { kind: 'acquire_failed'; error: unknown }
  | { kind: 'renew' }
  | { kind: 'renewed'; sentAtMs: number; leases: ShardLease[]; renewed: number[] }
  | { kind: 'renew_failed'; error: unknown }
  | { kind: 'owner_exited'; shard: number; epoch: number; exit: OwnerExit }
  /** `lease` was given up (`ok`), or giving it up failed and it will lapse. */
  | { kind: 'released'; lease: ShardLease; ok: boolean }
  | { kind: 'shutdown'; done: () => void };

interface Owned {
  epoch: number;
  ref: ActorRef<OwnerMsg>;
  /** Monotonic instant until which this node may serve the shard. */
  validUntilMs: number;
  stopping: boolean;
}

export interface ShardManagerDeps {
  config: ShardManagerConfig;
  routes: RoutingTable;
  spawnOwner: (shard: number, epoch: number, exited: (exit: OwnerExit) => void) => ActorRef<OwnerMsg>;
  /** A shard this node stopped serving gracefully is released in the store: its next owner
   * may acquire it now (in a cluster, node.ts tells that node). */
  released: (lease: ShardLease) => void;
}

export class ShardManager implements Actor<ShardManagerMsg> {
  private desired = new Set<number>();
  private readonly owned = new Map<number, Owned>();
  private acquiring = false;
  /** Asked to acquire while an acquisition was under way: go again when it ends, since a shard
   * released meanwhile may have been missed by it. */
  private acquireAgain = false;
  private acquireSentAtMs = 0;
  /** Since when some shard this node should own has been held by another node. */
  private missingSinceMs: number | null = null;
  private warnedMissingAtMs = -Infinity;
  private renewing = false;
  private releasing = 0;
  private shuttingDown: Array<() => void> | null = null;
  private deadOwners: string[] = [];

  constructor(private readonly deps: ShardManagerDeps) {}

  receive(msg: ShardManagerMsg, ctx: ActorContext<ShardManagerMsg>): void {
    switch (msg.kind) {
      case 'start':
        ctx.startTimer('renew', this.deps.config.renewEveryMs, { kind: 'renew' });
        this.desired = new Set(msg.desired);
        return this.acquire(ctx);
      case 'desired':
        this.desired = new Set(msg.shards);
        this.deadOwners = msg.deadOwners ?? [];
        for (const [shard, owned] of this.owned) if (!this.desired.has(shard)) this.stopOwner(shard, owned);
        return this.acquire(ctx);
      case 'acquire':
        return this.acquire(ctx);
      case 'acquired':
        this.acquiring = false;
        this.acquired(msg.leases, ctx);
        this.acquireIfAsked(ctx);
        return;
      case 'acquire_failed':
        this.acquiring = false;
        if (this.acquireIfAsked(ctx)) return;
        if (this.shuttingDown !== null) return this.finishShutdownIfIdle(ctx);
        ctx.env.logger.log('warn', 'shards.acquire_failed', { error: String(msg.error) });
        return this.retryAcquireLater(ctx);
      case 'renew':
        return this.renew(ctx);
      case 'renewed':
        this.renewing = false;
        return this.renewed(msg.sentAtMs, msg.leases, msg.renewed, ctx);
      case 'renew_failed':
        this.renewing = false;
        ctx.env.logger.log('warn', 'shards.renew_failed', { error: String(msg.error) });
        this.stopExpiring(ctx);
        return this.scheduleRenew(ctx);
      case 'owner_exited':
        return this.ownerExited(msg.shard, msg.epoch, msg.exit, ctx);
      case 'released':
        this.releasing--;
        if (msg.ok) this.deps.released(msg.lease);
        return this.finishShutdownIfIdle(ctx);
      case 'shutdown':
        if (this.shuttingDown !== null) return void this.shuttingDown.push(msg.done);
        this.shuttingDown = [msg.done];
        this.desired.clear();
        for (const [shard, owned] of this.owned) this.stopOwner(shard, owned);
        return this.finishShutdownIfIdle(ctx);
    }
  }

  invariants(): void {
    for (const [shard, owned] of this.owned) {
      if (owned.epoch < 1) throw new Error(`shards: shard ${shard} owned at epoch ${owned.epoch}`);
    }
  }

  /** Runs the acquisition asked for while one was in flight; false when none runs now (none
   * asked, or the node is shutting down: a failed acquisition must then let shutdown finish,
   * which once waited forever for an acquisition that never started). */
  private acquireIfAsked(ctx: ActorContext<ShardManagerMsg>): boolean {
    if (!this.acquireAgain) return false;
    this.acquireAgain = false;
    this.acquire(ctx);
    return this.acquiring;
  }

  private acquire(ctx: ActorContext<ShardManagerMsg>): void {
    if (this.shuttingDown !== null) return;
    if (this.acquiring) return void (this.acquireAgain = true);
    const wanted = [...this.desired].filter((shard) => !this.owned.has(shard)).sort((a, b) => a - b);
    if (wanted.length === 0) return;
    this.acquiring = true;
    const { nodeId, store } = ctx.env;
    ctx.pipe(
      () => store.acquireShards(nodeId, wanted, this.deps.config.shardLeaseMs, this.deadOwners),
      (leases) => ({ kind: 'acquired', leases }),
      (error) => ({ kind: 'acquire_failed', error }),
    );
    // The lease clock starts when the request leaves, not when the answer arrives.
    this.acquireSentAtMs = ctx.env.clock.monotonicMs();
  }

  private acquired(leases: ShardLease[], ctx: ActorContext<ShardManagerMsg>): void {
    const validUntilMs = this.acquireSentAtMs + this.deps.config.shardLeaseMs - this.deps.config.safetyMarginMs;
    const self = ctx.self;
    for (const { shard, epoch } of leases) {
      if (this.owned.has(shard)) continue;
      const ref = this.deps.spawnOwner(shard, epoch, (exit) => self.tell({ kind: 'owner_exited', shard, epoch, exit }));
      ref.tell({ kind: 'start' });
      this.owned.set(shard, { epoch, ref, validUntilMs, stopping: false });
      this.deps.routes.set(shard, ref);
    }
    if (leases.length > 0) ctx.env.logger.log('info', 'shards.acquired', { count: leases.length, owned: this.owned.size, shards: leases.map((l) => l.shard) });
    ctx.env.metrics.inc('shard_acquisitions_total', {}, leases.length);
    // The ring may have moved while the acquisition was in flight: shards no longer ours go on
    // to their next owner at once. Kept, they were renewed here for good while the node the
    // ring names waited for them (`shards.held_elsewhere`, a node never ready).
    for (const [shard, owned] of this.owned) if (!this.desired.has(shard)) this.stopOwner(shard, owned);
    // Shards we wanted but did not get are held by someone whose lease has not lapsed yet.
    const missing = [...this.desired].filter((shard) => !this.owned.has(shard)).length;
    this.noteMissing(missing, ctx);
    if (this.shuttingDown === null && missing > 0) this.retryAcquireLater(ctx);
    if (this.shuttingDown !== null) {
      for (const [shard, owned] of this.owned) this.stopOwner(shard, owned);
      this.finishShutdownIfIdle(ctx);
    }
  }

  /** A lease lapses within `shardLeaseMs` of its holder's last renewal, so shards still held
   * elsewhere after two of those are being renewed by a node whose view of the cluster differs
   * from this one's: worth a warning, since one of the two cannot hear the other. */
  private noteMissing(missing: number, ctx: ActorContext<ShardManagerMsg>): void {
    const now = ctx.env.clock.monotonicMs();
    if (missing === 0) return void (this.missingSinceMs = null);
    this.missingSinceMs ??= now;
    if (now - this.missingSinceMs < 2 * this.deps.config.shardLeaseMs || now - this.warnedMissingAtMs < MISSING_WARN_EVERY_MS) return;
    this.warnedMissingAtMs = now;
    ctx.env.logger.log('warn', 'shards.held_elsewhere', {
      count: missing,
      forMs: now - this.missingSinceMs,
      hint: "other nodes keep renewing shards this node's ring gives it; if this node cannot hear them, check --join and the cluster key",
    });
  }

  private retryAcquireLater(ctx: ActorContext<ShardManagerMsg>): void {
    if (!ctx.hasTimer('acquire')) ctx.startTimer('acquire', this.deps.config.acquireRetryMs, { kind: 'acquire' });
  }

  private renew(ctx: ActorContext<ShardManagerMsg>): void {
    this.stopExpiring(ctx);
    const leases = [...this.owned].filter(([, o]) => !o.stopping).map(([shard, o]) => ({ shard, epoch: o.epoch }));
    if (this.renewing || leases.length === 0) return this.scheduleRenew(ctx);
    this.renewing = true;
    const sentAtMs = ctx.env.clock.monotonicMs();
    const { nodeId, store } = ctx.env;
    ctx.pipe(
      () => store.renewShards(nodeId, leases, this.deps.config.shardLeaseMs),
      (renewed) => ({ kind: 'renewed', sentAtMs, leases, renewed }),
      (error) => ({ kind: 'renew_failed', error }),
    );
    // The next tick comes whether or not this renewal answers: a renewal that hangs must not
    // stop the check that ends serving before the leases lapse.
    this.scheduleRenew(ctx);
  }

  /** Whether this node may still serve `shard` at `epoch` now, by its own monotonic clock: an
   * owner asks before it grants a lease, so that a node waking from a pause past its lease
   * grants nothing before it has learnt whether it was deposed. */
  mayServe(shard: number, epoch: number, nowMs: number): boolean {
    const owned = this.owned.get(shard);
    return owned !== undefined && owned.epoch === epoch && !owned.stopping && nowMs < owned.validUntilMs;
  }

  private renewed(sentAtMs: number, leases: ShardLease[], renewed: number[], ctx: ActorContext<ShardManagerMsg>): void {
    const ok = new Set(renewed);
    const validUntilMs = sentAtMs + this.deps.config.shardLeaseMs - this.deps.config.safetyMarginMs;
    for (const { shard, epoch } of leases) {
      const owned = this.owned.get(shard);
      if (owned === undefined || owned.epoch !== epoch) continue;
      if (ok.has(shard)) {
        owned.validUntilMs = Math.max(owned.validUntilMs, validUntilMs);
      } else {
        ctx.env.logger.log('warn', 'shards.lost', { shard, epoch });
        this.stopOwner(shard, owned);
      }
    }
    this.scheduleRenew(ctx);
  }

  private scheduleRenew(ctx: ActorContext<ShardManagerMsg>): void {
    if (this.shuttingDown === null) ctx.startTimer('renew', this.deps.config.renewEveryMs, { kind: 'renew' });
  }

  /** Stops serving every shard whose lease may lapse before we could renew it. */
  private stopExpiring(ctx: ActorContext<ShardManagerMsg>): void {
    const now = ctx.env.clock.monotonicMs();
    for (const [shard, owned] of this.owned) {
      if (!owned.stopping && now >= owned.validUntilMs) {
        ctx.env.logger.log('warn', 'shards.lease_expiring', { shard, epoch: owned.epoch });
        this.stopOwner(shard, owned);
      }
    }
  }

  private stopOwner(shard: number, owned: Owned): void {
    if (owned.stopping) return;
    owned.stopping = true;
    this.deps.routes.delete(shard);
    owned.ref.tell({ kind: 'stop', done: () => {} });
  }

  private ownerExited(shard: number, epoch: number, exit: OwnerExit, ctx: ActorContext<ShardManagerMsg>): void {
    const owned = this.owned.get(shard);
    if (owned === undefined || owned.epoch !== epoch) return;
    this.owned.delete(shard);
    if (this.deps.routes.ownerOf(shard) === owned.ref) this.deps.routes.delete(shard);
    ctx.env.logger.log(exit === 'stopped' ? 'debug' : 'warn', 'shards.owner_exited', { shard, epoch, exit });
    ctx.env.metrics.inc('shard_losses_total', { exit });
    // An owner that stopped gracefully has committed what it held: give the shard up now so
    // its next owner need not wait for the lease to lapse.
    if (exit === 'stopped') this.release({ shard, epoch }, ctx);
    if (this.shuttingDown !== null) return this.finishShutdownIfIdle(ctx);
    // A deposed or failed owner is replaced at a new epoch after a pause; a lost lease waits
    // for the next acquisition round like any shard we do not hold.
    if (this.desired.has(shard)) this.retryAcquireLater(ctx);
  }

  private release(lease: ShardLease, ctx: ActorContext<ShardManagerMsg>): void {
    this.releasing++;
    const { nodeId, store } = ctx.env;
    // A failed release only delays the next owner until the lease lapses: not worth a retry.
    ctx.pipe(
      () => store.releaseShards(nodeId, [lease]),
      () => ({ kind: 'released', lease, ok: true }),
      () => ({ kind: 'released', lease, ok: false }),
    );
  }

  private finishShutdownIfIdle(ctx: ActorContext<ShardManagerMsg>): void {
    if (this.shuttingDown === null || this.owned.size > 0 || this.acquiring || this.releasing > 0) return;
    for (const done of this.shuttingDown) done();
    ctx.stop();
  }
}
