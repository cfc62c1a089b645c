// The CLI's client commands: submit, get, list, cancel and the dead-letter queue, through the
// SDK like any other client. Output is JSON lines on stdout, so it pipes into jq; progress of
// long operations goes to stderr.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, type JobView, type KairosClient, type SubmitSpec } from '../../protocol/sdk/index.ts';
import { DEV_TOKEN } from '../adapters/tokens.ts';
import { intOption, UsageError } from './args.ts';

export const CONNECTION_HELP = `  --url URL          node to talk to (env KAIROS_URL, default ws://127.0.0.1:7070)
  --token TOKEN      bearer token (env KAIROS_TOKEN, default the development token)`;

export const SUBMIT_HELP = `kairos submit QUEUE [options]
  --payload TEXT     payload as UTF-8 text (default empty)
  --payload-file F   payload from a file (bytes as they are)
  --priority N       higher runs first, -1000..1000 (default 0)
  --delay-ms N       run no earlier than N ms from now
  --key KEY          idempotency key: submitting it again returns the same job
  --attempts N       attempts before the job is dead (default 5)
  --backoff-ms N     first retry delay, doubling each time (default 1000)
  --count N          submit N jobs (the key, if given, gets -1, -2, ... appended)
${CONNECTION_HELP}`;
export const GET_HELP = `kairos get JOB_ID\n${CONNECTION_HELP}`;
export const LIST_HELP = `kairos list [--state pending|running|succeeded|dead|cancelled] [--queue Q] [--limit N] [--after CURSOR]\n${CONNECTION_HELP}`;
export const CANCEL_HELP = `kairos cancel JOB_ID\n${CONNECTION_HELP}`;
export const DLQ_HELP = `kairos dlq list [--queue Q] [--limit N] [--after CURSOR]
kairos dlq requeue JOB_ID [--attempts N]   (N further attempts, default 1)
${CONNECTION_HELP}`;

export const CONNECTION_OPTIONS = { url: { type: 'string' }, token: { type: 'string' } } as const;

export async function withClient<T>(values: { url?: string; token?: string }, run: (client: KairosClient) => Promise<T>): Promise<T> {
  const client = await connect({
    url: values.url ?? process.env.KAIROS_URL ?? 'ws://127.0.0.1:7070',
    token: values.token ?? process.env.KAIROS_TOKEN ?? DEV_TOKEN,
    client: 'kairos-cli',
    reconnect: false,
    onWarning: () => {},
  });
  try {
    return await run(client);
  } finally {
    await client.close();
  }
}

/** A job for people: the payload and result as text when they are UTF-8, else base64. */
export function printable(job: JobView): Record<string, unknown> {
  return { ...job, payload: bytesText(job.payload), result: job.result === null ? null : bytesText(job.result) };
}

/** Bytes for people: the text when they are UTF-8, else base64. */
export function bytesText(bytes: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return text.includes('\uFFFD') ? `base64:${Buffer.from(bytes).toString('base64')}` : text;
}

export function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}, got ${positionals.length}`);
  return positionals[0]!;
}

export async function submitCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      payload: { type: 'string' },
      'payload-file': { type: 'string' },
      priority: { type: 'string' },
      'delay-ms': { type: 'string' },
      key: { type: 'string' },
      attempts: { type: 'string' },
      'backoff-ms': { type: 'string' },
      count: { type: 'string' },
    },
  });
  const queue = one(positionals, 'queue');
  const payload = values['payload-file'] !== undefined ? new Uint8Array(readFileSync(values['payload-file'])) : new TextEncoder().encode(values.payload ?? '');
  const count = intOption(values.count, '--count', 1, 1, 10_000_000);
  const base: SubmitSpec = { queue, payload };
  if (values.priority !== undefined) base.priority = intOption(values.priority, '--priority', 0, -1000, 1000);
  if (values['delay-ms'] !== undefined) base.delayMs = intOption(values['delay-ms'], '--delay-ms', 0);
  const attempts = values.attempts === undefined ? undefined : intOption(values.attempts, '--attempts', 5, 1, 1000);
  const backoff = values['backoff-ms'] === undefined ? undefined : intOption(values['backoff-ms'], '--backoff-ms', 1000, 0, 86_400_000);
  if (attempts !== undefined || backoff !== undefined) {
    base.retry = { ...(attempts !== undefined && { attemptsMax: attempts }), ...(backoff !== undefined && { backoffBaseMs: backoff }) };
  }
  await withClient(values, async (client) => {
    if (count === 1) {
      print(await client.submit(values.key === undefined ? base : { ...base, idempotencyKey: values.key }));
      return;
    }
    const chunk = 10_000;
    let failed = 0;
    for (let done = 0; done < count; done += chunk) {
      const specs = Array.from({ length: Math.min(chunk, count - done) }, (_, i) =>
        values.key === undefined ? base : { ...base, idempotencyKey: `${values.key}-${done + i + 1}` },
      );
      const results = await client.submitMany(specs);
      for (const result of results) {
        if (result instanceof Error) failed++;
        else print(result);
      }
      process.stderr.write(`\rkairos: submitted ${Math.min(done + chunk, count)} of ${count}`);
    }
    process.stderr.write('\n');
    if (failed > 0) throw new Error(`${failed} of ${count} submissions were refused`);
  });
}

export async function getCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  await withClient(values, async (client) => print(printable(await client.get(one(positionals, 'job id')))));
}

export async function cancelCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  await withClient(values, async (client) => print(printable(await client.cancel(one(positionals, 'job id')))));
}

const PAGE_OPTIONS = { ...CONNECTION_OPTIONS, queue: { type: 'string' }, limit: { type: 'string' }, after: { type: 'string' } } as const;

export async function listCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ...PAGE_OPTIONS, state: { type: 'string' } } });
  await withClient(values, async (client) => {
    const page = await client.list({
      ...(values.state !== undefined && { state: values.state as JobView['state'] }),
      ...(values.queue !== undefined && { queue: values.queue }),
      ...(values.after !== undefined && { after: values.after }),
      limit: intOption(values.limit, '--limit', 100, 1, 1000),
    });
    for (const job of page.jobs) print(printable(job));
    if (page.next !== null) process.stderr.write(`kairos: more with --after ${page.next}\n`);
  });
}

export async function dlqCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'list') {
    const { values } = parseArgs({ args: rest, options: PAGE_OPTIONS });
    await withClient(values, async (client) => {
      const page = await client.dlq.list({
        ...(values.queue !== undefined && { queue: values.queue }),
        ...(values.after !== undefined && { after: values.after }),
        limit: intOption(values.limit, '--limit', 100, 1, 1000),
      });
      for (const job of page.jobs) print(printable(job));
      if (page.next !== null) process.stderr.write(`kairos: more with --after ${page.next}\n`);
    });
    return;
  }
  if (sub === 'requeue') {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { ...CONNECTION_OPTIONS, attempts: { type: 'string' } } });
    const attempts = values.attempts === undefined ? undefined : intOption(values.attempts, '--attempts', 1, 1, 1000);
    await withClient(values, async (client) => print(printable(await client.dlq.requeue(one(positionals, 'job id'), attempts === undefined ? {} : { attempts }))));
    return;
  }
  throw new UsageError("kairos dlq takes 'list' or 'requeue'");
}
