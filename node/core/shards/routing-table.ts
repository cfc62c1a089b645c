// Which local owner actor serves which shard, and which node the ring names owner of every
// shard (in a cluster). The shard manager and the ring are its only writers; the gateway reads
// it to route a request. Both live in one process on one thread, so a shared
// table is safe here, and it saves a message round trip on every request.

import type { ActorRef } from '../actor/runtime.ts';
import type { OwnerMsg } from '../owner/owner-messages.ts';

export class RoutingTable {
  private readonly owners = new Map<number, ActorRef<OwnerMsg>>();
  /** The keys of `owners`, for picking one at random without a scan. */
  private local: number[] = [];
  /** For each shard, the node the ring names its owner; null before the first ring or outside
   * a cluster. */
  private ownersByRing: readonly string[] | null = null;

  constructor(readonly shardCount: number) {}

  ownerOf(shard: number): ActorRef<OwnerMsg> | undefined {
    return this.owners.get(shard);
  }

  set(shard: number, owner: ActorRef<OwnerMsg>): void {
    if (!this.owners.has(shard)) this.local.push(shard);
    this.owners.set(shard, owner);
  }

  delete(shard: number): void {
    if (this.owners.delete(shard)) this.local = this.local.filter((s) => s !== shard);
  }

  /** A shard served here, drawn with `pick(n)` (uniform in [0, n)), or any shard of the
   * cluster when none is served here. A submission without an idempotency key, or whose key
   * may go anywhere (`anyShard`), may go to any shard, so it goes to one this node serves and
   * needs no hop to another. */
  anyLocalShard(pick: (n: number) => number): number {
    return this.local.length > 0 ? this.local[pick(this.local.length)]! : pick(this.shardCount);
  }

  /** The node the ring names owner of `shard`, as this node sees it. During a hand-off it may
   * not serve the shard yet; during a partition two nodes may disagree (the store decides). */
  placedOn(shard: number): string | undefined {
    return this.ownersByRing?.[shard];
  }

  setPlacement(owners: readonly string[] | null): void {
    this.ownersByRing = owners;
  }

  /** For each shard, the node the ring names owner; null before the first ring. */
  get placement(): readonly string[] | null {
    return this.ownersByRing;
  }

  /** The owner actors serving shards here. */
  localOwners(): IterableIterator<ActorRef<OwnerMsg>> {
    return this.owners.values();
  }

  get served(): number {
    return this.owners.size;
  }

  /** Shards served here, ascending. */
  shards(): number[] {
    return [...this.owners.keys()].sort((a, b) => a - b);
  }
}
