// `kairos demo` (what `npm start` runs): a local cluster of three `kairos start` processes on
// one embedded PostgreSQL (DATABASE_URL when set), a producer and workers on every node through
// the SDK, and a live line of progress until Ctrl-C, then a clean shutdown: producer, workers,
// then the nodes (each hands its shards off as it leaves), then the database. Some demo jobs
// fail on purpose, so retries and the dead-letter queue show up too.
//
// With --cells N it runs N cells instead: N clusters, each on an embedded PostgreSQL of its own
// and with a tenant of its own, and a cell map that tells every node which cell serves which
// tenant. Every client connects to the first cell's nodes, so the other cells' clients are
// redirected to their own cell, as any client of a multi-cell deployment would be.

import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, NonRetryableError, type JobContext, type KairosClient, type Worker } from '../../protocol/sdk/index.ts';
import { ClusterKeyError, writeClusterKeyFile } from '../adapters/libp2p/cluster-key.ts';
import { DEV_TENANT, DEV_TOKEN } from '../adapters/tokens.ts';
import { chooseDatabase, type DatabaseChoice } from '../store/database-url.ts';
import { stopSignals, type StopSignals } from './stop-signals.ts';
import { intOption } from './args.ts';
import { startChildNode, type ChildNode } from './child-node.ts';

export const DEMO_HELP = `kairos demo [options]   (what npm start runs)
  --cells N       cells: clusters with an embedded Postgres and a tenant each, and a cell map
                  (default 1; with more, DATABASE_URL is not used)
  --nodes N       node processes in each cell (default 3 with one cell, else 1)
  --rate N        jobs submitted per second in each cell (default 200)
  --port PORT     WebSocket port of the first node; the others take the next ones (default 7070)
  --data-dir DIR  nodes' data, the cluster keys, the embedded Postgres servers and the cell map
                  (default ./.kairos)
  --seconds N     stop by itself after N seconds (default: run until Ctrl-C)`;

interface Counters {
  submitted: number;
  running: number;
  succeeded: number;
  retried: number;
  dead: number;
}

/** What a demo job does, decided by the producer and carried in the payload. */
type Fate = 'ok' | 'flaky' | 'doomed' | 'bad-input';

/** One cluster of the demo, with the tenant it serves. */
interface Cell {
  /** Null with one cell: the nodes then run without a cell map. */
  name: string | null;
  tenant: string;
  token: string;
  /** Its nodes' data, its cluster key and its Postgres. */
  dir: string;
  ports: number[];
  nodes: ChildNode[];
}

export async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      cells: { type: 'string' },
      nodes: { type: 'string' },
      rate: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      seconds: { type: 'string' },
    },
  });
  const cellCount = intOption(values.cells, '--cells', 1, 1, 8);
  const nodesPerCell = intOption(values.nodes, '--nodes', cellCount === 1 ? 3 : 1, 1, 16);
  const rate = intOption(values.rate, '--rate', 200, 1, 100_000);
  const seconds = values.seconds === undefined ? null : intOption(values.seconds, '--seconds', 0, 1);
  const basePort = intOption(values.port ?? process.env.KAIROS_PORT, '--port', 7070, 1, 65535 - cellCount * nodesPerCell);
  const basePgPort = intOption(process.env.KAIROS_PG_PORT, 'KAIROS_PG_PORT', 54329, 1, 65536 - cellCount);
  const dataDir = resolve(values['data-dir'] ?? '.kairos');
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const interrupt = stopSignals((line) => say(`\nkairos demo: ${line}`));

  // The first cell keeps the development token, so that the CLI's defaults reach it.
  const cells: Cell[] = Array.from({ length: cellCount }, (_, c) => ({
    name: cellCount === 1 ? null : `cell-${c + 1}`,
    tenant: c === 0 ? DEV_TENANT : `${DEV_TENANT}-${c + 1}`,
    token: c === 0 ? DEV_TOKEN : `${DEV_TOKEN}-${c + 1}`,
    dir: cellCount === 1 ? dataDir : join(dataDir, `cell-${c + 1}`),
    ports: Array.from({ length: nodesPerCell }, (_, i) => basePort + c * nodesPerCell + i),
    nodes: [],
  }));
  const mapFile = join(dataDir, 'cells.json');
  // Every node of every cell must know every token: a node learns a connection's cell from its
  // tenant. With one cell the nodes run with their default, the development token.
  const tokens = cellCount === 1 ? {} : { KAIROS_TOKENS: cells.map((cell) => `${cell.token}=${cell.tenant}`).join(',') };

  say(cellCount === 1 ? 'kairos demo: starting the database (the first start takes a few seconds)…' : `kairos demo: starting ${cellCount} databases, one per cell (the first start takes a few seconds)…`);
  if (cellCount > 1 && process.env.DATABASE_URL) say('kairos demo: DATABASE_URL is not used: each cell runs an embedded PostgreSQL of its own');
  const databases: DatabaseChoice[] = [];
  try {
    // Settled, not all: when one fails, the others must still be stopped. Cells never share a
    // server, so with several DATABASE_URL is left out of the choice.
    const started = await Promise.allSettled(
      cells.map((cell, c) =>
        chooseDatabase({ dataDir: join(cell.dir, 'pg'), port: basePgPort + c, ...(cellCount > 1 && { env: {} }) }).then((database) => {
          databases[c] = database;
          return database;
        }),
      ),
    );
    throwFirstFailure(started);
    if (interrupt.requested) return;
    if (cellCount > 1) await writeFile(mapFile, JSON.stringify(cellMap(cells), null, 2));
    const cellsStarted = await Promise.allSettled(
      cells.map(async (cell, c) => {
        const keyFile = join(cell.dir, 'cluster.key');
        await writeClusterKeyFile(keyFile).catch((error: unknown) => {
          if (!(error instanceof ClusterKeyError && error.message.includes('exists'))) throw error;
        });
        const cellArgs = cell.name === null ? [] : ['--cell', cell.name, '--cell-map', mapFile];
        const startNode = (i: number, seeds: string[]) =>
          startChildNode({
            args: ['--data-dir', join(cell.dir, `node-${i + 1}`), '--port', String(cell.ports[i]), '--cluster-key', keyFile, '--log-level', 'error', ...cellArgs, ...seeds.flatMap((a) => ['--join', a])],
            env: { DATABASE_URL: databases[c]!.connectionString, ...tokens },
            ownProcessGroup: true,
          });
        say(`kairos demo: starting ${nodesPerCell} node${nodesPerCell === 1 ? '' : 's'}${cell.name === null ? '' : ` of ${cell.name}`}…`);
        cell.nodes.push(await startNode(0, []));
        const others = await Promise.allSettled(Array.from({ length: nodesPerCell - 1 }, (_, i) => startNode(i + 1, [cell.nodes[0]!.peerAddress])));
        for (const result of others) if (result.status === 'fulfilled') cell.nodes.push(result.value);
        throwFirstFailure(others);
      }),
    );
    throwFirstFailure(cellsStarted);
    if (interrupt.requested) return;
    for (const cell of cells) {
      for (const node of cell.nodes) say(`kairos demo: node ${node.nodeId} at ${node.url}${cell.name === null ? '' : ` in ${cell.name} (tenant ${cell.tenant}, token ${cell.token})`}`);
    }
    if (cellCount > 1) say(`kairos demo: the cell map is ${mapFile}; every client connects to ${cells[0]!.nodes[0]!.url}, and those of other cells' tenants are redirected`);
    // The CLI's default URL is the default port's: name the node when the demo is elsewhere.
    const url = cells[0]!.nodes[0]!.url;
    const urlArg = url === 'ws://127.0.0.1:7070' ? '' : ` --url ${url}`;
    say(`kairos demo: in another terminal, try: npx kairos cluster${urlArg}   or   npx kairos list --limit 5${urlArg}`);
    if (cellCount > 1) say(`kairos demo: or, redirected to ${cells[1]!.name}: KAIROS_TOKEN=${cells[1]!.token} npx kairos list --limit 5${urlArg}`);
    const first = cells[0]!;
    say(
      `kairos demo: or add a node: DATABASE_URL='${databases[0]!.connectionString}'${cellCount === 1 ? '' : ` KAIROS_TOKENS='${tokens.KAIROS_TOKENS}'`} npx kairos start ` +
        `--data-dir ${join(first.dir, `node-${nodesPerCell + 1}`)} --port ${basePort + cellCount * nodesPerCell} --cluster-key ${join(first.dir, 'cluster.key')} ` +
        `${first.name === null ? '' : `--cell ${first.name} --cell-map ${mapFile} `}--join ${first.nodes[0]!.peerAddress}`,
    );
    await run(cells, rate, seconds, say, interrupt);
  } finally {
    say('kairos demo: stopping the nodes (each hands its shards off as it leaves)…');
    await Promise.all(cells.flatMap((cell) => cell.nodes.map((n) => n.stop())));
    await Promise.all(databases.map((database) => database.stop()));
  }
}

/** The map every node reads (cell-map.ts): each cell's nodes, and each cell's tenant. */
function cellMap(cells: Cell[]): object {
  return {
    version: 1,
    default: cells[0]!.name,
    cells: Object.fromEntries(cells.map((cell) => [cell.name, { urls: cell.ports.map((port) => `ws://127.0.0.1:${port}`) }])),
    tenants: Object.fromEntries(cells.map((cell) => [cell.tenant, cell.name])),
  };
}

function throwFirstFailure(results: PromiseSettledResult<unknown>[]): void {
  const failed = results.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** A cell's clients, and what its workers counted. */
interface CellRun {
  cell: Cell;
  counters: Counters;
  producer: KairosClient;
  workerClients: KairosClient[];
  workers: Worker[];
  lastSucceeded: number;
  shardLine: string;
}

async function run(cells: Cell[], rate: number, seconds: number | null, say: (line: string) => void, interrupt: StopSignals): Promise<void> {
  // Every client dials the first cell's nodes; those of another cell's tenant are redirected.
  const urls = cells[0]!.nodes.map((n) => n.url);
  const runs: CellRun[] = await Promise.all(
    cells.map(async (cell) => {
      const counters: Counters = { submitted: 0, running: 0, succeeded: 0, retried: 0, dead: 0 };
      const open = (i: number) => connect({ url: urls[i % urls.length]!, urls, token: cell.token, client: 'kairos-demo', onWarning: () => {} });
      const producer = await open(0);
      // As many worker clients as the cell has nodes: each takes jobs from shards owned anywhere in its cluster.
      const workerClients = await Promise.all(cell.nodes.map((_, i) => open(i)));
      const workers = workerClients.flatMap((client) =>
        ['emails', 'thumbnails'].map((queue) => client.worker(queue, (ctx) => handle(ctx, counters), { concurrency: 8 })),
      );
      return { cell, counters, producer, workerClients, workers, lastSucceeded: 0, shardLine: '' };
    }),
  );

  let timeUp = false;
  const stopping = () => timeUp || interrupt.requested;
  const producing = runs.map((r) => produce(r.producer, rate, r.counters, stopping));
  const startedMs = Date.now();
  while (!stopping()) {
    await Promise.race([sleep(1_000), interrupt.asked]);
    if (seconds !== null && Date.now() - startedMs >= seconds * 1000) timeUp = true;
    const lines = await Promise.all(runs.map((r) => progressOf(r)));
    process.stderr.write(`\r${lines.join('  |  ')}   `);
  }
  process.stderr.write('\n');
  say('kairos demo: stopping: producers, then workers (they finish what they hold)…');
  await Promise.all(producing);
  await Promise.all(runs.flatMap((r) => r.workers.map((w) => w.close())));
  await Promise.all(runs.flatMap((r) => [r.producer, ...r.workerClients].map((c) => c.close())));
  const tallies = runs.map((r) => `${r.cell.name === null ? '' : `${r.cell.name} (tenant ${r.cell.tenant}) `}${r.counters.succeeded} succeeded, ${r.counters.dead} dead`);
  say(`kairos demo: ${tallies.join('; ')} (see them: ${cells.length === 1 ? '' : "KAIROS_TOKEN=<the tenant's token> "}npx kairos dlq list while a node runs).`);
}

/** A cell's part of the progress line, once a second. */
async function progressOf(r: CellRun): Promise<string> {
  const { counters } = r;
  const perSecond = counters.succeeded - r.lastSucceeded;
  r.lastSucceeded = counters.succeeded;
  r.shardLine = await r.producer.cluster().then(
    (info) => `shards ${info.members.filter((m) => m.inRing).map((m) => m.shards).join('/')}`,
    () => r.shardLine,
  );
  // A cell's part leaves out running and retried, so that two cells still fit a line.
  if (r.cell.name !== null) return `${r.cell.name}: submitted ${counters.submitted}  succeeded ${counters.succeeded}  dead ${counters.dead}  rate ${perSecond}/s  ${r.shardLine}`;
  return (
    `submitted ${counters.submitted}  running ${counters.running}  succeeded ${counters.succeeded}  ` +
    `retried ${counters.retried}  dead ${counters.dead}  rate ${perSecond}/s  ${r.shardLine}`
  );
}

async function produce(client: KairosClient, rate: number, counters: Counters, stopped: () => boolean): Promise<void> {
  const tickMs = 100;
  const encoder = new TextEncoder();
  let n = 0;
  while (!stopped()) {
    const due = Math.max(1, Math.round((rate * tickMs) / 1000));
    const specs = Array.from({ length: due }, () => {
      n++;
      const fate: Fate = n % 97 === 0 ? 'doomed' : n % 53 === 0 ? 'bad-input' : n % 10 === 0 ? 'flaky' : 'ok';
      return {
        queue: n % 3 === 0 ? 'thumbnails' : 'emails',
        payload: encoder.encode(JSON.stringify({ n, fate })),
        priority: n % 20 === 0 ? 10 : 0,
        retry: { attemptsMax: 3, backoffBaseMs: 200 },
      };
    });
    const results = await client.submitMany(specs);
    counters.submitted += results.filter((r) => !(r instanceof Error)).length;
    await sleep(tickMs);
  }
}

async function handle(ctx: JobContext, counters: Counters): Promise<Uint8Array | undefined> {
  counters.running++;
  try {
    const { fate } = JSON.parse(new TextDecoder().decode(ctx.payload)) as { fate: Fate };
    await sleep(5 + Math.floor(Math.random() * 45), undefined, { signal: ctx.signal });
    if (fate === 'bad-input') {
      counters.dead++;
      throw new NonRetryableError('demo: this payload can never work');
    }
    if (fate === 'doomed' || (fate === 'flaky' && ctx.attempt === 1)) {
      if (ctx.attempt >= ctx.attemptsMax) counters.dead++;
      else counters.retried++;
      throw new Error(`demo: ${fate} job failed on attempt ${ctx.attempt}`);
    }
    counters.succeeded++;
    return undefined;
  } finally {
    counters.running--;
  }
}
