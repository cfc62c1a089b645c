// One Kairos node: its actors wired together. The same factory runs in production (with the
// system environment) and in the simulator (with the simulated one): TigerBeetle's "one
// replica type, instantiated twice".

import { ActorSystem, type ActorRef } from './actor/runtime.ts';
import { Committer, type CommitterConfig, type CommitterMsg } from './commit/committer.ts';
import { Dispatcher, homeOfWorker } from './dispatch/dispatcher.ts';
import { clusterView } from './cluster/cluster-view.ts';
import { remoteCredit } from './cluster/remote-credit.ts';
import { laneOf, splitLane } from './job/lane.ts';
import { BACKLOG_QUEUES_MAX, BREAKER_SIGNALS_MAX } from '../../protocol/limits.ts';
import { BreakerBoard, type BoardMsg } from './breaker/breaker-board.ts';
import { BreakerTally } from './breaker/breaker-tally.ts';
import type { BreakerConfig } from '../../protocol/breaker-view.ts';
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
  /** The circuit breaker of every queue without settings of its own; null for none. Every node
   * of a cluster should have the same: a breaker's owner decides by its own node's. */
  breakerDefault: BreakerConfig | null;
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
  /** Where other nodes reach this one (libp2p multiaddrs), told to peers. */
  addrs: string[];
  /** Started with seeds to join: wait to hear the cluster before placing shards. */
  joining: boolean;
}

export const DEFAULT_NODE_CONFIG: NodeConfig = {
  shardCount: 256,
  owner: DEFAULT_OWNER_CONFIG,
  shards: DEFAULT_SHARD_MANAGER_CONFIG,
  committer: { inFlightMax: 4, batchWritesMax: 5_000 },
  gateway: DEFAULT_GATEWAY_CONFIG,
  retention: DEFAULT_RETENTION_CONFIG,
  breakerDefault: null,
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
  /** What the node holds now, for its gauges (read when its metrics are scraped). */
  gauges(): NodeGauges;
  /** Graceful stop: owners commit what they hold, shards are released, actors stop. */
  shutdown(): Promise<void>;
}

export interface NodeGauges {
  /** Jobs the owners here hold in memory, per lane: ready, delayed, running. */
  jobs: Map<string, [ready: number, delayed: number, running: number]>;
  shardsOwned: number;
  /** Members of the cluster by the state this node sees them in; empty alone. */
  members: Map<string, number>;
  /** Breakers not closed, as this node knows them (breaker-board.ts), by state. */
  breakers: Map<string, number>;
}

export function createNode(env: Env, config: NodeConfig): KairosNode {
  const cluster = config.cluster;
  const system = new ActorSystem(env);
  const routes = new RoutingTable(config.shardCount);
  const committer = system.spawn<CommitterMsg>('committer', new Committer(config.committer));
  const dispatcherActor = new Dispatcher(cluster === null ? null : remoteCredit(env.network, () => membership?.tell({ kind: 'load_changed' })), () => routes.localOwners());
  const dispatcher = system.spawn<DispatcherMsg>('dispatcher', dispatcherActor);
  const tally = new BreakerTally(() => board.tell({ kind: 'report_soon' }));
  const boardActor = new BreakerBoard({ routes, dispatcher, tally, signalsChanged: cluster === null ? null : () => membership?.tell({ kind: 'load_changed' }) });
  const board = system.spawn<BoardMsg>('breakers', boardActor);
  /** The owner actors themselves, for the gauges. */
  const owners = new Map<number, ShardOwner>();
  const shardManagerActor: ShardManager = new ShardManager({
      config: config.shards,
      routes,
      spawnOwner: (shard, epoch, exited) => {
        const owner = new ShardOwner({
          shard,
          epoch,
          config: config.owner,
          committer,
          dispatcher,
          takeIdleWorker: (queue) => dispatcherActor.takeIdleWorker(queue),
          workerGone: (workerId) => homeOfWorker(workerId) === env.nodeId && !dispatcherActor.hasWorker(workerId),
          mayServe: () => shardManagerActor.mayServe(shard, epoch, env.clock.monotonicMs()),
          tally,
          breakerDefault: config.breakerDefault,
          breakerSignals: (signals) => board.tell({ kind: 'local_signals', shard, signals }),
          exited: (exit) => {
            if (owners.get(shard) === owner) owners.delete(shard);
            exited(exit);
          },
        });
        owners.set(shard, owner);
        return system.spawn(`owner-${shard}`, owner);
      },
      // The hand-off's last step: the node the ring names next may acquire the shard at once.
      released: ({ shard, epoch }) => {
        const next = routes.placedOn(shard);
        if (cluster !== null && next !== undefined && next !== env.nodeId) env.network.send(next, { t: 'handoff_done', shard, releasedEpoch: epoch });
      },
    });
  const shardManager = system.spawn<ShardManagerMsg>('shards', shardManagerActor);
  const placement = boundedLoadRing();
  const membershipActor =
    cluster === null
      ? null
      : new Membership({
            config: cluster.membership,
            incarnation: cluster.incarnation,
            clientUrl: cluster.clientUrl,
            addrs: cluster.addrs,
            joining: cluster.joining,
            load: () => {
              const breakers = boardActor.localSignals(BREAKER_SIGNALS_MAX);
              return {
                shards: routes.served,
                backlog: dispatcherActor.localBacklog(BACKLOG_QUEUES_MAX).map(([lane, ready, topPriority, shards, slots]) => {
                  const [tenant, queue] = splitLane(lane);
                  return { tenant, queue, ready, topPriority, shards, slots };
                }),
                ...(breakers.length > 0 ? { breakers } : {}),
              };
            },
            ringChanged: (members, dead) => {
              // Empty when this node leaves and hears nobody else: it places nothing.
              const owners = members.length === 0 ? null : placement.place(config.shardCount, members);
              routes.setPlacement(owners);
              gateway.tell({ kind: 'ring', members });
              dispatcher.tell({ kind: 'ring', members });
              const mine = (owners ?? []).flatMap((node, shard) => (node === env.nodeId ? [shard] : []));
              shardManager.tell({ kind: 'desired', shards: mine, deadOwners: dead });
            },
          });
  const gateway = system.spawn<GatewayMsg>('gateway', new Gateway({
    config: config.gateway,
    routes,
    dispatcher,
    breakers: { refusal: (tenant, queue, nowMs) => boardActor.refusal(tenant, queue, nowMs), board, defaultConfig: config.breakerDefault },
    clusterView: (rid) =>
      membershipActor === null || cluster === null
        ? clusterView(rid, { node: env.nodeId, incarnation: 0, clientUrl: '', inRing: true }, [], new Array(config.shardCount).fill(env.nodeId), config.shardCount)
        : clusterView(
            rid,
            { node: env.nodeId, incarnation: cluster.incarnation, clientUrl: cluster.clientUrl, inRing: membershipActor.ringMembers.includes(env.nodeId) },
            membershipActor.view(env.clock.monotonicMs()),
            routes.placement,
            config.shardCount,
          ),
  }));
  const retention = system.spawn<RetentionMsg>('retention', new RetentionRunner(config.retention));
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
    gauges() {
      const jobs = new Map<string, [number, number, number]>();
      for (const owner of owners.values()) owner.countJobs(jobs);
      const members = new Map<string, number>();
      for (const member of membershipActor?.view(env.clock.monotonicMs()) ?? []) members.set(member.status, (members.get(member.status) ?? 0) + 1);
      return { jobs, shardsOwned: routes.served, members, breakers: boardActor.countsByState() };
    },
    deliverPeer(from, message) {
      switch (message.t) {
        case 'member_heartbeat':
          membership?.tell({ kind: 'heartbeat', heartbeat: message });
          if (message.node !== env.nodeId) {
            const counts = message.load.backlog.map((b): [string, number, number, number, number] => [laneOf(b.tenant, b.queue), b.ready, b.topPriority, b.shards ?? 1, b.slots ?? 0]);
            dispatcher.tell({ kind: 'remote_backlog', node: message.node, counts });
            if (message.load.breakers !== undefined) board.tell({ kind: 'remote_signals', signals: message.load.breakers });
          }
          return;
        case 'breaker_report':
          return board.tell({ kind: 'reported', counts: message.counts });
        case 'handoff_done':
          return shardManager.tell({ kind: 'acquire' });
        default:
          return gateway.tell({ kind: 'peer', from, message });
      }
    },
    shutdown() {
      // In a cluster, leave first: peers take this node out of their rings at once, and the
      // shards it releases go to the nodes the new ring names, told by `handoff_done`.
      membership?.tell({ kind: 'leave' });
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
