// `kairos demo` (what `npm start` runs): a local cluster of three `kairos start` processes on
// one embedded PostgreSQL (DATABASE_URL when set), a producer and workers on every node through
// the SDK, and a live line of progress until Ctrl-C, then a clean shutdown: producer, workers,
// then the nodes (each hands its shards off as it leaves), then the database. Some demo jobs
// fail on purpose, so retries and the dead-letter queue show up too.

import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, NonRetryableError, type JobContext, type KairosClient, type Worker } from '../../protocol/sdk/index.ts';
import { ClusterKeyError, writeClusterKeyFile } from '../adapters/libp2p/cluster-key.ts';
import { DEV_TOKEN } from '../adapters/tokens.ts';
import { chooseDatabase } from '../store/database-url.ts';
import { intOption } from './args.ts';
import { startChildNode, type ChildNode } from './child-node.ts';

export const DEMO_HELP = `kairos demo [options]   (what npm start runs)
  --nodes N       node processes in the cluster (default 3)
  --rate N        jobs submitted per second (default 200)
  --port PORT     WebSocket port of the first node; the others take the next ones (default 7070)
  --data-dir DIR  nodes' data, the cluster key and the embedded Postgres (default ./.kairos)
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

export async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { nodes: { type: 'string' }, rate: { type: 'string' }, port: { type: 'string' }, 'data-dir': { type: 'string' }, seconds: { type: 'string' } },
  });
  const nodeCount = intOption(values.nodes, '--nodes', 3, 1, 16);
  const rate = intOption(values.rate, '--rate', 200, 1, 100_000);
  const seconds = values.seconds === undefined ? null : intOption(values.seconds, '--seconds', 0, 1);
  const basePort = intOption(values.port ?? process.env.KAIROS_PORT, '--port', 7070, 1, 65535 - nodeCount);
  const dataDir = resolve(values['data-dir'] ?? '.kairos');
  const say = (line: string) => process.stderr.write(`${line}\n`);

  say('kairos demo: starting the database (the first start takes a few seconds)…');
  const database = await chooseDatabase({ dataDir: join(dataDir, 'pg'), port: intOption(process.env.KAIROS_PG_PORT, 'KAIROS_PG_PORT', 54329, 1, 65535) });
  const nodes: ChildNode[] = [];
  try {
    const keyFile = join(dataDir, 'cluster.key');
    await writeClusterKeyFile(keyFile).catch((error: unknown) => {
      if (!(error instanceof ClusterKeyError && error.message.includes('exists'))) throw error;
    });
    const startNode = (i: number, seeds: string[]) =>
      startChildNode({
        args: ['--data-dir', join(dataDir, `node-${i + 1}`), '--port', String(basePort + i), '--cluster-key', keyFile, '--log-level', 'error', ...seeds.flatMap((a) => ['--join', a])],
        env: { DATABASE_URL: database.connectionString },
        ownProcessGroup: true,
      });
    say(`kairos demo: starting ${nodeCount} nodes…`);
    nodes.push(await startNode(0, []));
    // Settled, not all: when one fails, the others must still be stopped.
    const others = await Promise.allSettled(Array.from({ length: nodeCount - 1 }, (_, i) => startNode(i + 1, [nodes[0]!.peerAddress])));
    for (const result of others) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = others.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    for (const node of nodes) say(`kairos demo: node ${node.nodeId} at ${node.url}`);
    say('kairos demo: in another terminal, try: npx kairos cluster   or   npx kairos list --limit 5');
    say(`kairos demo: or add a node: DATABASE_URL='${database.connectionString}' npx kairos start --data-dir ${join(dataDir, `node-${nodeCount + 1}`)} --port ${basePort + nodeCount} --cluster-key ${keyFile} --join ${nodes[0]!.peerAddress}`);
    await run(nodes, rate, seconds, say);
  } finally {
    say('kairos demo: stopping the nodes (each hands its shards off as it leaves)…');
    await Promise.all(nodes.map((n) => n.stop()));
    await database.stop();
  }
}

async function run(nodes: ChildNode[], rate: number, seconds: number | null, say: (line: string) => void): Promise<void> {
  const counters: Counters = { submitted: 0, running: 0, succeeded: 0, retried: 0, dead: 0 };
  const urls = nodes.map((n) => n.url);
  const open = (i: number) => connect({ url: urls[i]!, urls, token: DEV_TOKEN, client: 'kairos-demo', onWarning: () => {} });
  const producer = await open(0);
  // A worker client on every node: each takes jobs from shards owned anywhere in the cluster.
  const workerClients = await Promise.all(nodes.map((_, i) => open(i)));
  const workers: Worker[] = workerClients.flatMap((client) =>
    ['emails', 'thumbnails'].map((queue) => client.worker(queue, (ctx) => handle(ctx, counters), { concurrency: 8 })),
  );

  let stopping = false;
  const stop = () => (stopping = true);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const producing = produce(producer, rate, counters, () => stopping);
  const startedMs = Date.now();
  let lastSucceeded = 0;
  let shardLine = '';
  while (!stopping) {
    await sleep(1_000);
    if (seconds !== null && Date.now() - startedMs >= seconds * 1000) stopping = true;
    const perSecond = counters.succeeded - lastSucceeded;
    lastSucceeded = counters.succeeded;
    shardLine = await producer.cluster().then(
      (info) => `shards ${info.members.filter((m) => m.inRing).map((m) => m.shards).join('/')}`,
      () => shardLine,
    );
    process.stderr.write(
      `\rsubmitted ${counters.submitted}  running ${counters.running}  succeeded ${counters.succeeded}  ` +
        `retried ${counters.retried}  dead ${counters.dead}  rate ${perSecond}/s  ${shardLine}   `,
    );
  }
  process.stderr.write('\n');
  say('kairos demo: stopping: producer, then workers (they finish what they hold)…');
  await producing;
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all([producer, ...workerClients].map((c) => c.close()));
  say(`kairos demo: ${counters.succeeded} succeeded, ${counters.dead} dead (see them: npx kairos dlq list while a node runs).`);
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
