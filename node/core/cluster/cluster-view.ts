// The answer to a client's `cluster` request: the members as this node sees them, and the
// shard map its ring gives.

import type { ClusterView, MemberView } from '../../../protocol/client-messages.ts';
import type { PeerView } from '../membership/membership.ts';

const NO_OWNER = 0xffff;

export function clusterView(
  rid: number,
  self: { node: string; incarnation: number; clientUrl: string; inRing: boolean },
  peers: readonly PeerView[],
  placement: readonly string[] | null,
  shardCount: number,
): ClusterView {
  const members: MemberView[] = [{ ...self, status: 'alive', shards: 0 }, ...peers.map((p) => ({ ...p, shards: 0 }))];
  const index = new Map(members.map((m, i) => [m.node, i]));
  const owners = new Uint8Array(2 * shardCount);
  const view = new DataView(owners.buffer);
  for (let shard = 0; shard < shardCount; shard++) {
    const i = placement === null ? undefined : index.get(placement[shard]!);
    view.setUint16(2 * shard, i ?? NO_OWNER);
    if (i !== undefined) members[i]!.shards++;
  }
  return { t: 'cluster_view', rid, node: self.node, members, owners };
}
