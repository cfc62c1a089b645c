// A whole Kairos node in this process: the database (DATABASE_URL or the embedded server), the
// Postgres store, the system environment, the node's actors and the WebSocket gateway. The CLI's
// `kairos start` and the demo use it; tests start it in child processes through the CLI.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LogLevel, Logger } from '../core/env.ts';
import { createNode, DEFAULT_NODE_CONFIG, type KairosNode, type NodeConfig } from '../core/node.ts';
import type { Store } from '../core/store.ts';
import { chooseDatabase, type DatabaseChoice } from '../store/database-url.ts';
import { createPgStore } from '../store/pg-store.ts';
import { jsonLogger, systemEnv } from './system-env.ts';
import type { TokenTable } from './tokens.ts';
import { startWsGateway, type WsGatewayHandle } from './ws-gateway.ts';

export interface NodeProcessOptions {
  /** Where the node keeps its id and, without DATABASE_URL, the embedded Postgres data. */
  dataDir: string;
  host: string;
  port: number;
  /** Port of the embedded Postgres (ignored with DATABASE_URL). */
  pgPort: number;
  nodeId?: string;
  tokens: TokenTable;
  logLevel: LogLevel;
  config?: Partial<NodeConfig>;
  env?: Record<string, string | undefined>;
  /** Progress of slow start-up steps, for people watching a terminal. */
  onProgress?: (step: string) => void;
}

export interface NodeProcess {
  readonly nodeId: string;
  readonly url: string;
  readonly node: KairosNode;
  readonly store: Store;
  readonly database: DatabaseChoice;
  readonly logger: Logger;
  /** Resolves once every shard this node should own is served. */
  ready(timeoutMs?: number): Promise<void>;
  /** Graceful stop: no new connections, owners commit and release, store and database close. */
  stop(): Promise<void>;
}

export async function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const nodeId = options.nodeId ?? persistentNodeId(dataDir);
  const logger = jsonLogger(options.logLevel, { node: nodeId });
  const config: NodeConfig = { ...DEFAULT_NODE_CONFIG, ...options.config };
  const progress = options.onProgress ?? (() => {});

  progress('starting the database');
  const database = await chooseDatabase({ dataDir: join(dataDir, 'pg'), port: options.pgPort, env: options.env ?? process.env });
  let store: Store;
  try {
    progress('migrating the schema');
    store = await createPgStore({ connectionString: database.connectionString, shardCount: config.shardCount, poolSize: config.committer.inFlightMax + 4 });
  } catch (error) {
    await database.stop();
    throw error;
  }
  const env = systemEnv(nodeId, store, logger);
  const node = createNode(env, config);
  node.start();
  let ws: WsGatewayHandle;
  try {
    ws = await startWsGateway({ host: options.host, port: options.port, tokens: options.tokens, gateway: node.gateway, logger });
  } catch (error) {
    await node.shutdown();
    await store.close();
    await database.stop();
    throw error;
  }
  if (options.tokens.development) {
    logger.log('warn', 'gateway.development_token', { message: 'no tokens configured: accepting the development token for tenant dev' });
  }
  logger.log('info', 'node.listening', { url: ws.url, embeddedPostgres: database.embedded });

  let stopping: Promise<void> | null = null;
  return {
    nodeId,
    url: ws.url,
    node,
    store,
    database,
    logger,
    async ready(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (node.routes.served < config.shardCount) {
        if (Date.now() > deadline) throw new Error(`only ${node.routes.served} of ${config.shardCount} shards acquired after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop() {
      stopping ??= (async () => {
        await ws.close();
        await node.shutdown();
        await store.close();
        await database.stop();
        logger.log('info', 'node.stopped');
      })();
      return stopping;
    },
  };
}

/** A node keeps its id across restarts, so a restarted single node takes its shards straight
 * back instead of waiting for their leases to lapse. */
function persistentNodeId(dataDir: string): string {
  const file = join(dataDir, 'node-id');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const id = `node-${randomBytes(4).toString('hex')}`;
  writeFileSync(file, `${id}\n`);
  return id;
}
