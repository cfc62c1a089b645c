// A cluster of real node processes on one database: the first node alone, then the others
// joining the nodes already up, all with one cluster key written to a temporary directory.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { spawnNode, type SpawnedNode, type SpawnNodeOptions } from './spawn-node.ts';

export interface SpawnClusterOptions {
  databaseUrl: string;
  size: number;
  /** Few shards by default: placement is just as real and start-up faster. */
  shards?: number;
  /** Options for every node (join and the key are the cluster's). */
  node?: Omit<SpawnNodeOptions, 'databaseUrl' | 'shards' | 'join' | 'clusterKeyFile' | 'dataDir'>;
}

export interface SpawnedCluster {
  /** The nodes running now, in the order they started. */
  readonly nodes: SpawnedNode[];
  readonly keyFile: string;
  /** Starts one more node joining the running ones. */
  add(): Promise<SpawnedNode>;
  /** Stops `node` (SIGTERM, or the given signal) and starts it again in its data dir, so it
   * keeps its node id. */
  restart(node: SpawnedNode, signal?: NodeJS.Signals): Promise<SpawnedNode>;
  /** Stops every node and removes the key. */
  stop(): Promise<void>;
}

export async function spawnCluster(options: SpawnClusterOptions): Promise<SpawnedCluster> {
  const keyDir = await mkdtemp(join(tmpdir(), 'kairos-cluster-'));
  const keyFile = join(keyDir, 'cluster.key');
  await writeClusterKeyFile(keyFile);
  const nodes: SpawnedNode[] = [];

  async function start(dataDir?: string): Promise<SpawnedNode> {
    const node = await spawnNode({
      ...options.node,
      databaseUrl: options.databaseUrl,
      shards: options.shards ?? 16,
      join: nodes.map((n) => n.peerAddress),
      clusterKeyFile: keyFile,
      ...(dataDir !== undefined && { dataDir }),
    });
    nodes.push(node);
    return node;
  }

  const cluster: SpawnedCluster = {
    nodes,
    keyFile,
    add: () => start(),
    async restart(node, signal) {
      const index = nodes.indexOf(node);
      if (index < 0) throw new Error(`node ${node.nodeId} is not running in this cluster`);
      nodes.splice(index, 1);
      await node.kill(signal);
      return start(node.dataDir);
    },
    async stop() {
      await Promise.all(nodes.splice(0).map((n) => n.kill()));
      await rm(keyDir, { recursive: true, force: true });
    },
  };
  // The others start together: each joins the first, and they find one another by gossip.
  // Settled, not all: a failure must not leave the others starting after the cleanup.
  const first = await Promise.allSettled([start()]);
  const rest = first[0]!.status === 'fulfilled' ? await Promise.allSettled(Array.from({ length: options.size - 1 }, () => start())) : [];
  const failed = [...first, ...rest].find((result) => result.status === 'rejected');
  if (failed !== undefined) {
    await cluster.stop();
    throw failed.reason;
  }
  return cluster;
}
