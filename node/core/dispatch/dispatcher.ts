// The dispatcher matches workers' free slots (credit) with ready jobs, per lane (a tenant's
// queue: job/lane.ts; a worker only ever gets its own tenant's jobs). Workers announce slots
// per queue; sources report how many jobs are ready per lane; the dispatcher grants a source
// the right to lease up to n jobs to one worker. Leases are pushed, never polled for, and a
// worker never holds more than it asked for.
//
// A source is a shard owner on this node or, in a cluster, another node as its heartbeat
// describes it. A grant to another node travels as an offer (RemoteCredit); that node grants it
// to its own owners at once and gives back what they cannot use, so slots never wait on a node
// without work. A given-back offer also zeroes our estimate of that node's lane until its next
// heartbeat, so a stale estimate costs one round trip, not a loop. A node whose lane goes from
// empty to busy sends its heartbeat early (RemoteCredit.backlogAppeared), so work there waits
// for workers elsewhere for a gossip hop, not a heartbeat period. Every offered slot comes
// back as a lease or a return; those that do not (a message lost, the node crashed or left the
// ring) are credited to the worker again after a while. Should one still turn into a lease, the
// worker gets one lease more than its slots and hands it back (the SDK does).
//
// Priority holds across sources: the source whose best ready job has the highest priority is
// granted first. Sources whose best jobs tie are served round-robin, several slots at a time;
// while priorities differ a grant is one slot, so that the next slot goes to whichever source
// then has the best job. Workers are served round-robin.
//
// Fairness is per shard, not per source: another node gets as many turns in a row as it has
// shards with ready jobs of the lane (its heartbeat says), each shard here one. Counted as one
// source against each of our shards, a node without workers of its own got one turn in ~85 of
// every node with workers, and its jobs waited tens of seconds while others waited none. While
// shards here have ready jobs, other nodes get only the turns lending.ts gives them: the share
// their own workers cannot cover, so that workers serve their own node's shards and a lease
// crosses nodes only where it must.
//
// Circuit breakers (breaker/breaker.ts) gate it per lane: while a lane's breaker is open nothing
// of it is granted, here or to other nodes, nor announced to them; half-open, each round lets
// `probes` jobs of the shards here through, counted as they are granted.

import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg, WorkerLink } from '../owner/owner-messages.ts';
import type { DispatcherMsg } from './dispatcher-messages.ts';
import { lendingTurns, type LaneLoad } from './lending.ts';
import type { BreakerGate } from '../breaker/breaker-board.ts';
import { planted, type TestHooks } from '../test-hooks.ts';

/** Slots granted to one source at a time: big enough to batch lease writes, small enough that
 * one shard does not take every slot while others have work. */
const GRANT_SLOTS_MAX = 32;
/** An offer with neither a lease nor a return for this long is taken as lost. */
const OFFER_LOST_AFTER_MS = 5_000;
const SWEEP_OFFERS_EVERY_MS = 1_000;

/** How the dispatcher reaches other nodes (node.ts binds it to peer messages). */
export interface RemoteCredit {
  /** Offers `slots` of worker `workerId` (attached here) to `node`, for jobs of `lane`. */
  offer(node: string, workerId: string, lane: string, slots: number): void;
  /** Gives back slots of a worker attached to another node that no owner here could use. */
  giveBack(workerId: string, lane: string, slots: number): void;
  /** A lane went from no ready jobs here to some: other nodes' workers should hear of it now,
   * not at the next heartbeat. */
  backlogAppeared(): void;
}

/** A worker's id names the node it is attached to, so any node can send its credit home. */
export function workerIdOf(node: string, connId: string): string {
  return `${node}/${connId}`;
}

export function homeOfWorker(workerId: string): string {
  return workerId.slice(0, workerId.indexOf('/'));
}

export function connOfWorker(workerId: string): string {
  return workerId.slice(workerId.indexOf('/') + 1);
}

interface Backlog {
  ready: number;
  topPriority: number;
  /** 1 for a shard here; for another node, its shards with ready jobs. */
  shards: number;
  /** For another node, the slots of its own workers for the lane (0 for a shard here). */
  slots: number;
  /** Turns a round: 1 for a shard here; for another node, its shards or its lending turns. */
  weight: number;
  /** Turns taken in this round. */
  turns: number;
}

/** `s<shard>` for an owner here, `n<node>` for another node. */
type SourceKey = string;

/** Slots offered to another node that have not come back yet. */
interface Offered {
  node: string;
  workerId: string;
  lane: string;
  slots: number;
  /** When an offer was last made or answered. */
  activeAtMs: number;
}

interface QueueState {
  /** Workers with credit, in round-robin order (a Map keeps insertion order). */
  credit: Map<string, number>;
  /** Slots granted to each worker that it has not credited again yet: with its credit, the
   * slots the worker has for the lane, which the heartbeat reports for lending.ts. */
  held: Map<string, number>;
  /** Sources with ready jobs, in round-robin order. */
  ready: Map<SourceKey, Backlog>;
}

export class Dispatcher implements Actor<DispatcherMsg> {
  private readonly workers = new Map<string, WorkerLink>();
  private readonly owners = new Map<number, ActorRef<OwnerMsg>>();
  private readonly queues = new Map<string, QueueState>();
  private readonly offered = new Map<string, Offered>();
  /** Lanes whose circuit breaker is not closed, with the probes still to lease in the current
   * half-open round here (none while open). */
  private readonly gates = new Map<string, { gate: BreakerGate; probesLeft: number }>();
  private ring: ReadonlySet<string> | null = null;
  /** The clock, read once per message, for the bookkeeping of offers deep in a dispatch. */
  private nowMs = 0;
  /** The simulator's hooks (test-hooks.ts), read with the clock; production has none. */
  private hooks: TestHooks | undefined;

  /** `remote` is null for a node alone; `localOwners` lists the owners serving shards here. */
  constructor(
    private readonly remote: RemoteCredit | null,
    private readonly localOwners: () => Iterable<ActorRef<OwnerMsg>>,
  ) {}

  receive(msg: DispatcherMsg, ctx: ActorContext<DispatcherMsg>): void {
    this.nowMs = ctx.env.clock.monotonicMs();
    this.hooks = ctx.env.testHooks;
    this.handle(msg, ctx);
    if (this.offered.size > 0 && !ctx.hasTimer('sweep_offers')) ctx.startTimer('sweep_offers', SWEEP_OFFERS_EVERY_MS, { kind: 'sweep_offers' });
  }

  private handle(msg: DispatcherMsg, ctx: ActorContext<DispatcherMsg>): void {
    switch (msg.kind) {
      case 'worker_joined':
        this.workers.set(msg.worker.id, msg.worker);
        return;
      case 'worker_left':
        this.workers.delete(msg.workerId);
        for (const state of this.queues.values()) {
          state.credit.delete(msg.workerId);
          state.held.delete(msg.workerId);
        }
        for (const owner of this.localOwners()) owner.tell({ kind: 'worker_gone', workerId: msg.workerId });
        return;
      case 'credit':
        return this.credit(msg.workerId, msg.lane, msg.slots);
      case 'credit_returned':
        if (this.workers.has(msg.workerId)) return this.credit(msg.workerId, msg.lane, msg.slots);
        // A worker of another node, offered to our owners: its slots go home.
        if (this.remote !== null && msg.slots > 0) this.remote.giveBack(msg.workerId, msg.lane, msg.slots);
        return;
      case 'remote_credit_returned': {
        this.queues.get(msg.lane)?.ready.delete(`n${msg.node}`);
        this.answered(msg.node, msg.workerId, msg.lane, msg.slots);
        return this.credit(msg.workerId, msg.lane, msg.slots);
      }
      case 'remote_leased':
        return this.answered(msg.node, msg.workerId, msg.lane, 1);
      case 'ring':
        this.ring = new Set(msg.members);
        for (const state of this.queues.values()) {
          for (const key of state.ready.keys()) if (key.startsWith('n') && !this.ring.has(key.slice(1))) state.ready.delete(key);
        }
        return this.recoverOffers((o) => !this.ring!.has(o.node));
      case 'sweep_offers':
        this.recoverOffers((o) => this.nowMs - o.activeAtMs >= OFFER_LOST_AFTER_MS);
        if (this.offered.size > 0) ctx.startTimer('sweep_offers', SWEEP_OFFERS_EVERY_MS, { kind: 'sweep_offers' });
        return;
      case 'drain':
        for (const [lane, state] of this.queues) {
          if (msg.lane !== null && msg.lane !== lane) continue;
          state.credit.delete(msg.workerId);
          // A draining worker credits no slot again: it has none left for the lane.
          state.held.delete(msg.workerId);
        }
        return;
      case 'backlog': {
        this.owners.set(msg.shard, msg.owner);
        let appeared = false;
        for (const [lane, ready, topPriority] of msg.counts) {
          if (ready > 0 && !this.hasLocalReady(lane)) appeared = true;
          this.setReady(lane, `s${msg.shard}`, ready, topPriority, 1, 0);
        }
        // Still ready after local workers had their turn: worth telling the cluster.
        if (appeared && msg.counts.some(([lane]) => this.hasLocalReady(lane))) this.remote?.backlogAppeared();
        return;
      }
      case 'owner_gone':
        this.owners.delete(msg.shard);
        for (const state of this.queues.values()) state.ready.delete(`s${msg.shard}`);
        return;
      case 'remote_backlog': {
        // A late heartbeat of a node that left the ring is no source of work.
        if (this.ring !== null && !this.ring.has(msg.node)) return;
        const key = `n${msg.node}`;
        const reported = new Set(msg.counts.map(([lane]) => lane));
        for (const [lane, state] of this.queues) if (!reported.has(lane)) state.ready.delete(key);
        for (const [lane, ready, topPriority, shards, slots] of msg.counts) this.setReady(lane, key, ready, topPriority, shards, slots);
        return;
      }
      case 'remote_credit':
        return this.remoteCredit(msg.worker, msg.lane, msg.slots);
      case 'breaker_gate':
        this.hooks?.observe?.({ kind: 'breaker_gate', lane: msg.lane, gate: msg.gate });
        if (planted(this.hooks, 'breaker_ignore_gate')) return;
        return this.breakerGate(msg.lane, msg.gate);
    }
  }

  invariants(): void {
    for (const [key, o] of this.offered) if (o.slots <= 0) throw new Error(`dispatcher: offer ${key} holds ${o.slots} slots`);
  }


  /** Whether worker `workerId` is attached here (its connection open, its first credit heard).
   * A synchronous call like takeIdleWorker, for an owner loading a running job of a worker of
   * this node. */
  hasWorker(workerId: string): boolean {
    return this.workers.has(workerId);
  }

  /** One idle slot of `queue`, taken now, for an owner about to insert a job that can start at
   * once (it inserts the job already leased). Only when no owner here has ready jobs of the
   * queue: they would otherwise be overtaken. Ready jobs on other nodes do not count: their own
   * workers and offers serve them, and a heartbeat-old count of them must not slow every
   * submission here down to three writes. A synchronous call from another actor, on purpose: the
   * owner must know before it writes, and both live on one thread of one node, so the call is
   * as deterministic as a message (the routing table is shared the same way). */
  takeIdleWorker(queue: string): WorkerLink | null {
    const state = this.queues.get(queue);
    // Probes of a half-open breaker are leased from the ready queues, counted, like any grant.
    if (state === undefined || this.hasLocalReady(queue) || this.gates.has(queue)) return null;
    while (state.credit.size > 0) {
      const [workerId, credit] = first(state.credit);
      state.credit.delete(workerId);
      const worker = this.workers.get(workerId);
      if (worker === undefined) continue;
      if (credit > 1) state.credit.set(workerId, credit - 1);
      hold(state, workerId, 1);
      this.hooks?.observe?.({ kind: 'granted', lane: queue, slots: 1, to: 'idle' });
      return worker;
    }
    return null;
  }

  /** Ready jobs per lane of the owners here, best lanes first, with the best priority among
   * them, how many shards hold them and the slots of the workers here for the lane, for this
   * node's heartbeat. */
  localBacklog(max: number): Array<[lane: string, ready: number, topPriority: number, shards: number, slots: number]> {
    const out: Array<[string, number, number, number, number]> = [];
    for (const [lane, state] of this.queues) {
      // Work that may not be leased is no reason for other nodes to offer their workers.
      if (this.blocked(lane)) continue;
      let ready = 0;
      let top = -Infinity;
      let shards = 0;
      for (const [key, backlog] of state.ready) {
        if (!key.startsWith('s')) continue;
        ready += backlog.ready;
        top = Math.max(top, backlog.topPriority);
        shards++;
      }
      if (ready > 0) out.push([lane, ready, top, shards, slotsHere(state)]);
    }
    return out.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, max);
  }

  /** The lane's breaker changed. Closed again, its jobs are offered to the workers waiting; a new
   * half-open round lets `probes` of them through here. */
  private breakerGate(lane: string, gate: BreakerGate | null): void {
    const before = this.gates.get(lane);
    if (gate === null) this.gates.delete(lane);
    else {
      const sameRound = before?.gate.state === 'half_open' && gate.state === 'half_open' && before.gate.round === gate.round;
      this.gates.set(lane, { gate, probesLeft: gate.state === 'open' ? 0 : sameRound ? before.probesLeft : gate.probes });
    }
    const state = this.queues.get(lane);
    if (state === undefined || this.blocked(lane)) return;
    this.dispatch(lane, state);
    if (gate === null && this.hasLocalReady(lane)) this.remote?.backlogAppeared();
  }

  /** No job of the lane may be leased here now: its breaker is open, or half-open with this
   * round's probes spent. */
  private blocked(lane: string): boolean {
    const gate = this.gates.get(lane);
    return gate !== undefined && gate.probesLeft <= 0;
  }

  /** `slots` of an offer came back. */
  private answered(node: string, workerId: string, lane: string, slots: number): void {
    const key = `${node}\u0001${workerId}\u0001${lane}`;
    const o = this.offered.get(key);
    if (o === undefined) return;
    o.slots -= slots;
    o.activeAtMs = this.nowMs;
    if (o.slots <= 0) this.offered.delete(key);
  }

  /** Credits the workers again with the offers that match. */
  private recoverOffers(lost: (o: Offered) => boolean): void {
    for (const [key, o] of [...this.offered]) {
      if (!lost(o)) continue;
      this.offered.delete(key);
      this.credit(o.workerId, o.lane, o.slots);
    }
  }

  private hasLocalReady(lane: string): boolean {
    const state = this.queues.get(lane);
    if (state === undefined) return false;
    for (const key of state.ready.keys()) if (key.startsWith('s')) return true;
    return false;
  }

  private credit(workerId: string, lane: string, slots: number): void {
    if (!this.workers.has(workerId) || slots <= 0) return;
    const state = this.queue(lane);
    // Credit for slots it held is the worker's own slots coming back; the rest are new slots.
    hold(state, workerId, -Math.min(slots, state.held.get(workerId) ?? 0));
    state.credit.set(workerId, (state.credit.get(workerId) ?? 0) + slots);
    this.dispatch(lane, state);
  }

  private setReady(lane: string, key: SourceKey, ready: number, topPriority: number, shards: number, slots: number): void {
    const state = this.queue(lane);
    // A new report keeps the source's place in the round and the turns it took in it.
    const weight = Math.max(1, shards);
    if (ready > 0) state.ready.set(key, { ready, topPriority, shards: weight, slots, weight, turns: state.ready.get(key)?.turns ?? 0 });
    else state.ready.delete(key);
    this.dispatch(lane, state);
  }

  private queue(name: string): QueueState {
    let state = this.queues.get(name);
    if (state === undefined) {
      state = { credit: new Map(), held: new Map(), ready: new Map() };
      this.queues.set(name, state);
    }
    return state;
  }

  private dispatch(lane: string, state: QueueState): void {
    // A half-open breaker's probes go to the shards here only: another node counts its own.
    const probing = this.gates.get(lane);
    let lending = this.remote === null || probing !== undefined ? null : lendingPlan(state);
    while (state.credit.size > 0 && state.ready.size > 0) {
      if (probing !== undefined && probing.probesLeft <= 0) return;
      const eligible = probing !== undefined ? (key: SourceKey) => key.startsWith('s') : lending === null ? () => true : (key: SourceKey) => key.startsWith('s') || lending!.has(key);
      const chosen = best(state.ready, eligible);
      if (chosen === null) {
        if (probing !== undefined) return;
        // No shard here has ready jobs left: every other node may have the slots.
        lending = null;
        for (const backlog of state.ready.values()) backlog.weight = backlog.shards;
        continue;
      }
      const [key, backlog, tied] = chosen;
      const [workerId, credit] = first(state.credit);
      const worker = this.workers.get(workerId);
      if (worker === undefined) {
        state.credit.delete(workerId);
        continue;
      }
      const slots = Math.min(tied ? Math.min(backlog.ready, credit, GRANT_SLOTS_MAX) : 1, probing?.probesLeft ?? Infinity);
      if (!this.grant(key, lane, worker, slots)) {
        state.ready.delete(key);
        continue;
      }
      if (probing !== undefined) probing.probesLeft -= slots;
      // Move both to the back of the round-robin order (the source once its turns are taken);
      // drop them when used up. The source's count is our estimate until its next report; a
      // grant it cannot fill comes back.
      take(state.ready, key, backlog, slots);
      state.credit.delete(workerId);
      if (credit > slots) state.credit.set(workerId, credit - slots);
      hold(state, workerId, slots);
    }
  }

  /** Grants owners here what they can take of a remote worker's offer; returns the rest. */
  private remoteCredit(worker: WorkerLink, lane: string, slots: number): void {
    const state = this.queues.get(lane);
    const probing = this.gates.get(lane);
    let left = slots;
    while (state !== undefined && left > 0) {
      if (probing !== undefined && probing.probesLeft <= 0) break;
      const chosen = best(state.ready, (key) => key.startsWith('s'));
      if (chosen === null) break;
      const [key, backlog, tied] = chosen;
      const granted = Math.min(tied ? Math.min(backlog.ready, left, GRANT_SLOTS_MAX) : 1, probing?.probesLeft ?? Infinity);
      if (!this.grant(key, lane, worker, granted)) {
        state.ready.delete(key);
        continue;
      }
      if (probing !== undefined) probing.probesLeft -= granted;
      take(state.ready, key, backlog, granted);
      left -= granted;
    }
    if (left > 0) this.remote?.giveBack(worker.id, lane, left);
  }

  /** False when the source is gone. */
  private grant(key: SourceKey, lane: string, worker: WorkerLink, slots: number): boolean {
    if (key.startsWith('n')) {
      if (this.remote === null) return false;
      this.hooks?.observe?.({ kind: 'granted', lane, slots, to: key });
      const node = key.slice(1);
      this.remote.offer(node, worker.id, lane, slots);
      const offerKey = `${node}\u0001${worker.id}\u0001${lane}`;
      const o = this.offered.get(offerKey);
      if (o === undefined) this.offered.set(offerKey, { node, workerId: worker.id, lane, slots, activeAtMs: this.nowMs });
      else {
        o.slots += slots;
        o.activeAtMs = this.nowMs;
      }
      return true;
    }
    const owner = this.owners.get(Number(key.slice(1)));
    if (owner === undefined) return false;
    this.hooks?.observe?.({ kind: 'granted', lane, slots, to: key });
    owner.tell({ kind: 'grant', lane, worker, slots });
    return true;
  }
}

/** The other nodes this node's workers may serve now, while shards here have ready jobs: those
 * lending.ts lends to, with their turns set, and any whose best job beats every one here
 * (priority holds across the cluster), with a turn per shard. Null when there is nothing to
 * prefer, and every source is served as it comes. */
function lendingPlan(state: QueueState): Set<SourceKey> | null {
  let localShards = 0;
  let localTop = -Infinity;
  const others = new Map<SourceKey, LaneLoad>();
  for (const [key, backlog] of state.ready) {
    if (key.startsWith('s')) {
      localShards++;
      localTop = Math.max(localTop, backlog.topPriority);
    } else others.set(key, { shards: backlog.shards, slots: backlog.slots });
  }
  if (others.size === 0) return null;
  const turns = lendingTurns({ shards: localShards, slots: slotsHere(state) }, others);
  const served = new Set<SourceKey>();
  for (const key of others.keys()) {
    const backlog = state.ready.get(key)!;
    const lent = turns?.get(key);
    backlog.weight = lent ?? backlog.shards;
    if (lent !== undefined || backlog.topPriority > localTop) served.add(key);
  }
  return turns === null ? null : served;
}

/** The slots of the workers here for a lane: their credit and the slots they hold. */
function slotsHere(state: QueueState): number {
  let slots = 0;
  for (const credit of state.credit.values()) slots += credit;
  for (const held of state.held.values()) slots += held;
  return slots;
}

function hold(state: QueueState, workerId: string, slots: number): void {
  const held = (state.held.get(workerId) ?? 0) + slots;
  if (held > 0) state.held.set(workerId, held);
  else state.held.delete(workerId);
}

/** The first source (in round-robin order) among those `eligible` with the highest top
 * priority, and whether every eligible source's top priority is the same. */
function best(ready: Map<SourceKey, Backlog>, eligible: (key: SourceKey) => boolean): [SourceKey, Backlog, boolean] | null {
  let chosen: [SourceKey, Backlog] | null = null;
  let tied = true;
  for (const entry of ready) {
    if (!eligible(entry[0])) continue;
    if (chosen === null) chosen = entry;
    else if (entry[1].topPriority !== chosen[1].topPriority) {
      tied = false;
      if (entry[1].topPriority > chosen[1].topPriority) chosen = entry;
    }
  }
  return chosen === null ? null : [chosen[0], chosen[1], tied];
}

/** Counts a turn of `slots` granted from a source; once it has taken its turns for the round,
 * it moves to the back of the round-robin order (a Map keeps a key's place when it is set). */
function take(ready: Map<SourceKey, Backlog>, key: SourceKey, backlog: Backlog, slots: number): void {
  const left = backlog.ready - slots;
  const turns = backlog.turns + 1;
  if (turns >= backlog.weight || left <= 0) ready.delete(key);
  if (left > 0) ready.set(key, { ...backlog, ready: left, turns: turns >= backlog.weight ? 0 : turns });
}

function first<K, V>(map: Map<K, V>): [K, V] {
  return map.entries().next().value!;
}
