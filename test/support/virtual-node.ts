// One node's actors on virtual time and the in-memory store, for tests of the owner and the
// dispatcher: submissions and workers are told to the actors directly, and `run` advances the
// simulated clock until a condition holds.

import type { Logger } from '../../node/core/env.ts';
import { DEFAULT_NODE_CONFIG, createNode, type NodeConfig } from '../../node/core/node.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { EventQueue } from '../../sim/event-queue.ts';
import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';

export const VIRTUAL_START_MS = 1_764_300_000_000;

export function virtualNode<S extends MemoryStore>(
  shards: number,
  overrides: Partial<typeof DEFAULT_NODE_CONFIG.owner>,
  makeStore: (backing: MemoryBacking) => S,
  more: { breakerDefault?: NodeConfig['breakerDefault']; logger?: Logger } = {},
) {
  const queue = new EventQueue(VIRTUAL_START_MS);
  const backing = new MemoryBacking(shards, () => queue.nowMs);
  const store = makeStore(backing);
  const env = simEnv({ nodeId: 'n1', queue, random: new SeededRandom(7), store, ...(more.logger !== undefined && { logger: more.logger }) });
  const node = createNode(env, { ...DEFAULT_NODE_CONFIG, shardCount: shards, owner: { ...DEFAULT_NODE_CONFIG.owner, ...overrides }, breakerDefault: more.breakerDefault ?? null });
  node.start();
  const run = (done: () => boolean, forMs = 60_000) => runUntil(queue, done, queue.nowMs + forMs);
  return { queue, backing, store, node, run };
}
