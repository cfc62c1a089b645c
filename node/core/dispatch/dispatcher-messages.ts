// What workers' connections and shard owners say to the node's dispatcher. Work is matched per
// lane: one tenant's queue (job/lane.ts).

import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg, WorkerLink } from '../owner/owner-messages.ts';

export type DispatcherMsg =
  | { kind: 'worker_joined'; worker: WorkerLink }
  /** The worker's connection closed: its credit is gone (its leases run out on their own). */
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
  | { kind: 'owner_gone'; shard: number };
