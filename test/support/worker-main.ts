// A worker process for integration tests and the benchmark: the SDK's worker in a process of
// its own, with a handler chosen on the command line. It reports what happened as JSON lines on
// stdout, so the parent test can follow it without sharing memory.
//
//   node --import tsx test/support/worker-main.ts --url ws://… --token T --queue q
//        [--concurrency N] [--sleep-ms N]
//        [--behaviour noop|record|fail-twice|fail-fatal|slow|until-cancelled]
// `slow` sleeps --sleep-ms and then completes: stop the process (SIGSTOP) meanwhile and it is
// a hung worker that wakes up later with a stale lease.

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, NonRetryableError, type JobContext } from '../../protocol/sdk/index.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    queue: { type: 'string' },
    concurrency: { type: 'string', default: '1' },
    behaviour: { type: 'string', default: 'noop' },
    'sleep-ms': { type: 'string', default: '0' },
  },
});

export type WorkerEvent =
  | { event: 'ready' }
  | { event: 'started'; jobId: string; attempt: number; atMs: number; payload: string }
  | { event: 'finished'; jobId: string; attempt: number; atMs: number }
  | { event: 'aborted'; jobId: string; attempt: number; reason: string }
  | { event: 'error'; jobId: string | null; message: string };

const out: string[] = [];
function emit(event: WorkerEvent): void {
  out.push(JSON.stringify(event));
  // Lines go out together once per tick: the benchmark's workers report tens of thousands.
  if (out.length === 1) setImmediate(() => process.stdout.write(`${out.splice(0).join('\n')}\n`));
}

const behaviour = values.behaviour!;
const client = await connect({ url: values.url!, token: values.token!, client: 'test-worker', onWarning: () => {} });

async function handle(ctx: JobContext): Promise<Uint8Array | undefined> {
  const base = { jobId: ctx.jobId, attempt: ctx.attempt };
  if (behaviour !== 'noop') emit({ event: 'started', ...base, atMs: Date.now(), payload: Buffer.from(ctx.payload).toString('utf8') });
  ctx.signal.addEventListener('abort', () => emit({ event: 'aborted', ...base, reason: String(ctx.signal.reason) }));
  switch (behaviour) {
    case 'fail-twice':
      if (ctx.attempt <= 2) throw new Error(`failing attempt ${ctx.attempt} on purpose`);
      break;
    case 'fail-fatal':
      throw new NonRetryableError('this job can never succeed');
    case 'slow':
      await sleep(Number(values['sleep-ms']));
      break;
    case 'until-cancelled':
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      return undefined;
  }
  if (behaviour !== 'noop') emit({ event: 'finished', ...base, atMs: Date.now() });
  return undefined;
}

client.worker(values.queue!, handle, {
  concurrency: Number(values.concurrency),
  onError: (error, jobId) => emit({ event: 'error', jobId, message: error.message }),
});
emit({ event: 'ready' });

process.once('SIGTERM', () => void client.close().then(() => process.exit(0)));
await sleep(2 ** 31 - 1);
