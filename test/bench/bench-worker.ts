// A benchmark worker process: SDK workers with no-op handlers. It counts completions (an
// outcome counts once the node acknowledged it, i.e. committed it) and, for jobs whose payload
// carries a submit timestamp, the time from the submit call to the handler's start. It prints
// one JSON line of totals when asked (a line on stdin) and then exits.

import { parseArgs } from 'node:util';
import { connect } from '../../protocol/sdk/index.ts';

const { values } = parseArgs({
  options: { url: { type: 'string' }, token: { type: 'string' }, queue: { type: 'string' }, concurrency: { type: 'string' } },
});

const client = await connect({ url: values.url!, token: values.token!, client: 'bench-worker', onWarning: () => {} });
const latenciesMs: number[] = [];
let started = 0;
const decoder = new TextDecoder();

client.worker(
  values.queue!,
  (ctx) => {
    started++;
    // Payload "t:<ns>" carries the instant the producer called submit, on CLOCK_MONOTONIC,
    // which every process on the machine shares (performance.timeOrigin differs between
    // processes by tens of milliseconds, so it cannot be used across them).
    if (ctx.payload.length > 2 && ctx.payload[0] === 0x74) {
      latenciesMs.push(Number(process.hrtime.bigint() - BigInt(decoder.decode(ctx.payload.subarray(2)))) / 1e6);
    }
    return undefined;
  },
  { concurrency: Number(values.concurrency ?? '64') },
);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

process.stdin.once('data', () => {
  process.stdout.write(`${JSON.stringify({ started, latenciesMs })}\n`);
  process.exit(0);
});
