// Which local owner actor serves which shard. The shard manager is its only writer; the
// gateway reads it to route a request. Both live in one process on one thread, so a shared
// table is safe here, and it saves a message round trip on every request.

import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg } from '../owner/owner-messages.ts';

export class RoutingTable {
  private readonly owners = new Map<number, ActorRef<OwnerMsg>>();

  constructor(readonly shardCount: number) {}

  ownerOf(shard: number): ActorRef<OwnerMsg> | undefined {
    return this.owners.get(shard);
  }

  set(shard: number, owner: ActorRef<OwnerMsg>): void {
    this.owners.set(shard, owner);
  }

  delete(shard: number): void {
    this.owners.delete(shard);
  }

  get served(): number {
    return this.owners.size;
  }

  /** Shards served here, ascending. */
  shards(): number[] {
    return [...this.owners.keys()].sort((a, b) => a - b);
  }
}
