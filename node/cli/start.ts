// `kairos start`: run a node in the foreground until SIGINT or SIGTERM, then stop gracefully.

import { parseArgs } from 'node:util';
import { loadClusterKey } from '../adapters/libp2p/cluster-key.ts';
import { DEFAULT_LISTEN, startNodeProcess } from '../adapters/node-process.ts';
import { loadTokens } from '../adapters/tokens.ts';
import { DEFAULT_CONNECTION_LIMITS } from '../adapters/ws-gateway.ts';
import type { LogLevel } from '../core/env.ts';
import { DEFAULT_GATEWAY_CONFIG } from '../core/gateway/gateway.ts';
import type { RateLimit } from '../core/gateway/token-bucket.ts';
import { DEFAULT_OWNER_CONFIG } from '../core/owner/shard-owner.ts';
import { DEFAULT_RETENTION_CONFIG, RETENTION_DAYS_MAX } from '../core/retention/retention-runner.ts';
import { URL_CHARS_MAX } from '../../protocol/limits.ts';
import { intOption, listOption, oneOfOption, UsageError } from './args.ts';
import { stopSignals } from './stop-signals.ts';
import { CellMapFile } from '../adapters/cell-map.ts';
import { jsonLogger } from '../adapters/system-env.ts';
import { breakerConfigOf, breakerSpecSchema } from '../../protocol/breaker-view.ts';
import { Invalid } from '../../protocol/schema.ts';
import type { BreakerConfig } from '../../protocol/breaker-view.ts';

export const START_HELP = `kairos start [options]
  --data-dir DIR     node key (its id) and embedded Postgres data (env KAIROS_DATA_DIR, default ./.kairos)
  --host HOST        address clients and workers connect to (env KAIROS_HOST, default 127.0.0.1)
  --port PORT        WebSocket port (env KAIROS_PORT, default 7070)
  --advertise-url U  the ws:// or wss:// URL other nodes give clients for this node
                     (env KAIROS_ADVERTISE_URL; default the address it listens on)
  --pg-port PORT     embedded Postgres port (env KAIROS_PG_PORT, default 54329)
  --listen MULTIADDR where other nodes connect; repeatable or comma-separated
                     (env KAIROS_LISTEN, default ${DEFAULT_LISTEN.join(',')})
  --join MULTIADDR   a node of the cluster to join, with its /p2p/<node id>; repeatable or
                     comma-separated (env KAIROS_JOIN). A running node prints its own.
  --cluster-key FILE the cluster's key from kairos keygen (env KAIROS_CLUSTER_KEY_FILE, or the
                     key itself in KAIROS_CLUSTER_KEY); needed to join or to listen beyond loopback
  --insecure-dev-cluster  join or listen without a cluster key: anyone who reaches the node
                     can join the cluster (env KAIROS_INSECURE_DEV_CLUSTER=1; development only)
  --shards N         shard count, fixed when the cluster is created (env KAIROS_SHARDS, default 256)
  --retention-days N days a finished job (succeeded, dead-lettered or cancelled) and its
                     idempotency key are kept, counted from the day the job was accepted, by the
                     database's clock; a day that still holds a pending or running job is kept
                     (env KAIROS_RETENTION_DAYS, default ${DEFAULT_RETENTION_CONFIG.keepDays}, 1 to ${RETENTION_DAYS_MAX}); give every node the same
  --lease-ms N       worker lease time-to-live; heartbeats extend it (env KAIROS_LEASE_MS, default 30000)
  --rate-limit R[:B] per-tenant submissions per second, burst B (env KAIROS_RATE_LIMIT; default none)
  --inflight-max N   requests of any kind in flight per connection (a batch counts its jobs)
                     before requests are refused as overloaded (env KAIROS_INFLIGHT_MAX, default 20000)
  --reads-max N      reads (get, list, dlq_list, schedule_get, schedule_list, breaker_list) in flight per connection before reads are refused as
                     overloaded; 8 run at once (env KAIROS_READS_MAX, default ${DEFAULT_GATEWAY_CONFIG.connReadsMax})
  --hello-deadline-ms N  a connection that sends no hello in this time is closed
                     (env KAIROS_HELLO_DEADLINE_MS, default ${DEFAULT_GATEWAY_CONFIG.helloDeadlineMs})
  --refusal-limit R[:B]  refusals a connection may earn by its own mistakes, per second and in a
                     burst, before it is closed (env KAIROS_REFUSAL_LIMIT, default ${DEFAULT_GATEWAY_CONFIG.refusals.perSecond}:${DEFAULT_GATEWAY_CONFIG.refusals.burst})
  --connections-max N  open client connections per node; more are refused with HTTP 503
                     (env KAIROS_CONNECTIONS_MAX, default ${DEFAULT_CONNECTION_LIMITS.connectionsMax})
  --tenant-connections-max N  open client connections per tenant on this node; more are
                     refused with HTTP 503 (env KAIROS_TENANT_CONNECTIONS_MAX, default ${DEFAULT_CONNECTION_LIMITS.tenantConnectionsMax})
  --cell NAME        this node's cell, with --cell-map: it serves only the tenants the map gives
                     this cell, and sends the others to theirs (env KAIROS_CELL)
  --cell-map FILE    the cell map, JSON (README, Cells; env KAIROS_CELL_MAP); re-read every 5 s
  --cell-proxy       carry other cells' connections there instead of redirecting the client
                     (env KAIROS_CELL_PROXY=1)
  --http-port PORT   serve /metrics (Prometheus), /healthz and /readyz on this port, apart from
                     the client port (env KAIROS_HTTP_PORT; default none: no HTTP listener)
  --http-host HOST   where that listener listens (env KAIROS_HTTP_HOST, default 127.0.0.1: the
                     metrics name tenants and queues)
  --breaker-default JSON  a circuit breaker for every queue without settings of its own, e.g.
                     '{"failureRatePct":50,"minAttempts":20,"cooldownMs":5000}' (the fields of the
                     SDK's breakers.set; {} takes every default; env KAIROS_BREAKER_DEFAULT;
                     default none); give every node the same
  --tokens FILE      JSON {"token": "tenant"} (env KAIROS_TOKENS_FILE or KAIROS_TOKENS=token=tenant,...)
  --log-level LEVEL  debug|info|warn|error (env KAIROS_LOG_LEVEL, default info)
Uses DATABASE_URL when set, else starts the embedded PostgreSQL.`;

export async function startCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'pg-port': { type: 'string' },
      'advertise-url': { type: 'string' },
      listen: { type: 'string', multiple: true },
      join: { type: 'string', multiple: true },
      'cluster-key': { type: 'string' },
      'insecure-dev-cluster': { type: 'boolean' },
      shards: { type: 'string' },
      'lease-ms': { type: 'string' },
      'retention-days': { type: 'string' },
      'rate-limit': { type: 'string' },
      'inflight-max': { type: 'string' },
      'reads-max': { type: 'string' },
      'hello-deadline-ms': { type: 'string' },
      'refusal-limit': { type: 'string' },
      'connections-max': { type: 'string' },
      'tenant-connections-max': { type: 'string' },
      tokens: { type: 'string' },
      'log-level': { type: 'string' },
      cell: { type: 'string' },
      'cell-map': { type: 'string' },
      'cell-proxy': { type: 'boolean' },
      'breaker-default': { type: 'string' },
      'http-port': { type: 'string' },
      'http-host': { type: 'string' },
    },
  });
  const env = process.env;
  const shardCount = intOption(values.shards ?? env.KAIROS_SHARDS, '--shards', 256, 1, 4096);
  const leaseMs = intOption(values['lease-ms'] ?? env.KAIROS_LEASE_MS, '--lease-ms', DEFAULT_OWNER_CONFIG.leaseMs, 100, 86_400_000);
  const breakerDefault = breakerDefaultOption(values['breaker-default'] ?? env.KAIROS_BREAKER_DEFAULT);
  const retentionDays = intOption(values['retention-days'] ?? env.KAIROS_RETENTION_DAYS, '--retention-days', DEFAULT_RETENTION_CONFIG.keepDays, 1, RETENTION_DAYS_MAX);
  const progress = (step: string) => process.stderr.write(`kairos: ${step}…\n`);
  const logLevel = oneOfOption<LogLevel>(values['log-level'] ?? env.KAIROS_LOG_LEVEL, '--log-level', ['debug', 'info', 'warn', 'error'], 'info');
  const cell = await cellOption(values.cell ?? env.KAIROS_CELL, values['cell-map'] ?? env.KAIROS_CELL_MAP, values['cell-proxy'] ?? env.KAIROS_CELL_PROXY === '1', logLevel);
  // From now on: a signal during start-up lets the start finish, then the node stops.
  const stopAsked = stopSignals((line) => process.stderr.write(`kairos: ${line}\n`)).asked;
  const node = await startNodeProcess({
    dataDir: values['data-dir'] ?? env.KAIROS_DATA_DIR ?? '.kairos',
    host: values.host ?? env.KAIROS_HOST ?? '127.0.0.1',
    port: intOption(values.port ?? env.KAIROS_PORT, '--port', 7070, 0, 65535),
    pgPort: intOption(values['pg-port'] ?? env.KAIROS_PG_PORT, '--pg-port', 54329, 1, 65535),
    ...urlOption(values['advertise-url'] ?? env.KAIROS_ADVERTISE_URL),
    listen: listOption(values.listen, env.KAIROS_LISTEN, DEFAULT_LISTEN),
    join: listOption(values.join, env.KAIROS_JOIN, []),
    clusterKey: await loadClusterKey({ file: values['cluster-key'], env }),
    insecureDevCluster: values['insecure-dev-cluster'] ?? env.KAIROS_INSECURE_DEV_CLUSTER === '1',
    tokens: loadTokens(env, values.tokens),
    connectionLimits: {
      connectionsMax: intOption(values['connections-max'] ?? env.KAIROS_CONNECTIONS_MAX, '--connections-max', DEFAULT_CONNECTION_LIMITS.connectionsMax, 1),
      tenantConnectionsMax: intOption(
        values['tenant-connections-max'] ?? env.KAIROS_TENANT_CONNECTIONS_MAX,
        '--tenant-connections-max',
        DEFAULT_CONNECTION_LIMITS.tenantConnectionsMax,
        1,
      ),
    },
    logLevel,
    ...(cell !== null && { cell }),
    ...httpOption(values['http-port'] ?? env.KAIROS_HTTP_PORT, values['http-host'] ?? env.KAIROS_HTTP_HOST),
    config: {
      shardCount,
      retention: { ...DEFAULT_RETENTION_CONFIG, keepDays: retentionDays },
      breakerDefault,
      owner: { ...DEFAULT_OWNER_CONFIG, leaseMs, leaseCheckMs: Math.min(DEFAULT_OWNER_CONFIG.leaseCheckMs, leaseMs / 4) },
      gateway: {
        ...DEFAULT_GATEWAY_CONFIG,
        connInflightMax: intOption(values['inflight-max'] ?? env.KAIROS_INFLIGHT_MAX, '--inflight-max', DEFAULT_GATEWAY_CONFIG.connInflightMax, 1),
        connReadsMax: intOption(values['reads-max'] ?? env.KAIROS_READS_MAX, '--reads-max', DEFAULT_GATEWAY_CONFIG.connReadsMax, 1),
        helloDeadlineMs: intOption(values['hello-deadline-ms'] ?? env.KAIROS_HELLO_DEADLINE_MS, '--hello-deadline-ms', DEFAULT_GATEWAY_CONFIG.helloDeadlineMs, 1),
        refusals: rateLimitOption(values['refusal-limit'] ?? env.KAIROS_REFUSAL_LIMIT, '--refusal-limit') ?? DEFAULT_GATEWAY_CONFIG.refusals,
        rateLimit: rateLimitOption(values['rate-limit'] ?? env.KAIROS_RATE_LIMIT, '--rate-limit'),
      },
    },
    onProgress: progress,
  });
  progress(`node ${node.nodeId} waiting for its shards`);
  if ((await Promise.race([node.ready().then(() => 'ready' as const), stopAsked])) === 'ready') {
    process.stdout.write(`kairos: node ${node.nodeId} ready at ${node.url} (${shardCount} shards, ${node.database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'}${node.httpUrl === null ? '' : `, metrics and health at ${node.httpUrl}`})\n`);
    process.stdout.write(`kairos: peers can join with --join ${node.peerAddresses[0]}\n`);
    await stopAsked;
  }
  await node.stop();
  process.stdout.write('kairos: stopped\n');
}


/** `R` or `R:B`: R a second, bursts of B (default R). */
function rateLimitOption(text: string | undefined, name: string): RateLimit | null {
  if (text === undefined || text === '') return null;
  const match = /^(\d+)(?::(\d+))?$/.exec(text);
  if (match === null || Number(match[1]) === 0) throw new UsageError(`${name} takes R or R:B (positive integers), got '${text}'`);
  const perSecond = Number(match[1]);
  return { perSecond, burst: match[2] === undefined ? perSecond : Number(match[2]) };
}

/** `--advertise-url`: a ws:// or wss:// URL, checked here so that a typo fails at start rather
 * than in every client that tries to fail over to it. */
function urlOption(text: string | undefined): { advertiseUrl?: string } {
  if (text === undefined || text === '') return {};
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--advertise-url takes a ws:// or wss:// URL, got '${text}'`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`--advertise-url takes a ws:// or wss:// URL, got '${text}'`);
  if (text.length > URL_CHARS_MAX) throw new UsageError(`--advertise-url is longer than ${URL_CHARS_MAX} characters`);
  return { advertiseUrl: text };
}

/** --cell and --cell-map go together; the map is read (and checked) before anything starts. */
async function cellOption(name: string | undefined, mapPath: string | undefined, proxy: boolean, logLevel: LogLevel): Promise<{ name: string; map: CellMapFile; proxy: boolean } | null> {
  if ((name === undefined || name === '') !== (mapPath === undefined || mapPath === '')) throw new UsageError('--cell and --cell-map go together');
  if (name === undefined || name === '' || mapPath === undefined) {
    if (proxy) throw new UsageError('--cell-proxy needs --cell and --cell-map');
    return null;
  }
  try {
    return { name, map: await CellMapFile.open(mapPath, name, jsonLogger(logLevel)), proxy };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The node's default circuit breaker: the settings of a breaker_set, as JSON, without a queue. */
function breakerDefaultOption(value: string | undefined): BreakerConfig | null {
  if (value === undefined || value === '') return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new UsageError(`--breaker-default must be a JSON object, got '${value}'`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || 'queue' in parsed) {
    throw new UsageError(`--breaker-default must be a JSON object of breaker settings (no queue), got '${value}'`);
  }
  const spec = breakerSpecSchema.check({ ...parsed, queue: 'default' });
  if (spec instanceof Invalid) throw new UsageError(`--breaker-default: ${spec.message}`);
  return breakerConfigOf(spec);
}

/** The operators' HTTP listener: none unless a port is given. */
function httpOption(port: string | undefined, host: string | undefined): { http?: { host: string; port: number } } {
  if (port === undefined || port === '') {
    if (host !== undefined && host !== '') throw new UsageError('--http-host needs --http-port');
    return {};
  }
  return { http: { host: host === undefined || host === '' ? '127.0.0.1' : host, port: intOption(port, '--http-port', 0, 0, 65535) } };
}
