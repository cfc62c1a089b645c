// Two cells, each a Kairos cluster with a PostgreSQL of its own, reading one cell map: cell A on
// the test server, cell B on an embedded server this test starts, so that it can stop it. A
// tenant that connects to the wrong cell is redirected (or, through a --cell-proxy node,
// carried) to its own, and a cell whose database goes away takes only its own tenants down.

import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../node/store/embedded.ts';
import { SUPPORTED_VERSIONS } from '../../protocol/limits.ts';
import { connect, KairosError, OutcomeUnknownError, RequestTimeoutError, type ConnectOptions, type KairosClient } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { RawClient } from '../support/raw-client.ts';
import { OTHER_TOKEN, TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { COMMITTED_TWICE_SQL, TERMINAL_LOG_SQL } from '../support/terminal-commits.ts';

/** Short leases: a worker's verdict lost while B's database is down costs a lease's wait. */
const LEASE_MS = 3_000;
const OUTAGE_MS = 4_000;
/** How often a node pings its client connections (ws-gateway.ts). */
const PING_EVERY_MS = 15_000;

let tempDir: string;
let dbA: TestDatabase;
/** Cell B's server, null while the test has it stopped. */
let pgB: EmbeddedPostgresHandle | null = null;
let pgBPort: number;
let keyFile: string;
let mapFile: string;
let nodeA: SpawnedNode;
let nodeB: SpawnedNode;
/** Cell A's second node, started with --cell-proxy. */
let proxyNode: SpawnedNode;
/** A tenant-b connection through the proxy node, opened first thing (see beforeAll). */
let longLived: { client: RawClient; openedMs: number; closeCode: number | null };
const nodes: SpawnedNode[] = [];
const clients: KairosClient[] = [];
const workers: SpawnedWorker[] = [];

const urlOf = (port: number) => `ws://127.0.0.1:${port}`;
const sqlA = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) => adminQuery<R>(text, values, dbA.name);

async function sqlB<R extends Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: pgB!.connectionString });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function startPgB(): Promise<EmbeddedPostgresHandle> {
  return startEmbeddedPostgres({ dataDir: join(tempDir, 'pg-b'), port: pgBPort, postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off'] });
}

function cellNode(cell: 'cell-a' | 'cell-b', options: { databaseUrl: string; port: number; join?: string[]; env?: Record<string, string> }): Promise<SpawnedNode> {
  return spawnNode({
    databaseUrl: options.databaseUrl,
    port: options.port,
    leaseMs: LEASE_MS,
    clusterKeyFile: keyFile,
    ...(options.join !== undefined && { join: options.join }),
    env: { KAIROS_CELL: cell, KAIROS_CELL_MAP: mapFile, ...options.env },
  });
}

async function client(url: string, token: string, extra: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  const opened = await connect({ url, token, onWarning: () => {}, ...extra });
  clients.push(opened);
  return opened;
}

beforeAll(async () => {
  tempDir = await mkdtemp(join(tmpdir(), 'kairos-cells-'));
  // The postgres OS user (the server's, when the tests run as root) must reach the data dir.
  await chmod(tempDir, 0o755);
  keyFile = join(tempDir, 'cluster.key');
  mapFile = join(tempDir, 'cells.json');
  const [portA, portB] = [await freePort(), await freePort()];
  pgBPort = await freePort();
  await writeClusterKeyFile(keyFile);
  await writeFile(
    mapFile,
    JSON.stringify({
      version: 1,
      default: 'cell-a',
      cells: { 'cell-a': { urls: [urlOf(portA)] }, 'cell-b': { urls: [urlOf(portB)] } },
      tenants: { 'tenant-a': 'cell-a', 'tenant-b': 'cell-b' },
    }),
  );
  [dbA, pgB] = await Promise.all([createTestDatabase(), startPgB()]);
  [nodeA, nodeB] = await Promise.all([
    cellNode('cell-a', { databaseUrl: dbA.url, port: portA }),
    cellNode('cell-b', { databaseUrl: pgB.connectionString, port: portB }),
  ]);
  nodes.push(nodeA, nodeB);
  // After the nodes: node B's start creates the schema of its database.
  await Promise.all([sqlA(TERMINAL_LOG_SQL), sqlB(TERMINAL_LOG_SQL)]);
  proxyNode = await cellNode('cell-a', { databaseUrl: dbA.url, port: await freePort(), join: [nodeA.peerAddress], env: { KAIROS_CELL_PROXY: '1' } });
  nodes.push(proxyNode);
  // A node pings its connections every 15 s and drops those that missed a pong; the last test
  // checks this one after it has met two pings, a wait the other tests fill.
  const raw = await RawClient.open(proxyNode.url, { authorization: `Bearer ${OTHER_TOKEN}` });
  longLived = { client: raw, openedMs: Date.now(), closeCode: null };
  raw.ws.once('close', (code) => (longLived.closeCode = code));
  raw.send({ t: 'hello', versions: [...SUPPORTED_VERSIONS] });
  await raw.until((r) => r.t === 'welcome');
});

afterAll(async () => {
  longLived?.client.close();
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await Promise.all(workers.map((w) => w.kill()));
  await Promise.all(nodes.map((n) => n.kill()));
  await pgB?.stop();
  await dbA?.drop();
  await rm(tempDir, { recursive: true, force: true });
});

describe('cells', () => {
  it('redirects a tenant of another cell to it, in the SDK and on the wire', async () => {
    const warnings: string[] = [];
    const b = await client(nodeA.url, OTHER_TOKEN, { onWarning: (w) => warnings.push(w) });
    expect(b.node).toBe(nodeB.nodeId);
    expect(warnings.some((w) => w.includes('tenant served by cell cell-b'))).toBe(true);
    const { jobId } = await b.submit({ queue: 'redirected', payload: new Uint8Array([1]) });
    expect(await sqlB('SELECT tenant FROM jobs WHERE id = $1', [jobId])).toEqual([{ tenant: 'tenant-b' }]);
    expect(await sqlA('SELECT id FROM jobs WHERE id = $1', [jobId])).toEqual([]);

    const raw = await RawClient.open(nodeA.url, { authorization: `Bearer ${OTHER_TOKEN}` });
    const closed = new Promise<number>((resolve) => raw.ws.once('close', (code) => resolve(code)));
    raw.send({ t: 'hello', versions: [...SUPPORTED_VERSIONS] });
    expect(await raw.until((r) => r.t === 'redirect')).toEqual({ t: 'redirect', cell: 'cell-b', urls: [nodeB.url] });
    expect(await closed).toBe(1000);
    expect(raw.replies.map((r) => r.t)).toEqual(['redirect']);
  });

  it("keeps a cell's failure in the cell: tenant-a runs on while cell B's PostgreSQL is down", async () => {
    const aClient = await client(nodeA.url, TEST_TOKEN);
    // Short deadlines: the refusals of the outage are what this client is here to see.
    const bClient = await client(nodeA.url, OTHER_TOKEN, { requestTimeoutMs: 2_000, retry: { deadlineMs: 1_000 } });
    const [aWorker, bWorker] = await Promise.all([
      spawnWorker({ url: nodeA.url, token: TEST_TOKEN, queue: 'steady', behaviour: 'record', concurrency: 8 }),
      spawnWorker({ url: nodeA.url, token: OTHER_TOKEN, queue: 'steady', behaviour: 'record', concurrency: 8 }),
    ]);
    workers.push(aWorker, bWorker);

    const acked = { a: new Set<string>(), b: new Set<string>() };
    const refused = { a: [] as Refusal[], b: [] as Refusal[] };
    /** Tenant-b's acknowledged batches: when sent, when answered. */
    const bAcked: Array<{ sentMs: number; answeredMs: number }> = [];
    let producing = true;
    const produce = async (tenant: 'a' | 'b', sdk: KairosClient) => {
      for (let n = 0; producing; n++) {
        const sentMs = Date.now();
        const specs = Array.from({ length: 10 }, (_, i) => ({ queue: 'steady', payload: new TextEncoder().encode(`${tenant}/${n}/${i}`) }));
        const results = await sdk.submitMany(specs);
        const answeredMs = Date.now();
        for (const result of results) {
          if (result instanceof Error) refused[tenant].push({ atMs: answeredMs, why: whyRefused(result) });
          else acked[tenant].add(result.jobId);
        }
        if (tenant === 'b' && results.some((r) => !(r instanceof Error))) bAcked.push({ sentMs, answeredMs });
        await sleep(Math.max(0, 50 - (answeredMs - sentMs)));
      }
    };
    const producers = [produce('a', aClient), produce('b', bClient)];
    const finishedA = (from: number, to: number) => aWorker.events.filter((e) => e.event === 'finished' && e.atMs >= from && e.atMs < to).length;

    await sleep(1_000);
    const beforeFrom = Date.now();
    await sleep(OUTAGE_MS);
    const downFrom = Date.now();
    await pgB!.stop();
    pgB = null;
    const stoppedMs = Date.now();
    await sleep(OUTAGE_MS);
    const downTo = Date.now();
    pgB = await startPgB();
    await sleep(1_000);
    producing = false;
    await Promise.all(producers);

    const before = finishedA(beforeFrom, downFrom) / (downFrom - beforeFrom);
    const down = finishedA(downFrom, downTo) / (downTo - downFrom);
    expect(refused.a).toEqual([]);
    expect(down / before, `tenant-a: ${(before * 1000).toFixed(0)} jobs/s before, ${(down * 1000).toFixed(0)}/s with B down`).toBeGreaterThanOrEqual(0.7);
    expect(refused.b.filter((r) => r.atMs >= downFrom).length, 'tenant-b submissions refused once B was down').toBeGreaterThan(0);
    expect(refused.b.filter((r) => !['unavailable', 'timeout', 'internal'].includes(r.why))).toEqual([]);
    // Nothing is acknowledged before it is committed, and B could commit nothing in between.
    expect(bAcked.filter((batch) => batch.sentMs >= stoppedMs && batch.answeredMs < downTo)).toEqual([]);

    const settled = async (sql: typeof sqlA, ids: Set<string>) => {
      const rows = await sql<{ status: string; n: string }>('SELECT status, count(*) AS n FROM jobs WHERE id = ANY($1) GROUP BY status', [[...ids]]);
      return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
    };
    await pollUntil('every acknowledged job of both tenants to succeed', async () => {
      const [a, b] = await Promise.all([settled(sqlA, acked.a), settled(sqlB, acked.b)]);
      return a.succeeded === acked.a.size && b.succeeded === acked.b.size;
    }, 30_000, 250).catch(async (error: Error) => {
      throw new Error(`${error.message}: A ${JSON.stringify(await settled(sqlA, acked.a))} of ${acked.a.size}, B ${JSON.stringify(await settled(sqlB, acked.b))} of ${acked.b.size}`);
    });
    expect(await sqlA(COMMITTED_TWICE_SQL)).toEqual([]);
    expect(await sqlB(COMMITTED_TWICE_SQL)).toEqual([]);
  });

  it('carries a tenant of another cell there through a --cell-proxy node, with no redirect', async () => {
    const warnings: string[] = [];
    const b = await client(proxyNode.url, OTHER_TOKEN, { onWarning: (w) => warnings.push(w) });
    expect(b.node).toBe(nodeB.nodeId);
    const { jobId } = await b.submit({ queue: 'proxied', payload: new Uint8Array([2]) });
    expect(warnings.filter((w) => w.includes('tenant served by cell'))).toEqual([]);
    expect(await sqlB('SELECT tenant FROM jobs WHERE id = $1', [jobId])).toEqual([{ tenant: 'tenant-b' }]);
    expect(await sqlA('SELECT id FROM jobs WHERE id = $1', [jobId])).toEqual([]);
  });

  it("keeps a proxied connection open past the proxying node's ping checks", async () => {
    await sleep(longLived.openedMs + 2 * PING_EVERY_MS + 1_000 - Date.now());
    expect(longLived.closeCode, 'the proxied connection was closed').toBeNull();
    expect(await longLived.client.request({ t: 'cluster', rid: 1 })).toMatchObject({ t: 'cluster_view', node: nodeB.nodeId });
  });
});

interface Refusal {
  atMs: number;
  why: string;
}

/** What the SDK said about a submission it could not get acknowledged: the node's error code,
 * or `timeout` when no answer came (an unknown outcome says which of the two it was). */
function whyRefused(error: Error): string {
  const cause = error instanceof OutcomeUnknownError ? error.cause : error;
  if (cause instanceof KairosError) return cause.code;
  if (cause instanceof RequestTimeoutError) return 'timeout';
  return `${error.name}: ${error.message}`;
}
