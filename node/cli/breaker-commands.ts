// `kairos breakers` and `kairos breaker`: circuit breakers, through the SDK like the other client
// commands. `kairos breakers` is a table (JSON lines with --json), like `kairos cluster`; the
// others print the breaker as one JSON line. Every argument is checked before connecting, so a
// usage error never waits for a node. Durations are integer milliseconds, as everywhere in the
// CLI (--lease-ms, --every).

import { parseArgs } from 'node:util';
import { BREAKER_DEFAULTS, BREAKER_LIMITS } from '../../protocol/breaker-view.ts';
import { breakerSpecProblem, type BreakerSpec } from '../../protocol/breaker-view.ts';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../../protocol/limits.ts';
import { KairosError, type BreakerView, type KairosClient } from '../../protocol/sdk/index.ts';
import { intOption, UsageError } from './args.ts';
import { CONNECTION_HELP, CONNECTION_OPTIONS, one, print, withClient } from './client-commands.ts';

const range = (name: keyof typeof BREAKER_LIMITS) => `${BREAKER_LIMITS[name][0]}..${BREAKER_LIMITS[name][1]}`;

export const BREAKERS_HELP = `kairos breakers [--json] [--limit N] [--after CURSOR]
  The tenant's circuit breakers, one per queue: its state, its live window (failed/attempts;
  counted while closed), the window that opened it (OPENED-ON, while not closed), since when, when it next probes (while open), and whether the settings are the queue's own
  or the node's default. Queues under the node's default breaker appear from when it opens until
  200 s after it closes.
  --json prints one JSON line per breaker instead.
${CONNECTION_HELP}`;

export const BREAKER_HELP = `kairos breaker set QUEUE [options]
  Sets the queue's own breaker settings, replacing any it had; options not given take the
  defaults. While the breaker is open no job of QUEUE is leased: jobs wait, spending no attempt.
  --off              the queue has no breaker, even if the node has a default one
  --failure-rate PCT opens when at least PCT% of the outcomes in the window failed, ${range('failureRatePct')} (default ${BREAKER_DEFAULTS.failureRatePct})
  --min-attempts N   ...and at least N outcomes are in the window, ${range('minAttempts')} (default ${BREAKER_DEFAULTS.minAttempts})
  --window MS        the rolling window, ${range('windowMs')} ms (default ${BREAKER_DEFAULTS.windowMs})
  --cooldown MS      how long it stays open before probing, ${range('cooldownMs')} ms (default ${BREAKER_DEFAULTS.cooldownMs})
  --cooldown-max MS  each reopening doubles the cool-down, up to this, at least --cooldown,
                     ${range('cooldownMaxMs')} ms (default ${BREAKER_DEFAULTS.cooldownMaxMs})
  --probes N         jobs each node may lease while half-open, per round, ${range('probes')} (default ${BREAKER_DEFAULTS.probes})
  --refuse           while open or half-open, refuse submissions of QUEUE (circuit_open)
                     instead of taking them to wait
kairos breaker get QUEUE       (with its live window)
kairos breaker clear QUEUE     (drops the queue's own settings: the node's default applies again)
${CONNECTION_HELP}`;

export async function breakersCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' }, limit: { type: 'string' }, after: { type: 'string' } },
  });
  const limit = intOption(values.limit, '--limit', LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX);
  const { breakers, next } = await withClient(values, async (client) => {
    const page = await client.breakers.list({ limit, ...(values.after !== undefined && { after: values.after }) });
    return { breakers: await Promise.all(page.breakers.map((breaker) => withWindow(client, breaker))), next: page.next };
  });
  if (values.json === true) for (const breaker of breakers) print(breaker);
  else process.stdout.write(formatBreakers(breakers));
  if (next !== null) process.stderr.write(`kairos: more with --after ${next}\n`);
}

/** The breaker with its live window, read with `get`; as listed when that fails (it was
 * cleared meanwhile, say). */
async function withWindow(client: KairosClient, breaker: BreakerView): Promise<BreakerView> {
  try {
    return await client.breakers.get(breaker.queue);
  } catch (error) {
    if (error instanceof KairosError && error.code === 'not_found') return breaker;
    throw error;
  }
}

export function formatBreakers(breakers: readonly BreakerView[]): string {
  const header = ['QUEUE', 'STATE', 'FAILED/ATTEMPTS', 'OPENED-ON', 'SINCE', 'NEXT-PROBE', 'SOURCE'];
  const rows = breakers.map((b) => [
    b.queue,
    b.enabled ? b.state : 'off',
    b.window === null ? '-' : `${b.window.failures}/${b.window.attempts}`,
    // The live window starts again when a breaker opens: what opened it is kept apart.
    b.state === 'closed' ? '-' : `${b.openedFailures}/${b.openedAttempts}`,
    instant(b.since),
    b.nextProbeAt === null ? '-' : instant(b.nextProbeAt),
    b.source,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`;
  return line(header) + rows.map(line).join('');
}

/** An instant for people: UTC, to the second. */
function instant(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export async function breakerCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'set':
      return setCommand(rest);
    case 'get':
      return queueCommand(rest, (client, queue) => client.breakers.get(queue));
    case 'clear':
      return queueCommand(rest, (client, queue) => client.breakers.clear(queue));
    default:
      throw new UsageError("kairos breaker takes 'set', 'get' or 'clear' (kairos breakers lists them)");
  }
}

async function setCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      off: { type: 'boolean' },
      'failure-rate': { type: 'string' },
      'min-attempts': { type: 'string' },
      window: { type: 'string' },
      cooldown: { type: 'string' },
      'cooldown-max': { type: 'string' },
      probes: { type: 'string' },
      refuse: { type: 'boolean' },
    },
  });
  const spec: BreakerSpec = { queue: one(positionals, 'queue') };
  if (values.off === true) spec.enabled = false;
  const setting = (value: string | undefined, option: string, name: keyof typeof BREAKER_LIMITS): number | undefined =>
    value === undefined || value === '' ? undefined : intOption(value, option, BREAKER_DEFAULTS[name], ...BREAKER_LIMITS[name]);
  const settings = {
    failureRatePct: setting(values['failure-rate'], '--failure-rate', 'failureRatePct'),
    minAttempts: setting(values['min-attempts'], '--min-attempts', 'minAttempts'),
    windowMs: setting(values.window, '--window', 'windowMs'),
    cooldownMs: setting(values.cooldown, '--cooldown', 'cooldownMs'),
    cooldownMaxMs: setting(values['cooldown-max'], '--cooldown-max', 'cooldownMaxMs'),
    probes: setting(values.probes, '--probes', 'probes'),
  };
  for (const [name, value] of Object.entries(settings)) if (value !== undefined) spec[name as keyof typeof settings] = value;
  if (values.refuse === true) spec.refuseWhenOpen = true;
  if (breakerSpecProblem(spec) !== null) {
    const cooldownMs = spec.cooldownMs ?? BREAKER_DEFAULTS.cooldownMs;
    const cooldownMaxMs = spec.cooldownMaxMs ?? BREAKER_DEFAULTS.cooldownMaxMs;
    throw new UsageError(`--cooldown-max (${cooldownMaxMs}${spec.cooldownMaxMs === undefined ? ', the default' : ''}) must be at least --cooldown (${cooldownMs})`);
  }
  await withClient(values, async (client) => print(await client.breakers.set(spec.queue, withoutQueue(spec))));
}

function withoutQueue({ queue: _queue, ...options }: BreakerSpec): Omit<BreakerSpec, 'queue'> {
  return options;
}

async function queueCommand(argv: string[], run: (client: KairosClient, queue: string) => Promise<BreakerView>): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  const queue = one(positionals, 'queue');
  await withClient(values, async (client) => print(await run(client, queue)));
}
