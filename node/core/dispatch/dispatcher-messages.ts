// What workers' connections and shard owners say to the node's dispatcher.

import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg, WorkerLink } from '../owner/owner-messages.ts';

export type DispatcherMsg =
  | { kind: 'worker_joined'; worker: WorkerLink }
  /** The worker's connection closed: its credit is gone (its leases run out on their own). */
  | { kind: 'worker_left'; workerId: string }
  /** The worker has `slots` more free slots for `queue`. */
  | { kind: 'credit'; workerId: string; queue: string; slots: number }
  /** The worker takes no more leases (of `queue`, or of any queue when null). */
  | { kind: 'drain'; workerId: string; queue: string | null }
  /** An owner could not use granted slots (no ready job left, or the lease write failed). */
  | { kind: 'credit_returned'; workerId: string; queue: string; slots: number }
  /** An owner's ready jobs for some queues: how many, and the priority of the best. */
  | { kind: 'backlog'; shard: number; owner: ActorRef<OwnerMsg>; counts: Array<[queue: string, ready: number, topPriority: number]> }
  /** The owner of `shard` stopped; grant it nothing more. */
  | { kind: 'owner_gone'; shard: number };
