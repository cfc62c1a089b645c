// What workers' connections and shard owners say to the node's dispatcher. Work is matched per
// lane: one tenant's queue (job/lane.ts).

import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg, WorkerLink } from '../owner/owner-messages.ts';
import type { BreakerGate } from '../breaker/breaker-board.ts';

export type DispatcherMsg =
  | { kind: 'worker_joined'; worker: WorkerLink }
  /** A worker's connection closed, here or (told by its node) on another node: its credit is
   * gone, and every owner here puts the jobs it leased back in the queue. Through the
   * dispatcher, so that grants to the worker already on their way reach each owner first. */
  | { kind: 'worker_left'; workerId: string }
  /** The worker has `slots` more free slots for `lane`. */
  | { kind: 'credit'; workerId: string; lane: string; slots: number }
  /** The worker takes no more leases (of `lane`, or of any when null). */
  | { kind: 'drain'; workerId: string; lane: string | null }
  /** An owner could not use granted slots (no ready job left, or the lease write failed). */
  | { kind: 'credit_returned'; workerId: string; lane: string; slots: number }
  /** An owner's ready jobs for some lanes: how many, and the priority of the best. */
  | { kind: 'backlog'; shard: number; owner: ActorRef<OwnerMsg>; counts: Array<[lane: string, ready: number, topPriority: number]> }
  /** The owner of `shard` stopped; grant it nothing more. */
  | { kind: 'owner_gone'; shard: number }
  /** Another node's ready jobs per lane, from its heartbeat: the whole picture, replacing the
   * last one (empty when the node is gone), with how many of its shards hold them and how many
   * slots its own workers have for the lane. Workers here may be offered to it. */
  | { kind: 'remote_backlog'; node: string; counts: Array<[lane: string, ready: number, topPriority: number, shards: number, slots: number]> }
  /** A worker of another node may take `slots` jobs of `lane` from owners here; what they
   * cannot use goes back at once. */
  | { kind: 'remote_credit'; worker: WorkerLink; lane: string; slots: number }
  /** Slots of a worker here that `node` could not use: its backlog was smaller than it said. */
  | { kind: 'remote_credit_returned'; node: string; workerId: string; lane: string; slots: number }
  /** One slot offered to `node` came back as a lease for the worker. */
  | { kind: 'remote_leased'; node: string; workerId: string; lane: string }
  /** The members shards are placed on changed: nodes outside it are no source of work. */
  | { kind: 'ring'; members: readonly string[] }
  /** Look for offers that never came back (a message lost, a node crashed). */
  | { kind: 'sweep_offers' }
  /** The lane's circuit breaker, as the node's board knows it: null when closed. */
  | { kind: 'breaker_gate'; lane: string; gate: BreakerGate | null };
