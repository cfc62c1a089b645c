// `kairos schedule`: recurring schedules, through the SDK like the other client commands, with
// the same output (JSON lines on stdout). Every argument is checked before connecting, so a
// usage error never waits for a node.

import { parseArgs } from 'node:util';
import { ATTEMPTS_MAX_LIMIT, DEFAULT_RETRY_POLICY, PRIORITY_MAX, PRIORITY_MIN } from '../../protocol/job-rules.ts';
import { EVERY_MS_MIN, MISSED_MAX_LIMIT, MISSED_POLICIES } from '../../protocol/schedule-view.ts';
import { MISSED_MAX_DEFAULT } from '../core/schedule/schedule.ts';
import { DELAY_MS_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../../protocol/limits.ts';
import type { ScheduleSpec, ScheduleView } from '../../protocol/sdk/index.ts';
import { intOption, oneOfOption, UsageError } from './args.ts';
import { bytesText, CONNECTION_HELP, CONNECTION_OPTIONS, one, print, withClient } from './client-commands.ts';

export const SCHEDULE_HELP = `kairos schedule add NAME --queue Q (--cron EXPR [--tz ZONE] | --every MS) [options]
  Creates the schedule, or replaces the one named NAME. Each tick submits one job to Q.
  --queue Q          queue of every tick's job
  --cron EXPR        5 fields (minute first), 6 (second first), or @daily, @hourly, ...
  --tz ZONE          IANA time zone of --cron (default UTC)
  --every MS         a tick at every multiple of MS ms since the Unix epoch (at least ${EVERY_MS_MIN})
  --payload TEXT     payload of every tick's job as UTF-8 text, e.g. JSON (default empty)
  --priority N       higher runs first, ${PRIORITY_MIN}..${PRIORITY_MAX} (default 0)
  --attempts N       attempts before a tick's job is dead (default ${DEFAULT_RETRY_POLICY.attemptsMax})
  --missed POLICY    ticks reached more than a minute late (after a restart, say; those less
                     late always run): skip (none runs), once (the first runs, default) or
                     each (each runs, up to --missed-max)
  --missed-max N     most missed ticks that run with --missed each, 1..${MISSED_MAX_LIMIT} (default ${MISSED_MAX_DEFAULT})
  --paused           create or replace it paused
kairos schedule list [--limit N] [--after CURSOR]
kairos schedule get NAME
kairos schedule pause NAME
kairos schedule resume NAME     (ticks that fell while paused do not run)
kairos schedule rm NAME         (jobs it already made stay)
${CONNECTION_HELP}`;

export async function scheduleCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'add':
      return addCommand(rest);
    case 'list':
      return listCommand(rest);
    case 'get':
      return getCommand(rest);
    case 'pause':
      return pauseCommand(rest, true);
    case 'resume':
      return pauseCommand(rest, false);
    case 'rm':
      return rmCommand(rest);
    default:
      throw new UsageError("kairos schedule takes 'add', 'list', 'get', 'pause', 'resume' or 'rm'");
  }
}

async function addCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      queue: { type: 'string' },
      cron: { type: 'string' },
      tz: { type: 'string' },
      every: { type: 'string' },
      payload: { type: 'string' },
      priority: { type: 'string' },
      attempts: { type: 'string' },
      missed: { type: 'string' },
      'missed-max': { type: 'string' },
      paused: { type: 'boolean' },
    },
  });
  const name = one(positionals, 'schedule name');
  if (!given(values.queue)) throw new UsageError('kairos schedule add needs --queue Q');
  const spec: ScheduleSpec = { name, queue: values.queue, ...timingOf(values), payload: new TextEncoder().encode(values.payload ?? '') };
  if (values.priority !== undefined) spec.priority = intOption(values.priority, '--priority', 0, PRIORITY_MIN, PRIORITY_MAX);
  if (values.attempts !== undefined) {
    spec.retry = { attemptsMax: intOption(values.attempts, '--attempts', DEFAULT_RETRY_POLICY.attemptsMax, 1, ATTEMPTS_MAX_LIMIT) };
  }
  if (values.missed !== undefined) spec.missed = oneOfOption(values.missed, '--missed', MISSED_POLICIES, 'once');
  if (values['missed-max'] !== undefined && spec.missed !== 'each') throw new UsageError('--missed-max goes with --missed each');
  if (values['missed-max'] !== undefined) spec.missedMax = intOption(values['missed-max'], '--missed-max', MISSED_MAX_DEFAULT, 1, MISSED_MAX_LIMIT);
  if (values.paused === true) spec.paused = true;
  await withClient(values, async (client) => print(printableSchedule(await client.schedules.upsert(spec))));
}

/** Exactly one of --cron and --every; an empty value counts as not given, as in intOption. */
function timingOf(values: { cron?: string; tz?: string; every?: string }): Pick<ScheduleSpec, 'cron' | 'timezone' | 'everyMs'> {
  if (given(values.cron) === given(values.every)) throw new UsageError('kairos schedule add takes exactly one of --cron EXPR and --every MS');
  if (given(values.cron)) return given(values.tz) ? { cron: values.cron, timezone: values.tz } : { cron: values.cron };
  if (given(values.tz)) throw new UsageError('--tz goes with --cron, not --every');
  return { everyMs: intOption(values.every, '--every', EVERY_MS_MIN, EVERY_MS_MIN, DELAY_MS_MAX) };
}

async function listCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, limit: { type: 'string' }, after: { type: 'string' } } });
  const limit = intOption(values.limit, '--limit', LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX);
  await withClient(values, async (client) => {
    const page = await client.schedules.list({ limit, ...(values.after !== undefined && { after: values.after }) });
    for (const schedule of page.schedules) print(printableSchedule(schedule));
    if (page.next !== null) process.stderr.write(`kairos: more with --after ${page.next}\n`);
  });
}

async function getCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  const name = one(positionals, 'schedule name');
  await withClient(values, async (client) => print(printableSchedule(await client.schedules.get(name))));
}

async function pauseCommand(argv: string[], paused: boolean): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  const name = one(positionals, 'schedule name');
  await withClient(values, async (client) => print(printableSchedule(await (paused ? client.schedules.pause(name) : client.schedules.resume(name)))));
}

async function rmCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: CONNECTION_OPTIONS });
  const name = one(positionals, 'schedule name');
  await withClient(values, (client) => client.schedules.delete(name));
}

function given(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}

/** A schedule for people: the payload as text when it is UTF-8, else base64. */
function printableSchedule(schedule: ScheduleView): Record<string, unknown> {
  return { ...schedule, payload: bytesText(schedule.payload) };
}
