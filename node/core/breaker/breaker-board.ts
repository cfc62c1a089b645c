// A node's view of the cluster's circuit breakers, and its part in them. One actor per node:
// - it reports the attempt outcomes its owners counted (breaker-tally.ts) to the owners that
//   decide the lanes' breakers, wherever the ring places them, ten times a second;
// - it hands the reports other nodes send it to its own owners;
// - it keeps the latest state of every breaker that is not closed, as its owner signals it: from
//   the owners here directly, and from other nodes' heartbeats (which carry this node's own
//   signals to them, sent early when one changes), and tells the dispatcher which lanes may not
//   be leased (open) or only a few (half-open: `probes` per round);
// - it answers, synchronously, whether a submission should be refused (`refuseWhenOpen`), and
//   pushes changes to the clients watching their tenant's breakers.
//
// Which state is the latest is decided by the breaker's version, which only grows (its row is
// never deleted), so reports may come late, twice, or from an old owner after a hand-off, in any
// order. A state nobody has signalled for RETAIN_MS is forgotten: a breaker's owner signals it
// every second while it is not closed, and for a minute after it closes.

import type { BreakerCount, BreakerSignal } from '../../../protocol/peer-messages.ts';
import { BREAKER_REPORT_LANES_MAX } from '../../../protocol/limits.ts';
import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { DispatcherMsg } from '../dispatch/dispatcher-messages.ts';
import { laneOf, splitLane } from '../job/lane.ts';
import type { RoutingTable } from '../shards/routing-table.ts';
import { breakerShard } from './breaker.ts';
import type { BreakerTally } from './breaker-tally.ts';

/** How often outcomes are reported: every attempt spent before a breaker's owner hears of
 * the failures that open it is one the downstream did not need. */
const REPORT_EVERY_MS = 100;
/** A state not signalled again for this long is forgotten. */
const RETAIN_MS = 120_000;
const EXPIRE_EVERY_MS = 10_000;

/** What the dispatcher needs to know of a breaker that is not closed. */
export type BreakerGate = { state: 'open' } | { state: 'half_open'; round: number; probes: number };

export interface BreakerChange {
  queue: string;
  state: BreakerSignal['state'];
  since: number;
  nextProbeAt: number | null;
}

export type BoardMsg =
  | { kind: 'report_soon' }
  | { kind: 'report_now' }
  /** Outcomes another node counted, of lanes whose breakers it takes to live here. */
  | { kind: 'reported'; counts: BreakerCount[] }
  /** The breakers an owner here signals (all of them, replacing its last list). */
  | { kind: 'local_signals'; shard: number; signals: BreakerSignal[] }
  /** What another node's heartbeat signals. */
  | { kind: 'remote_signals'; signals: BreakerSignal[] }
  /** Push the changes of `tenant`'s breakers to `conn` until it unwatches. */
  | { kind: 'watch'; conn: string; tenant: string; push: (change: BreakerChange) => void }
  | { kind: 'unwatch'; conn: string }
  | { kind: 'expire' };

export interface BoardDeps {
  routes: RoutingTable;
  dispatcher: ActorRef<DispatcherMsg>;
  tally: BreakerTally;
  /** This node's signals changed: peers should hear before the next heartbeat. Null alone. */
  signalsChanged: (() => void) | null;
}

interface Known {
  signal: BreakerSignal;
  heardAtMs: number;
}

export class BreakerBoard implements Actor<BoardMsg> {
  private readonly local = new Map<number, BreakerSignal[]>();
  private readonly known = new Map<string, Known>();
  private readonly watchers = new Map<string, { tenant: string; push: (change: BreakerChange) => void }>();

  constructor(private readonly deps: BoardDeps) {}

  receive(msg: BoardMsg, ctx: ActorContext<BoardMsg>): void {
    switch (msg.kind) {
      case 'report_soon':
        if (!ctx.hasTimer('report')) ctx.startTimer('report', REPORT_EVERY_MS, { kind: 'report_now' });
        return;
      case 'report_now':
        return this.report(ctx);
      case 'reported':
        return this.deliver(msg.counts.map((c) => [laneOf(c.tenant, c.queue), c.successes, c.failures, c.abandoned ?? 0]));
      case 'local_signals': {
        const before = this.local.get(msg.shard) ?? [];
        if (msg.signals.length === 0) this.local.delete(msg.shard);
        else this.local.set(msg.shard, msg.signals);
        this.heard(msg.signals, ctx);
        const changed = msg.signals.length !== before.length || msg.signals.some((s, i) => s.version !== before[i]!.version || s.queue !== before[i]!.queue);
        if (changed && msg.signals.length > 0) this.deps.signalsChanged?.();
        return this.armExpiry(ctx);
      }
      case 'remote_signals':
        this.heard(msg.signals, ctx);
        return this.armExpiry(ctx);
      case 'watch':
        this.watchers.set(msg.conn, { tenant: msg.tenant, push: msg.push });
        return;
      case 'unwatch':
        this.watchers.delete(msg.conn);
        return;
      case 'expire': {
        const nowMs = ctx.env.clock.monotonicMs();
        for (const [lane, known] of [...this.known]) {
          if (nowMs - known.heardAtMs < RETAIN_MS) continue;
          this.known.delete(lane);
          if (known.signal.state !== 'closed') this.changed(lane, known.signal, null);
        }
        return this.armExpiry(ctx);
      }
    }
  }

  /** The signals of the breakers decided here, for this node's heartbeat. */
  localSignals(max: number): BreakerSignal[] {
    const out: BreakerSignal[] = [];
    for (const signals of this.local.values()) for (const s of signals) if (out.length < max) out.push(s);
    return out;
  }

  /** The breakers not closed, as this node knows them, by state: for the node's gauges. */
  countsByState(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const { signal } of this.known.values()) if (signal.state !== 'closed') counts.set(signal.state, (counts.get(signal.state) ?? 0) + 1);
    return counts;
  }

  /** When the lane's breaker is not closed and set to refuse submissions meanwhile: its state
   * and how long a submission should wait (to its next probe; a second while half-open). Else
   * null. A synchronous call from the gateway, like the dispatcher's takeIdleWorker: both
   * actors run on the node's one thread. */
  refusal(tenant: string, queue: string, nowMs: number): { state: 'open' | 'half_open'; waitMs: number } | null {
    const known = this.known.get(laneOf(tenant, queue));
    if (known === undefined || known.signal.state === 'closed' || !known.signal.refuse) return null;
    const nextProbeAt = known.signal.nextProbeAt;
    return { state: known.signal.state, waitMs: nextProbeAt === null ? 1_000 : Math.max(100, nextProbeAt - nowMs) };
  }

  private heard(signals: BreakerSignal[], ctx: ActorContext<BoardMsg>): void {
    const nowMs = ctx.env.clock.monotonicMs();
    for (const signal of signals) {
      const lane = laneOf(signal.tenant, signal.queue);
      const known = this.known.get(lane);
      if (known !== undefined && known.signal.version > signal.version) continue;
      this.known.set(lane, { signal, heardAtMs: nowMs });
      if (known === undefined || known.signal.version < signal.version) this.changed(lane, known?.signal ?? null, signal);
    }
  }

  /** Tells the dispatcher and the watchers of a lane's new state (null: forgotten, closed). */
  private changed(lane: string, before: BreakerSignal | null, after: BreakerSignal | null): void {
    const gateBefore = gateOf(before);
    const gateAfter = gateOf(after);
    if (JSON.stringify(gateBefore) !== JSON.stringify(gateAfter)) this.deps.dispatcher.tell({ kind: 'breaker_gate', lane, gate: gateAfter });
    const [tenant, queue] = splitLane(lane);
    const stateOf = (s: BreakerSignal | null) => s?.state ?? 'closed';
    if (stateOf(before) === stateOf(after) && before?.since === after?.since) return;
    const change: BreakerChange = { queue, state: stateOf(after), since: after?.since ?? before?.since ?? 0, nextProbeAt: after?.nextProbeAt ?? null };
    for (const watcher of this.watchers.values()) if (watcher.tenant === tenant) watcher.push(change);
  }

  /** Sends the outcomes counted since the last report to the owners of their breakers. */
  private report(ctx: ActorContext<BoardMsg>): void {
    const { routes } = this.deps;
    const here: Array<[string, number, number, number]> = [];
    const elsewhere = new Map<string, BreakerCount[]>();
    for (const [lane, [successes, failures, abandoned]] of this.deps.tally.take()) {
      const [tenant, queue] = splitLane(lane);
      const shard = breakerShard(tenant, queue, routes.shardCount);
      const node = routes.ownerOf(shard) !== undefined ? ctx.env.nodeId : routes.placedOn(shard);
      // A shard nobody is placed on yet: these outcomes go uncounted, which only delays a decision.
      if (node === undefined) continue;
      if (node === ctx.env.nodeId) here.push([lane, successes, failures, abandoned]);
      else {
        let counts = elsewhere.get(node);
        if (counts === undefined) elsewhere.set(node, (counts = []));
        counts.push({ tenant, queue, successes, failures, ...(abandoned > 0 && { abandoned }) });
      }
    }
    this.deliver(here);
    for (const [node, counts] of elsewhere) {
      for (let i = 0; i < counts.length; i += BREAKER_REPORT_LANES_MAX) ctx.env.network.send(node, { t: 'breaker_report', counts: counts.slice(i, i + BREAKER_REPORT_LANES_MAX) });
    }
  }

  /** Hands outcomes to the owners here of their lanes' breakers; those of shards not served
   * here (the ring moved meanwhile) are dropped. */
  private deliver(counts: Array<[string, number, number, number]>): void {
    const byShard = new Map<number, Array<[string, number, number, number]>>();
    for (const count of counts) {
      const [tenant, queue] = splitLane(count[0]);
      const shard = breakerShard(tenant, queue, this.deps.routes.shardCount);
      let list = byShard.get(shard);
      if (list === undefined) byShard.set(shard, (list = []));
      list.push(count);
    }
    for (const [shard, list] of byShard) this.deps.routes.ownerOf(shard)?.tell({ kind: 'breakers', msg: { kind: 'report', counts: list } });
  }

  private armExpiry(ctx: ActorContext<BoardMsg>): void {
    if (this.known.size > 0 && !ctx.hasTimer('expire')) ctx.startTimer('expire', EXPIRE_EVERY_MS, { kind: 'expire' });
  }
}

function gateOf(signal: BreakerSignal | null): BreakerGate | null {
  if (signal === null || signal.state === 'closed') return null;
  if (signal.state === 'open') return { state: 'open' };
  return { state: 'half_open', round: signal.round, probes: signal.probes };
}
