// `kairos breakers` and `kairos breaker`: usage errors come before any connection (a listener
// counts them); `set` sends the settings it was given and prints the breaker; `breakers` lists
// and reads each breaker's live window into a table. The commands run in this process (their
// output captured); a few runs through node/cli/main.ts (with tsx, so no build is needed) check
// the wiring, the exit status and the help.

import { execFile } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BREAKER_DEFAULTS } from '../../protocol/breaker-view.ts';
import { breakerCommand, breakersCommand } from '../../node/cli/breaker-commands.ts';
import { breakerConfigOf, type BreakerSpec, type BreakerView } from '../../protocol/breaker-view.ts';
import { FakeNode } from '../support/sdk-fake-node.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const T0 = Date.UTC(2026, 0, 1);

/** The command line through main.ts, compiled on the fly by tsx. */
function kairos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'node/cli/main.ts'), ...args], { cwd: ROOT }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}

/** Runs a command in this process, with what it writes to stdout and stderr. */
async function run(command: (argv: string[]) => Promise<void>, argv: string[]): Promise<{ stdout: string; stderr: string; error: Error | null }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  try {
    await command(argv);
    return { stdout, stderr, error: null };
  } catch (error) {
    return { stdout, stderr, error: error as Error };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

function viewOf(spec: BreakerSpec, more: Partial<BreakerView> = {}): BreakerView {
  const config = breakerConfigOf(spec);
  return {
    queue: spec.queue,
    source: 'queue',
    ...config,
    state: 'closed',
    since: T0,
    nextProbeAt: null,
    currentCooldownMs: config.cooldownMs,
    openedAttempts: 0,
    openedFailures: 0,
    window: null,
    updatedAt: T0,
    ...more,
  };
}

/** Counts connections and closes each at once, so a command that does connect fails fast. */
let listener: Server;
let connections = 0;
let deadUrl: string;

beforeAll(async () => {
  listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  deadUrl = `ws://127.0.0.1:${(listener.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => listener.close(() => resolve())));

describe('kairos breaker usage errors', () => {
  const cases: Array<[string, string[], string]> = [
    ['no queue', ['set'], 'expected one queue, got 0'],
    ['two queues', ['get', 'a', 'b'], 'expected one queue, got 2'],
    ['a failure rate over 100', ['set', 'q', '--failure-rate', '101'], "--failure-rate must be an integer in [1, 100], got '101'"],
    ['a window under a second', ['set', 'q', '--window', '500'], "--window must be an integer in [1000, 3600000], got '500'"],
    ['a duration that is not whole ms', ['set', 'q', '--cooldown', '5s'], "--cooldown must be an integer in [100, 3600000], got '5s'"],
    ['no probes', ['set', 'q', '--probes', '0'], "--probes must be an integer in [1, 100], got '0'"],
    ['a cap below the cool-down', ['set', 'q', '--cooldown', '10000', '--cooldown-max', '5000'], '--cooldown-max (5000) must be at least --cooldown (10000)'],
    ['a cool-down over the default cap', ['set', 'q', '--cooldown', '600000'], `--cooldown-max (${BREAKER_DEFAULTS.cooldownMaxMs}, the default) must be at least --cooldown (600000)`],
    ['an unknown subcommand', ['list'], "kairos breaker takes 'set', 'get' or 'clear' (kairos breakers lists them)"],
  ];

  for (const [what, args, message] of cases) {
    it(`refuses ${what} before connecting`, async () => {
      const before = connections;
      const { error } = await run(breakerCommand, [...args, '--url', deadUrl]);
      expect(error).toMatchObject({ name: 'UsageError', message });
      expect(connections).toBe(before);
    });
  }

  it('refuses a bad --limit of kairos breakers before connecting', async () => {
    const before = connections;
    const { error } = await run(breakersCommand, ['--limit', '0', '--url', deadUrl]);
    expect(error).toMatchObject({ name: 'UsageError', message: "--limit must be an integer in [1, 1000], got '0'" });
    expect(connections).toBe(before);
  });

  it('connects once the arguments are good (so the counts above mean something)', async () => {
    const before = connections;
    const { error } = await run(breakerCommand, ['get', 'q', '--url', deadUrl]);
    expect(error).not.toBeNull();
    expect(error!.name).not.toBe('UsageError');
    expect(connections).toBeGreaterThan(before);
  });
});

describe('kairos breaker and kairos breakers against a node', () => {
  let fake: FakeNode;
  const breakers = new Map<string, BreakerView>();

  beforeAll(async () => {
    fake = await FakeNode.start();
    fake.intercept = (msg, conn) => {
      switch (msg.t) {
        case 'breaker_set':
          breakers.set(msg.breaker.queue, viewOf(msg.breaker));
          conn.send({ t: 'breaker', rid: msg.rid, breaker: breakers.get(msg.breaker.queue)! });
          return true;
        case 'breaker_clear':
          breakers.set(msg.queue, viewOf({ queue: msg.queue }, { source: 'default' }));
          conn.send({ t: 'breaker', rid: msg.rid, breaker: breakers.get(msg.queue)! });
          return true;
        case 'breaker_get': {
          const found = breakers.get(msg.queue);
          if (found === undefined) conn.send({ t: 'error', rid: msg.rid, code: 'not_found', message: `no breaker for queue ${msg.queue}` });
          else conn.send({ t: 'breaker', rid: msg.rid, breaker: { ...found, window: { attempts: 25, failures: 14 } } });
          return true;
        }
        case 'breaker_list': {
          const all = [...breakers.values()].sort((a, b) => (a.queue < b.queue ? -1 : 1));
          const page = all.slice(0, msg.limit ?? 100);
          conn.send({ t: 'breaker_page', rid: msg.rid, breakers: page, next: page.length < all.length ? page.at(-1)!.queue : null });
          return true;
        }
        default:
          return false;
      }
    };
  });

  afterEach(() => {
    breakers.clear();
  });

  afterAll(() => fake.close());

  const at = () => ['--url', fake.url, '--token', 'secret'];

  it('set sends the settings it was given, durations in ms, and prints the breaker', async () => {
    const result = await run(breakerCommand, [
      'set', 'payments', '--failure-rate', '40', '--min-attempts', '10', '--window', '60000', '--cooldown', '2000',
      '--cooldown-max', '120000', '--probes', '3', '--refuse', ...at(),
    ]);
    expect(result.error).toBeNull();
    expect(fake.messages('breaker_set').at(-1)!.breaker).toEqual({
      queue: 'payments',
      failureRatePct: 40,
      minAttempts: 10,
      windowMs: 60_000,
      cooldownMs: 2_000,
      cooldownMaxMs: 120_000,
      probes: 3,
      refuseWhenOpen: true,
    });
    expect(JSON.parse(result.stdout)).toMatchObject({ queue: 'payments', source: 'queue', failureRatePct: 40, probes: 3, refuseWhenOpen: true, state: 'closed' });
  });

  it('set --off sends enabled: false and nothing else it was not given', async () => {
    const result = await run(breakerCommand, ['set', 'reports', '--off', ...at()]);
    expect(result.error).toBeNull();
    expect(fake.messages('breaker_set').at(-1)!.breaker).toEqual({ queue: 'reports', enabled: false });
  });

  it('get prints the breaker with its live window; clear prints it back on the default', async () => {
    breakers.set('payments', viewOf({ queue: 'payments' }));
    const got = await run(breakerCommand, ['get', 'payments', ...at()]);
    expect(JSON.parse(got.stdout)).toMatchObject({ queue: 'payments', window: { attempts: 25, failures: 14 } });
    const cleared = await run(breakerCommand, ['clear', 'payments', ...at()]);
    expect(fake.messages('breaker_clear').at(-1)).toMatchObject({ queue: 'payments' });
    expect(JSON.parse(cleared.stdout)).toMatchObject({ queue: 'payments', source: 'default' });
    const missing = await run(breakerCommand, ['get', 'nothing', ...at()]);
    expect(missing.error).toMatchObject({ name: 'KairosError', code: 'not_found' });
  });

  it('breakers prints a table, each live window read with a get', async () => {
    breakers.set('payments', viewOf({ queue: 'payments' }, { state: 'open', since: T0 + 60_000, nextProbeAt: T0 + 70_000, openedAttempts: 20, openedFailures: 19 }));
    breakers.set('emails', viewOf({ queue: 'emails' }, { source: 'default', state: 'half_open', since: T0 + 5_000 }));
    breakers.set('reports', viewOf({ queue: 'reports', enabled: false }));
    const gets = fake.messages('breaker_get').length;
    const result = await run(breakersCommand, at());
    expect(result.error).toBeNull();
    expect(result.stdout).toBe(
      [
        'QUEUE     STATE      FAILED/ATTEMPTS  OPENED-ON  SINCE                 NEXT-PROBE            SOURCE',
        'emails    half_open  14/25            0/0        2026-01-01T00:00:05Z  -                     default',
        'payments  open       14/25            19/20      2026-01-01T00:01:00Z  2026-01-01T00:01:10Z  queue',
        'reports   off        14/25            -          2026-01-01T00:00:00Z  -                     queue',
        '',
      ].join('\n'),
    );
    expect(fake.messages('breaker_get').length - gets).toBe(3);
    expect(result.stderr).toBe('');
  });

  it('breakers --json prints one line per breaker, and says where the next page starts', async () => {
    breakers.set('a', viewOf({ queue: 'a' }));
    breakers.set('b', viewOf({ queue: 'b' }));
    const result = await run(breakersCommand, ['--json', '--limit', '1', ...at()]);
    expect(result.stdout.trim().split('\n').map((line) => JSON.parse(line))).toEqual([{ ...viewOf({ queue: 'a' }), window: { attempts: 25, failures: 14 } }]);
    expect(result.stderr).toBe('kairos: more with --after a\n');
  });

  it('through main.ts: wired in, with its help, exit 2 on a usage error, and a real set', async () => {
    const [help, top, bad, set] = await Promise.all([
      kairos(['breaker', '--help']),
      kairos(['--help']),
      kairos(['breaker', 'set', 'q', '--probes', '1000', '--url', deadUrl]),
      kairos(['breaker', 'set', 'sms', '--min-attempts', '5', ...at()]),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('kairos breaker set QUEUE [options]');
    expect(top.stdout).toContain('kairos breakers ');
    expect(top.stdout).toContain('kairos breaker SUBCOMMAND');
    expect(bad).toEqual({ code: 2, stdout: '', stderr: "kairos: --probes must be an integer in [1, 100], got '1000'\n" });
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ queue: 'sms', minAttempts: 5 });
    const list = await kairos(['breakers', ...at()]);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[1]).toMatch(/^sms +closed +14\/25 /);
  });
});
