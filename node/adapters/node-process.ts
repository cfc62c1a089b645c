// A whole Kairos node in this process: the cluster transport (libp2p), the database
// (DATABASE_URL or the embedded server), the Postgres store, the system environment, the node's
// actors and the WebSocket gateway. The CLI's `kairos start` and the demo use it; tests start it
// in child processes through the CLI.
//
// Every node is a cluster member, alone or not: its id is its libp2p peer id, it gossips
// heartbeats and serves the shards its ring gives it (all of them while it is alone).

import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ADDRS_MAX } from '../../protocol/limits.ts';
import type { LogLevel, Logger } from '../core/env.ts';
import { DEFAULT_MEMBERSHIP_CONFIG, MEMBERS_TOPIC } from '../core/membership/membership.ts';
import { createNode, DEFAULT_NODE_CONFIG, type KairosNode, type NodeConfig } from '../core/node.ts';
import type { Store } from '../core/store.ts';
import { chooseDatabase, type DatabaseChoice } from '../store/database-url.ts';
import { createPgStore } from '../store/pg-store.ts';
import { requireClusterKey } from './libp2p/cluster-key.ts';
import { startLibp2pNetwork } from './libp2p/libp2p-network.ts';
import { loadOrCreatePeerKey } from './libp2p/peer-key.ts';
import { jsonLogger, systemEnv } from './system-env.ts';
import type { TokenTable } from './tokens.ts';
import { DEFAULT_CONNECTION_LIMITS, startWsGateway, type ConnectionLimits } from './ws-gateway.ts';
import { cellOf, type CellMapFile } from './cell-map.ts';
import type { ElsewhereCell } from './cell-routing.ts';
import { PrometheusMetrics } from './prometheus.ts';
import { startHttpEndpoints, type HttpEndpoints, type Readiness } from './http-endpoints.ts';

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0'];
/** The node's libp2p private key, in its data dir (peer-key.ts). */
const PEER_KEY_FILE = 'peer-key';

export interface NodeProcessOptions {
  /** Where the node keeps its key (hence its id) and, without DATABASE_URL, the embedded
   * Postgres data. */
  dataDir: string;
  host: string;
  port: number;
  /** The client URL told to peers and clients (which fail over to it); default the URL the
   * server listens on, which is no use to others when it is 0.0.0.0 or behind a proxy. */
  advertiseUrl?: string;
  /** Port of the embedded Postgres (ignored with DATABASE_URL). */
  pgPort: number;
  tokens: TokenTable;
  /** Client connections the node accepts; default DEFAULT_CONNECTION_LIMITS. */
  connectionLimits?: ConnectionLimits;
  logLevel: LogLevel;
  /** The cluster settings come from the options below. */
  config?: Partial<Omit<NodeConfig, 'cluster'>>;
  env?: Record<string, string | undefined>;
  /** Multiaddrs other nodes reach this one on. Default: loopback, a free port. */
  listen?: string[];
  /** Multiaddrs of cluster nodes to join, each with its /p2p/<peer id>. */
  join?: string[];
  /** The cluster key (cluster-key.ts). Without one the node may only be alone on loopback,
   * unless `insecureDevCluster` says the cluster is for development. */
  clusterKey?: Uint8Array | null;
  insecureDevCluster?: boolean;
  /** Progress of slow start-up steps, for people watching a terminal. */
  onProgress?: (step: string) => void;
  /** This node's cell and the cell map (cell-map.ts): tenants of other cells are redirected,
   * or with `proxy` carried there. Without it the node serves every tenant. */
  cell?: { name: string; map: CellMapFile; proxy: boolean };
  /** The operators' HTTP listener (/metrics, /healthz, /readyz); none without it. */
  http?: { host: string; port: number };
}

export interface NodeProcess {
  /** The libp2p peer id. */
  readonly nodeId: string;
  readonly url: string;
  /** Where other nodes reach this one: full multiaddrs with /p2p/<node id>, to --join. */
  readonly peerAddresses: string[];
  readonly node: KairosNode;
  readonly store: Store;
  readonly database: DatabaseChoice;
  readonly logger: Logger;
  /** The operators' HTTP listener's URL, when it has one. */
  readonly httpUrl: string | null;
  /** Resolves once the node has a ring and serves every shard the ring gives it. */
  ready(timeoutMs?: number): Promise<void>;
  /** Graceful stop: no new connections, owners commit and release, the transport, store and
   * database close. */
  stop(): Promise<void>;
}

export async function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const listen = options.listen ?? DEFAULT_LISTEN;
  const seeds = options.join ?? [];
  const clusterKey = options.clusterKey ?? null;
  requireClusterKey({ key: clusterKey, listen, seeds, development: options.insecureDevCluster ?? false });
  // A restart begins later by the wall clock, so its incarnation is higher than the last one's.
  const incarnation = Date.now();
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const privateKey = await loadOrCreatePeerKey(join(dataDir, PEER_KEY_FILE));
  const nodeId = peerIdFromPrivateKey(privateKey).toString();
  const logger = jsonLogger(options.logLevel, { node: nodeId });
  const config = { ...DEFAULT_NODE_CONFIG, ...options.config };
  const progress = options.onProgress ?? (() => {});

  // What has started, stopped in reverse order when a later step fails. The first error is the
  // one to report, so errors while stopping are dropped.
  const started: Array<() => Promise<unknown>> = [];
  const unwind = async (error: unknown): Promise<never> => {
    for (const stop of started.reverse()) await stop().catch(() => {});
    throw error;
  };

  // The transport starts first: a bad --listen or --join fails before the database starts. The
  // node does not exist yet; until it does, messages from peers are dropped (delivery is at
  // most once anyway, and nobody sends to a node that has not yet gossiped its heartbeat).
  let node: KairosNode | null = null;
  const network = await startLibp2pNetwork({
    privateKey,
    listen,
    seeds,
    clusterKey,
    logger,
    onMessage: (from, message) => node?.deliverPeer(from, message),
  });
  started.push(() => network.stop());
  progress('starting the database');
  const database = await chooseDatabase({ dataDir: join(dataDir, 'pg'), port: options.pgPort, env: options.env ?? process.env }).catch(unwind);
  started.push(() => database.stop());
  progress('migrating the schema');
  const store = await createPgStore({
    connectionString: database.connectionString,
    shardCount: config.shardCount,
    poolSize: config.committer.inFlightMax + 4,
  }).catch(unwind);
  started.push(() => store.close());
  // The WebSocket server listens before the node exists because the node tells its peers the
  // server's URL, whose port is known only once it listens. The node is created in the same
  // turn as the server's start resolves, before any upgrade can be handled, so the gateway ref
  // below never meets a missing node.
  const ws = await startWsGateway({
    host: options.host,
    port: options.port,
    tokens: options.tokens,
    limits: options.connectionLimits ?? DEFAULT_CONNECTION_LIMITS,
    gateway: { tell: (msg) => node!.gateway.tell(msg) },
    logger,
    ...(options.cell !== undefined && { cells: cellsOf(options.cell) }),
  }).catch(unwind);
  const metrics = options.http === undefined ? undefined : new PrometheusMetrics();
  const kairos = createNode(systemEnv(nodeId, store, logger, network, metrics), {
    ...config,
    cluster: { membership: DEFAULT_MEMBERSHIP_CONFIG, incarnation, clientUrl: options.advertiseUrl ?? ws.url, addrs: network.addresses.slice(0, ADDRS_MAX), joining: seeds.length > 0 },
  });
  node = kairos;
  network.subscribe(MEMBERS_TOPIC);
  kairos.start();
  if (options.tokens.development) {
    logger.log('warn', 'gateway.development_token', { message: 'no tokens configured: accepting the development token for tenant dev' });
  }
  logger.log('info', 'node.listening', {
    url: ws.url,
    peers: network.addresses,
    embeddedPostgres: database.embedded,
    ...(options.cell !== undefined && { cell: options.cell.name, cellMapVersion: options.cell.map.current.version, cellProxy: options.cell.proxy }),
  });

  let stopping: Promise<void> | null = null;
  let http: HttpEndpoints | null = null;
  if (options.http !== undefined && metrics !== undefined) {
    metrics.watch({ node: () => kairos.gauges(), pools: () => store.pools(), connections: () => ws.connections });
    http = await startHttpEndpoints({ ...options.http, metrics, logger, readiness }).catch(async (error: unknown) => {
      await kairos.shutdown();
      await ws.close();
      return unwind(error);
    });
  }

  /** Whether the node can serve: it is not stopping, the database answers, it is in the ring
   * and serves every shard the ring gives it. */
  async function readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    if (stopping !== null) reasons.push('the node is stopping');
    const ring = kairos.ring();
    if (ring !== null && !ring.includes(nodeId)) reasons.push('the node is not in the ring');
    const state = unserved();
    if (state === null) reasons.push('the node has no ring yet');
    else if (state.missing > 0) reasons.push(`the node serves ${state.mine - state.missing} of the ${state.mine} shards its ring gives it`);
    const answered = await withTimeout(store.ping(), READY_PING_TIMEOUT_MS).then(
      () => null,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    if (answered !== null) reasons.push(`the database does not answer: ${answered}`);
    return { ready: reasons.length === 0, reasons };
  }

  /** The shards the node's ring gives it, and how many of them it does not serve yet; null
   * before its first ring. */
  function unserved(): { mine: number; missing: number } | null {
    const placement = kairos.routes.placement;
    if (placement === null) return null;
    const mine = placement.flatMap((owner, shard) => (owner === nodeId ? [shard] : []));
    return { mine: mine.length, missing: mine.filter((shard) => kairos.routes.ownerOf(shard) === undefined).length };
  }

  return {
    nodeId,
    url: ws.url,
    httpUrl: http?.url ?? null,
    get peerAddresses() {
      return network.addresses;
    },
    node: kairos,
    store,
    database,
    logger,
    async ready(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const state = unserved();
        if (state !== null && state.missing === 0) return;
        if (Date.now() > deadline) {
          throw new Error(
            state === null
              ? `no ring after ${timeoutMs} ms`
              : `serves ${state.mine - state.missing} of the ${state.mine} shards its ring gives it after ${timeoutMs} ms`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop() {
      stopping ??= (async () => {
        await ws.close();
        options.cell?.map.close();
        await kairos.shutdown();
        await network.stop();
        await store.close();
        await database.stop();
        // Last: until now /readyz has said the node is stopping.
        await http?.close();
        logger.log('info', 'node.stopped');
      })();
      return stopping;
    },
  };
}

/** Where the gateway sends tenants of other cells. */
function cellsOf(cell: NonNullable<NodeProcessOptions['cell']>): { elsewhere(tenant: string): ElsewhereCell | null; proxy: boolean } {
  return {
    proxy: cell.proxy,
    elsewhere(tenant) {
      const map = cell.map.current;
      const serving = cellOf(map, tenant);
      return serving === cell.name ? null : { cell: serving, urls: map.cells.get(serving)!.urls };
    },
  };
}

const READY_PING_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
