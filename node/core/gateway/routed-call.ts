// A request on its way to the owner of a shard, wherever that owner is. The gateway tries the
// owner on this node, or forwards the request to the node the ring names (a `forward` peer
// message), and tries again while the answer is `unavailable` (the shard is between owners)
// until the call's deadline. Answers are reply messages either way: a local owner's outcome is
// turned into the reply the client would get, and a forwarded one comes back as that reply.
//
// This file holds what a call is and the table of forwards in flight; router.ts does the
// trying, forwarding and settling.

import type { NodeToClient } from '../../../protocol/client-messages.ts';
import type { ForwardedRequest } from '../../../protocol/peer-messages.ts';
import type { NodeToWorker } from '../../../protocol/worker-messages.ts';
import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg } from '../owner/owner-messages.ts';

export type Answer = NodeToClient | NodeToWorker;

export interface RoutedCall {
  /** The client's connection and tenant, which a forward carries. */
  readonly connId: string;
  readonly tenant: string;
  readonly shard: number;
  readonly deadlineMs: number;
  /** Pause between tries while the shard is between owners. */
  readonly retryMs: number;
  /** Only an owner on this node may answer: the call came from another node's gateway, which
   * does the retrying itself. */
  readonly localOnly: boolean;
  /** The request as another node's gateway takes it; its rid is replaced by the forward's id. */
  readonly request: ForwardedRequest;
  /** Whether the request may be sent again when an answer is lost: false for a submission
   * without an idempotency key, which could then run twice. */
  readonly repeatable: boolean;
  /** An answer to this request was lost before: it may have been applied, so running out of
   * time is "outcome unknown", never "not applied". */
  unknown: boolean;
  /** Asks an owner on this node; `answer` is called on the owner's turn. */
  toOwner(owner: ActorRef<OwnerMsg>, answer: (a: Answer) => void): void;
  /** The final answer, on the gateway's turn. */
  finish(answer: Answer): void;
}

/** A forward in flight: what to do with its answer, or without one. */
export interface ForwardHandlers {
  answered(reply: Answer): void;
  /** No answer in time, or the node left the ring: the request may or may not have been
   * applied. */
  lost(): void;
}

interface Pending extends ForwardHandlers {
  node: string;
  sentAtMs: number;
}

/** Forwards in flight from this gateway, by forward id. */
export class ForwardTable {
  private readonly pending = new Map<number, Pending>();
  private nextFid = 1;

  add(node: string, nowMs: number, handlers: ForwardHandlers): number {
    const fid = this.nextFid;
    this.nextFid = this.nextFid >= 0xffff_fff0 ? 1 : this.nextFid + 1;
    this.pending.set(fid, { ...handlers, node, sentAtMs: nowMs });
    return fid;
  }

  take(fid: number, from: string): ForwardHandlers | null {
    const p = this.pending.get(fid);
    // Only the node it was sent to may answer a forward.
    if (p === undefined || p.node !== from) return null;
    this.pending.delete(fid);
    return p;
  }

  /** Removes and returns the forwards whose answer is overdue or whose node left the ring. */
  lost(nowMs: number, timeoutMs: number, ring: ReadonlySet<string>): ForwardHandlers[] {
    const out: ForwardHandlers[] = [];
    for (const [fid, p] of this.pending) {
      if (nowMs - p.sentAtMs >= timeoutMs || !ring.has(p.node)) {
        this.pending.delete(fid);
        out.push(p);
      }
    }
    return out;
  }

  get size(): number {
    return this.pending.size;
  }
}
