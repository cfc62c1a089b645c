// The dispatcher matches workers' free slots (credit) with shard owners' ready jobs, per lane
// (a tenant's queue: job/lane.ts; a worker only ever gets its own tenant's jobs). Workers
// announce slots per queue; owners report how many jobs are ready per lane; the dispatcher
// grants an owner the right to lease up to n jobs to one worker. Leases are pushed, never
// polled for, and a worker never holds more than it asked for.
//
// Priority holds across shards: the owner whose best ready job has the highest priority is
// granted first. Owners whose best jobs tie are served round-robin, several slots at a time;
// while priorities differ a grant is one slot, so that the next slot goes to whichever owner
// then has the best job. Workers are served round-robin.

import type { Actor, ActorContext, ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg, WorkerLink } from '../owner/owner-messages.ts';
import type { DispatcherMsg } from './dispatcher-messages.ts';

/** Slots granted to one owner at a time: big enough to batch lease writes, small enough that
 * one shard does not take every slot while others have work. */
const GRANT_SLOTS_MAX = 32;

interface Backlog {
  ready: number;
  topPriority: number;
}

interface QueueState {
  /** Workers with credit, in round-robin order (a Map keeps insertion order). */
  credit: Map<string, number>;
  /** Owners with ready jobs, in round-robin order. */
  ready: Map<number, Backlog>;
}

export class Dispatcher implements Actor<DispatcherMsg> {
  private readonly workers = new Map<string, WorkerLink>();
  private readonly owners = new Map<number, ActorRef<OwnerMsg>>();
  private readonly queues = new Map<string, QueueState>();

  receive(msg: DispatcherMsg, _ctx: ActorContext<DispatcherMsg>): void {
    switch (msg.kind) {
      case 'worker_joined':
        this.workers.set(msg.worker.id, msg.worker);
        return;
      case 'worker_left':
        this.workers.delete(msg.workerId);
        for (const state of this.queues.values()) state.credit.delete(msg.workerId);
        return;
      case 'credit':
      case 'credit_returned': {
        if (!this.workers.has(msg.workerId) || msg.slots <= 0) return;
        const state = this.queue(msg.lane);
        state.credit.set(msg.workerId, (state.credit.get(msg.workerId) ?? 0) + msg.slots);
        return this.dispatch(msg.lane, state);
      }
      case 'drain':
        for (const [lane, state] of this.queues) {
          if (msg.lane === null || msg.lane === lane) state.credit.delete(msg.workerId);
        }
        return;
      case 'backlog': {
        this.owners.set(msg.shard, msg.owner);
        for (const [queue, ready, topPriority] of msg.counts) {
          const state = this.queue(queue);
          if (ready > 0) state.ready.set(msg.shard, { ready, topPriority });
          else state.ready.delete(msg.shard);
          this.dispatch(queue, state);
        }
        return;
      }
      case 'owner_gone':
        this.owners.delete(msg.shard);
        for (const state of this.queues.values()) state.ready.delete(msg.shard);
        return;
    }
  }

  /** One idle slot of `queue`, taken now, for an owner about to insert a job that can start at
   * once (it inserts the job already leased). Only when no owner has ready jobs of the queue:
   * they would otherwise be overtaken. A synchronous call from another actor, on purpose: the
   * owner must know before it writes, and both live on one thread of one node, so the call is
   * as deterministic as a message (the routing table is shared the same way). */
  takeIdleWorker(queue: string): WorkerLink | null {
    const state = this.queues.get(queue);
    if (state === undefined || state.ready.size > 0) return null;
    while (state.credit.size > 0) {
      const [workerId, credit] = first(state.credit);
      state.credit.delete(workerId);
      const worker = this.workers.get(workerId);
      if (worker === undefined) continue;
      if (credit > 1) state.credit.set(workerId, credit - 1);
      return worker;
    }
    return null;
  }

  private queue(name: string): QueueState {
    let state = this.queues.get(name);
    if (state === undefined) {
      state = { credit: new Map(), ready: new Map() };
      this.queues.set(name, state);
    }
    return state;
  }

  private dispatch(queue: string, state: QueueState): void {
    while (state.credit.size > 0 && state.ready.size > 0) {
      const [shard, backlog, tied] = best(state.ready);
      const [workerId, credit] = first(state.credit);
      const owner = this.owners.get(shard);
      const worker = this.workers.get(workerId);
      if (owner === undefined || worker === undefined) {
        if (owner === undefined) state.ready.delete(shard);
        if (worker === undefined) state.credit.delete(workerId);
        continue;
      }
      const slots = tied ? Math.min(backlog.ready, credit, GRANT_SLOTS_MAX) : 1;
      owner.tell({ kind: 'grant', lane: queue, worker, slots });
      // Move both to the back of the round-robin order; drop them when used up. The owner's
      // count is our estimate until its next report; a grant it cannot fill comes back.
      state.ready.delete(shard);
      if (backlog.ready > slots) state.ready.set(shard, { ready: backlog.ready - slots, topPriority: backlog.topPriority });
      state.credit.delete(workerId);
      if (credit > slots) state.credit.set(workerId, credit - slots);
    }
  }
}

/** The first owner (in round-robin order) with the highest top priority, and whether every
 * owner's top priority is the same. */
function best(ready: Map<number, Backlog>): [number, Backlog, boolean] {
  let chosen: [number, Backlog] | null = null;
  let tied = true;
  for (const entry of ready) {
    if (chosen === null) chosen = entry;
    else if (entry[1].topPriority !== chosen[1].topPriority) {
      tied = false;
      if (entry[1].topPriority > chosen[1].topPriority) chosen = entry;
    }
  }
  return [chosen![0], chosen![1], tied];
}

function first<K, V>(map: Map<K, V>): [K, V] {
  return map.entries().next().value!;
}
