// A producer process for the chaos harness: submits jobs through the SDK at a steady rate, each
// under an idempotency key of its own, and retries each key itself (the SDK's automatic retry is
// off) until it is acknowledged, so that every `internal` answer is seen and counted. One JSON
// line on stdout per acknowledgement and per refusal:
//   {"t":"ack","key":…,"id":…,"at":ms,"tries":n}
//   {"t":"refused","key":…,"code":"internal"|"unavailable"|…|"timeout"|"closed","at":ms}
// On SIGTERM it stops starting keys, keeps retrying the outstanding ones for --drain-ms, then
// reports each still unresolved key ({"t":"unresolved","key":…}) and {"t":"done"}, and exits 0.
//
//   node --import tsx test/chaos/producer.ts --urls ws://…,ws://… --token T --queue q --rate 20
//        --prefix p0 [--attempts-max 4] [--drain-ms 30000]

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, ConnectionClosedError, KairosError, OutcomeUnknownError, RequestTimeoutError, type KairosClient } from '../../protocol/sdk/index.ts';

const { values } = parseArgs({
  options: {
    urls: { type: 'string' },
    token: { type: 'string' },
    queue: { type: 'string', default: 'chaos' },
    rate: { type: 'string', default: '20' },
    prefix: { type: 'string', default: 'p' },
    'attempts-max': { type: 'string', default: '4' },
    'drain-ms': { type: 'string', default: '30000' },
    'max-outstanding': { type: 'string', default: '2000' },
  },
});

const urls = values.urls!.split(',');
const rate = Number(values.rate);
const attemptsMax = Number(values['attempts-max']);
const maxOutstanding = Number(values['max-outstanding']);
const lines: string[] = [];
function emit(line: Record<string, unknown>): void {
  lines.push(JSON.stringify(line));
  if (lines.length === 1) setImmediate(() => process.stdout.write(`${lines.splice(0).join('\n')}\n`));
}

const connectOptions = { url: urls[0]!, urls: urls.slice(1), token: values.token!, client: 'chaos-producer', onWarning: () => {}, retry: false as const, requestTimeoutMs: 5_000 };
let client: KairosClient = await connect(connectOptions);
let reconnecting: Promise<void> | null = null;
/** A client closed for good (reconnection gave up) is replaced by a new one. */
function replaceClient(): Promise<void> {
  reconnecting ??= (async () => {
    await client.close().catch(() => {});
    for (;;) {
      try {
        client = await connect(connectOptions);
        return;
      } catch {
        await sleep(500);
      }
    }
  })().finally(() => (reconnecting = null));
  return reconnecting;
}

let stopping = false;
let stopAt = Infinity;
const outstanding = new Set<string>();
let started = 0;
let skipped = 0;

async function submitKey(key: string, n: number): Promise<void> {
  outstanding.add(key);
  let tries = 0;
  for (;;) {
    if (Date.now() > stopAt) return;
    tries++;
    try {
      const { jobId } = await client.submit({
        queue: values.queue!,
        payload: new TextEncoder().encode(`${key}`),
        idempotencyKey: key,
        priority: n % 3,
        retry: { attemptsMax, backoffBaseMs: 200, backoffMaxMs: 2_000, jitter: 0.5 },
      });
      outstanding.delete(key);
      emit({ t: 'ack', key, id: jobId, at: Date.now(), tries });
      return;
    } catch (error) {
      let code: string;
      let waitMs = 200;
      if (error instanceof OutcomeUnknownError) {
        const cause = error.cause;
        code = cause instanceof KairosError ? cause.code : cause instanceof RequestTimeoutError ? 'timeout' : cause instanceof ConnectionClosedError ? 'closed' : 'unknown';
      } else if (error instanceof KairosError) {
        code = error.code;
        waitMs = error.retryAfterMs ?? 200;
        if (!error.retryable && code !== 'internal') {
          // Not retryable and not unknown: nothing was applied and nothing will be. Give up.
          outstanding.delete(key);
          emit({ t: 'refused', key, code, at: Date.now(), final: true });
          return;
        }
      } else if (error instanceof RequestTimeoutError) {
        code = 'timeout';
      } else if (error instanceof ConnectionClosedError) {
        code = 'closed';
        await replaceClient();
      } else {
        code = `other:${String(error)}`;
      }
      emit({ t: 'refused', key, code, at: Date.now() });
      await sleep(Math.min(waitMs, 2_000));
    }
  }
}

const t0 = Date.now();
const pending: Array<Promise<void>> = [];
const ticker = setInterval(() => {
  if (stopping) return;
  const due = Math.floor(((Date.now() - t0) / 1000) * rate);
  while (started < due) {
    const n = started++;
    if (outstanding.size >= maxOutstanding) {
      skipped++;
      continue;
    }
    pending.push(submitKey(`${values.prefix}-${n}`, n));
  }
}, 20);

process.once('SIGTERM', () => {
  stopping = true;
  clearInterval(ticker);
  stopAt = Date.now() + Number(values['drain-ms']);
  void (async () => {
    await Promise.all(pending);
    for (const key of outstanding) emit({ t: 'unresolved', key });
    emit({ t: 'done', started, skipped });
    await sleep(50);
    await client.close().catch(() => {});
    process.exit(0);
  })();
});
emit({ t: 'ready' });
