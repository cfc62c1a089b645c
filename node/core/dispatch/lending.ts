// How much of its workers' time a node lends to other nodes' shards (dispatcher.ts). The aim is
// the same share of the cluster's workers of a lane for every shard with ready jobs of it,
// wherever the shard and the workers are. A lease to a worker attached to another node costs
// both nodes a relayed message per lease, outcome and ack, so the cheapest way to that aim is
// for each node's workers to serve the shards of their own node first and lend only what those
// do not need, to the nodes whose own workers fall short.
//
// With S shards with ready jobs in the cluster and C worker slots, a shard's fair share is
// f = C / S slots. A node with s shards and c slots needs s·f: it has c − s·f to lend, or lacks
// s·f − c. A lender gives each node that lacks slots a part of its surplus in proportion to
// what that node lacks. In a round of turns, where each shard here has one, such a node gets
// (what it lacks / f) · (this node's surplus / all that nodes lack) turns: that many shards'
// worth. Three nodes with 8 shards each, workers of 128 slots on two of them: each of those
// keeps two thirds of its slots and lends a third to the node without workers, whose shards get
// the same share as the others, and no lease of the other two crosses a node.
//
// The other nodes' figures come from their heartbeats, a second old at most; they move shares,
// never safety. A node that lacks slots is lent some by every node that, in its own view, has
// slots to spare, and a better priority than any here is served whatever the shares (the
// dispatcher sees to that).

/** One node's shards with ready jobs of a lane, and the slots of its workers for the lane. */
export interface LaneLoad {
  shards: number;
  slots: number;
}

/** Turns per round for the other nodes this node lends to, while shards here have ready jobs;
 * a node left out gets none. Null when there is nothing to prefer: no shard here has ready
 * jobs, or nobody knows of any slots. */
export function lendingTurns(local: LaneLoad, others: ReadonlyMap<string, LaneLoad>): Map<string, number> | null {
  if (local.shards === 0) return null;
  let shards = local.shards;
  let slots = local.slots;
  for (const load of others.values()) {
    shards += load.shards;
    slots += load.slots;
  }
  if (slots === 0) return null;
  const fairShare = slots / shards;
  const surplus = local.slots - local.shards * fairShare;
  let lacking = 0;
  for (const load of others.values()) lacking += Math.max(0, load.shards * fairShare - load.slots);
  const turns = new Map<string, number>();
  if (surplus <= 0 || lacking <= 0) return turns;
  for (const [node, load] of others) {
    const lacks = load.shards * fairShare - load.slots;
    if (lacks > 0) turns.set(node, Math.max(1, Math.round((lacks / fairShare) * (surplus / lacking))));
  }
  return turns;
}
