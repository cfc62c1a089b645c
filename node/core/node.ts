// One Kairos node: its actors wired together. The same factory runs in production (with the
// system environment) and in the simulator (with the simulated one): TigerBeetle's "one
// replica type, instantiated twice".

import { ActorSystem, type ActorRef } from './actor/runtime.ts';
import { Committer, type CommitterConfig, type CommitterMsg } from './commit/committer.ts';
import { Dispatcher } from './dispatch/dispatcher.ts';
import type { DispatcherMsg } from './dispatch/dispatcher-messages.ts';
import type { PeerMessage } from '../../protocol/peer-messages.ts';
import type { Env } from './env.ts';
import { DEFAULT_GATEWAY_CONFIG, Gateway, type GatewayConfig, type GatewayMsg } from './gateway/gateway.ts';
import { Membership, type MembershipConfig, type MembershipMsg } from './membership/membership.ts';
import { DEFAULT_OWNER_CONFIG, ShardOwner, type OwnerConfig } from './owner/shard-owner.ts';
import { DEFAULT_RETENTION_CONFIG, RetentionRunner, type RetentionConfig, type RetentionMsg } from './retention/retention-runner.ts';
import { boundedLoadRing } from './shards/ring.ts';
import { RoutingTable } from './shards/routing-table.ts';
import { DEFAULT_SHARD_MANAGER_CONFIG, ShardManager, type ShardManagerConfig, type ShardManagerMsg } from './shards/shard-manager.ts';

export interface NodeConfig {
  shardCount: number;
  owner: OwnerConfig;
  shards: ShardManagerConfig;
  committer: CommitterConfig;
  gateway: GatewayConfig;
  retention: RetentionConfig;
  /** Null: a node alone, which wants every shard. Otherwise it learns its peers by gossip and
   * wants the shards the ring gives it. */
  cluster: ClusterConfig | null;
}

export interface ClusterConfig {
  membership: MembershipConfig;
  /** Must grow from one start of the node to the next. */
  incarnation: number;
  /** Where this node's clients connect, told to peers. */
  clientUrl: string;
}

export const DEFAULT_NODE_CONFIG: NodeConfig = {
  shardCount: 256,
  owner: DEFAULT_OWNER_CONFIG,
  shards: DEFAULT_SHARD_MANAGER_CONFIG,
  committer: { inFlightMax: 4, batchWritesMax: 5_000 },
  gateway: DEFAULT_GATEWAY_CONFIG,
  retention: DEFAULT_RETENTION_CONFIG,
  cluster: null,
};

export interface KairosNode {
  readonly env: Env;
  readonly system: ActorSystem;
  readonly routes: RoutingTable;
  readonly committer: ActorRef<CommitterMsg>;
  readonly dispatcher: ActorRef<DispatcherMsg>;
  readonly shardManager: ActorRef<ShardManagerMsg>;
  /** Where the transport adapter delivers client and worker connections. */
  readonly gateway: ActorRef<GatewayMsg>;
  /** The members shards are placed on, as this node sees them; null outside a cluster. */
  ring(): readonly string[] | null;
  /** Where the cluster transport delivers messages from other nodes. */
  deliverPeer(from: string, message: PeerMessage): void;
  /** Starts acquiring `shards` (all of them by default). */
  start(shards?: number[]): void;
  /** Graceful stop: owners commit what they hold, shards are released, actors stop. */
  shutdown(): Promise<void>;
}

export function createNode(env: Env, config: NodeConfig): KairosNode {
  const system = new ActorSystem(env);
  const routes = new RoutingTable(config.shardCount);
  const committer = system.spawn<CommitterMsg>('committer', new Committer(config.committer));
  const dispatcherActor = new Dispatcher();
  const dispatcher = system.spawn<DispatcherMsg>('dispatcher', dispatcherActor);
  const shardManager = system.spawn<ShardManagerMsg>(
    'shards',
    new ShardManager({
      config: config.shards,
      routes,
      spawnOwner: (shard, epoch, exited) =>
        system.spawn(`owner-${shard}`, new ShardOwner({
          shard,
          epoch,
          config: config.owner,
          committer,
          dispatcher,
          takeIdleWorker: (queue) => dispatcherActor.takeIdleWorker(queue),
          exited,
        })),
    }),
  );
  const gateway = system.spawn<GatewayMsg>('gateway', new Gateway({ config: config.gateway, routes, dispatcher }));
  const retention = system.spawn<RetentionMsg>('retention', new RetentionRunner(config.retention));
  const placement = boundedLoadRing();
  const cluster = config.cluster;
  const membershipActor =
    cluster === null
      ? null
      : new Membership({
            config: cluster.membership,
            incarnation: cluster.incarnation,
            clientUrl: cluster.clientUrl,
            ringChanged: (members) => {
              const owners = placement.place(config.shardCount, members);
              const mine = owners.flatMap((node, shard) => (node === env.nodeId ? [shard] : []));
              shardManager.tell({ kind: 'desired', shards: mine });
            },
          });
  const membership = membershipActor === null ? null : system.spawn<MembershipMsg>('membership', membershipActor);
  return {
    env,
    gateway,
    system,
    routes,
    committer,
    dispatcher,
    shardManager,
    start(shards = Array.from({ length: config.shardCount }, (_, i) => i)) {
      // In a cluster the ring decides, once membership has heard from its peers.
      shardManager.tell({ kind: 'start', desired: membership === null ? shards : [] });
      membership?.tell({ kind: 'start' });
      retention.tell({ kind: 'run' });
    },
    ring: () => membershipActor?.ringMembers ?? null,
    deliverPeer(_from, message) {
      if (message.t === 'member_heartbeat') membership?.tell({ kind: 'heartbeat', heartbeat: message });
    },
    shutdown() {
      return new Promise<void>((resolve) => {
        shardManager.tell({
          kind: 'shutdown',
          done: () => {
            system.stopAll();
            resolve();
          },
        });
      });
    },
  };
}
