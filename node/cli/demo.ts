// `kairos demo` (what `npm start` runs): a node on the embedded PostgreSQL, a producer and two
// workers through the SDK, and a live line of progress until Ctrl-C, then a clean shutdown.
// Some demo jobs fail on purpose, so retries and the dead-letter queue show up too.

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, NonRetryableError, type JobContext, type KairosClient, type Worker } from '../../protocol/sdk/index.ts';
import { startNodeProcess } from '../adapters/node-process.ts';
import { DEV_TOKEN, loadTokens } from '../adapters/tokens.ts';
import { intOption } from './args.ts';

export const DEMO_HELP = `kairos demo [options]   (what npm start runs)
  --rate N        jobs submitted per second (default 200)
  --port PORT     WebSocket port (default 7070)
  --data-dir DIR  node data and embedded Postgres (default ./.kairos)
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
    options: { rate: { type: 'string' }, port: { type: 'string' }, 'data-dir': { type: 'string' }, seconds: { type: 'string' } },
  });
  const rate = intOption(values.rate, '--rate', 200, 1, 100_000);
  const seconds = values.seconds === undefined ? null : intOption(values.seconds, '--seconds', 0, 1);
  const say = (line: string) => process.stderr.write(`${line}\n`);

  say('kairos demo: starting a node on the embedded PostgreSQL (first start takes a few seconds)…');
  const node = await startNodeProcess({
    dataDir: values['data-dir'] ?? '.kairos',
    host: '127.0.0.1',
    port: intOption(values.port ?? process.env.KAIROS_PORT, '--port', 7070, 0, 65535),
    pgPort: intOption(process.env.KAIROS_PG_PORT, 'KAIROS_PG_PORT', 54329, 1, 65535),
    tokens: loadTokens({}, undefined),
    logLevel: 'error',
    onProgress: (step) => say(`kairos demo: ${step}…`),
  });
  await node.ready();
  say(`kairos demo: node ${node.nodeId} ready at ${node.url}; try in another terminal: npx kairos list --limit 5`);

  const counters: Counters = { submitted: 0, running: 0, succeeded: 0, retried: 0, dead: 0 };
  const open = () => connect({ url: node.url, token: DEV_TOKEN, client: 'kairos-demo', onWarning: () => {} });
  const producer = await open();
  const workerClients = [await open(), await open()];
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
  while (!stopping) {
    await sleep(1_000);
    if (seconds !== null && Date.now() - startedMs >= seconds * 1000) stopping = true;
    const perSecond = counters.succeeded - lastSucceeded;
    lastSucceeded = counters.succeeded;
    process.stderr.write(
      `\rsubmitted ${counters.submitted}  running ${counters.running}  succeeded ${counters.succeeded}  ` +
        `retried ${counters.retried}  dead ${counters.dead}  rate ${perSecond}/s   `,
    );
  }
  process.stderr.write('\n');
  say('kairos demo: stopping: producer, then workers (they finish what they hold), then the node…');
  await producing;
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all([producer, ...workerClients].map((c) => c.close()));
  await node.stop();
  say(`kairos demo: stopped. ${counters.succeeded} succeeded, ${counters.dead} dead (see: npx kairos dlq list after npx kairos start).`);
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
