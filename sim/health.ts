// When the simulated world was healthy, from the seed's fault plan: the windows of virtual time
// (ms since the run's start) in which some fault touched a node, the links between nodes, or
// the store. Checkers that hold the system to a deadline ("a closed connection's leases end
// within 1 s", "a node that can reach the store never loses a shard") apply only where nothing
// excuses a miss. Conservative on purpose: a window is unhealthy when a fault might still be
// felt in it, so a violation inside a healthy window is a bug, not bad luck.

import type { FaultPlan } from './fault-plan.ts';

/** After a leave, how long the hand-offs it starts may take. */
const LEAVE_AFTERMATH_MS = 10_000;
/** After a pause or a slow store period, how long its backlog may take to drain. */
const BACKLOG_AFTERMATH_MS = 1_000;

interface Window {
  fromMs: number;
  toMs: number;
  /** The node it touches; null for all of them. */
  node: number | null;
}

export class Health {
  /** Faults of a node, or of all (node null): pauses, crashes, leaves, partitions. */
  private readonly nodeFaults: Window[] = [];
  /** Faults that delay or lose what one node tells another: pauses and partitions. */
  private readonly talkFaults: Window[] = [];
  /** Store faults: error, commit-unknown and session-kill rates (the whole fault phase), slow
   * periods. */
  private readonly storeFaults: Window[] = [];
  /** The slow periods alone. */
  private readonly storeSlow: Window[] = [];
  /** Faults of the network between nodes: drops and duplicates (the whole fault phase). */
  private readonly peerFaults: Window[] = [];

  constructor(
    plan: FaultPlan,
    nodes: number,
    /** The fault phase ends here: everything is healed. */
    healAtMs: number,
  ) {
    const add = (to: Window[], fromMs: number, toMs: number, node: number | null) => {
      if (fromMs < healAtMs) to.push({ fromMs, toMs: Math.min(toMs, healAtMs), node });
    };
    // Not cut short by healing: what a paused host deferred still runs when the pause was due
    // to end (sim-host.ts), so it stays a zombie until then.
    const long = (to: Window[], fromMs: number, toMs: number, node: number) => void to.push({ fromMs, toMs, node });
    for (const [h, at, forMs] of plan.pauses) {
      if (at >= healAtMs) continue;
      long(this.nodeFaults, at, at + forMs, h);
      long(this.talkFaults, at, at + forMs + BACKLOG_AFTERMATH_MS, h);
    }
    for (const [h, at, downMs] of plan.crashes) add(this.nodeFaults, at, downMs === null ? healAtMs : at + downMs, h);
    // A leave takes a while to hand off before it counts its time down.
    for (const [h, at, downMs] of plan.leaves) add(this.nodeFaults, at, at + downMs + LEAVE_AFTERMATH_MS, h);
    const links = nodes * (nodes - 1);
    const partitioned = (fromMs: number, toMs: number, node: number | null) => {
      add(this.nodeFaults, fromMs, toMs, node);
      add(this.talkFaults, fromMs, toMs, node);
    };
    for (const p of plan.nodePartitions) {
      switch (p.kind) {
        case 'isolate':
          partitioned(p.atMs, p.atMs + p.forMs, p.node);
          break;
        case 'split':
          partitioned(p.atMs, p.atMs + p.forMs, null);
          break;
        case 'one_way':
          partitioned(p.atMs, p.atMs + p.forMs, p.from);
          partitioned(p.atMs, p.atMs + p.forMs, p.to);
          break;
        case 'swizzle':
          partitioned(p.atMs, p.atMs + 2 * links * p.stepMs, null);
          break;
        case 'flap':
          partitioned(p.atMs, p.atMs + 2 * p.times * p.periodMs, p.node);
          break;
      }
    }
    if (plan.storeErrorRate > 0 || plan.storeUnknownRate > 0 || plan.sessionTerminateRate > 0) add(this.storeFaults, 0, healAtMs, null);
    for (const [from, to] of plan.storeSlow) {
      add(this.storeFaults, from, to, null);
      add(this.storeSlow, from, to + BACKLOG_AFTERMATH_MS, null);
    }
    if (plan.nodeDropRate > 0 || plan.nodeDuplicateRate > 0) add(this.peerFaults, 0, healAtMs, null);
  }

  /** A holder pause (fault-plan.ts) struck `node` at `atMs` for `forMs`: known only when it
   * strikes, since it waits for a transaction of the node to be open. */
  paused(node: number, atMs: number, forMs: number): void {
    this.nodeFaults.push({ fromMs: atMs, toMs: atMs + forMs, node });
    this.talkFaults.push({ fromMs: atMs, toMs: atMs + forMs + BACKLOG_AFTERMATH_MS, node });
  }

  /** Node `node` could reach the store and was neither paused, down, leaving nor cut off from
   * the other nodes at any time in [fromMs, toMs]. */
  nodeHealthy(node: number, fromMs: number, toMs: number): boolean {
    return !overlaps(this.storeFaults, fromMs, toMs, null) && !overlaps(this.nodeFaults, fromMs, toMs, node);
  }

  /** None of `nodes` was paused, down, leaving or cut off from the others at any time in
   * [fromMs, toMs]: what one of them tells the others reaches them within a few heartbeats
   * (message drops and slow store periods aside, which a few heartbeats ride out). */
  calm(nodes: Iterable<number>, fromMs: number, toMs: number): boolean {
    for (const node of nodes) if (overlaps(this.nodeFaults, fromMs, toMs, node) || overlaps(this.talkFaults, fromMs, toMs, node)) return false;
    return true;
  }

  /** Nodes told one another everything promptly at any time in [fromMs, toMs]: no message
   * between them lost, no node paused or cut off, no slow store period (a write of the owner
   * waits behind its backlog). Crashes, leaves and store errors are not excused here: a
   * checker must see their effect on what it checks (a shard moving to another owner). */
  talkHealthy(fromMs: number, toMs: number): boolean {
    return (
      !overlaps(this.peerFaults, fromMs, toMs, null) &&
      !overlaps(this.talkFaults, fromMs, toMs, null) &&
      !overlaps(this.storeSlow, fromMs, toMs, null)
    );
  }
}

function overlaps(windows: Window[], fromMs: number, toMs: number, node: number | null): boolean {
  return windows.some((w) => w.fromMs <= toMs && w.toMs >= fromMs && (w.node === null || node === null || w.node === node));
}
