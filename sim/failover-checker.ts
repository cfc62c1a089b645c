// After healing, every shard is served again within the failover bound, and stays so: no shard
// goes unserved (no live, running node has an owner for it) for longer than the bound at any
// time of the liveness phase. A shard left unserved past it is a takeover that stalled: an
// acquisition starved behind commits, a lease or lock nobody ends, a node that never learns it
// may take over.

import type { NodeConfig } from '../node/core/node.ts';
import type { EventQueue } from './event-queue.ts';
import { SESSIONS } from './locking-store.ts';
import type { SimHost } from './sim-host.ts';

/** How often the liveness phase looks at who serves what. */
const LOOK_EVERY_MS = 100;

/** The longest a shard may go unserved once everything is healed, from the node's config.
 * Worst case, in order: the shard's lease was renewed just before healing by a node that then
 * crashed or stopped serving it, and must lapse (`shardLeaseMs`); a node whose peers stopped
 * hearing it is declared dead only after `deadAfterMs`, and the ring counts only once it has
 * been stable for `stableForMs`; the next acquisition comes within `acquireRetryMs`; it may be
 * refused once by the lease sessions' lock_timeout (2 s, pg-store.ts) behind commits of the
 * shard's old owner still in flight, and then waits another `acquireRetryMs`. Paused holders
 * and their idle-in-transaction timeout do not count here: healing ends every pause. */
export function failoverBoundMs(config: NodeConfig): number {
  const shards = config.shards;
  const membership = config.cluster?.membership;
  const detect = membership === undefined ? 0 : membership.deadAfterMs + membership.stableForMs;
  return shards.shardLeaseMs + detect + 2 * shards.acquireRetryMs + SESSIONS.leases.lockMs;
}

export class FailoverChecker {
  /** Per shard, since when it has been unserved (null: served). */
  private readonly unservedSince: Array<number | null>;

  constructor(
    private readonly queue: EventQueue,
    private readonly hosts: () => readonly SimHost[],
    shards: number,
    private readonly boundMs: number,
    private readonly report: (invariant: string, detail: string) => void,
  ) {
    this.unservedSince = new Array<number | null>(shards).fill(null);
  }

  /** From now on (healing), look until the run ends. */
  start(): void {
    const healedAtMs = this.queue.nowMs;
    this.unservedSince.fill(healedAtMs);
    const look = () => {
      const served = new Set<number>();
      for (const host of this.hosts()) {
        if (host.node === null || host.paused) continue;
        for (const shard of host.node.routes.shards()) served.add(shard);
      }
      this.unservedSince.forEach((since, shard) => {
        if (served.has(shard)) return void (this.unservedSince[shard] = null);
        if (since === null) return void (this.unservedSince[shard] = this.queue.nowMs);
        if (this.queue.nowMs - since <= this.boundMs) return;
        this.report(
          'every shard is served again within the failover bound',
          `shard ${shard} unserved for ${((this.queue.nowMs - since) / 1000).toFixed(1)} s from ${((since - healedAtMs) / 1000).toFixed(1)} s after healing (bound ${this.boundMs / 1000} s)`,
        );
        this.unservedSince[shard] = null;
      });
      this.queue.schedule(LOOK_EVERY_MS, look);
    };
    look();
  }
}
