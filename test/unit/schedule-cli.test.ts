// `kairos schedule` through the compiled bin: a usage error is one line and exit status 2, and
// comes before any connection (a listener counts them); a good `add` sends the spec it was
// given and prints the schedule.

import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import { FakeNode } from '../support/sdk-fake-node.ts';
import { KAIROS_BIN } from '../support/spawn-node.ts';

function kairos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [KAIROS_BIN, ...args], (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}

/** Counts connections and closes each at once, so a command that does connect fails fast. */
let listener: Server;
let connections = 0;
let url: string;

beforeAll(async () => {
  listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(listener.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => listener.close(() => resolve())));

describe('kairos schedule usage errors', () => {
  const cases: Array<[string, string[], string]> = [
    ['--cron and --every together', ['add', 'nightly', '--queue', 'q', '--cron', '0 3 * * *', '--every', '5000'], 'kairos: kairos schedule add takes exactly one of --cron EXPR and --every MS\n'],
    ['neither --cron nor --every', ['add', 'nightly', '--queue', 'q'], 'kairos: kairos schedule add takes exactly one of --cron EXPR and --every MS\n'],
    ['an unknown --missed policy', ['add', 'nightly', '--queue', 'q', '--every', '5000', '--missed', 'sometimes'], "kairos: --missed must be one of skip, once, each, got 'sometimes'\n"],
    ['--tz without --cron', ['add', 'nightly', '--queue', 'q', '--every', '5000', '--tz', 'Europe/Paris'], 'kairos: --tz goes with --cron, not --every\n'],
    ['--every under a second', ['add', 'nightly', '--queue', 'q', '--every', '500'], "kairos: --every must be an integer in [1000, 3153600000000], got '500'\n"],
    ['no --queue', ['add', 'nightly', '--every', '5000'], 'kairos: kairos schedule add needs --queue Q\n'],
    ['no name', ['pause'], 'kairos: expected one schedule name, got 0\n'],
    ['--missed-max without --missed each', ['add', 'nightly', '--queue', 'q', '--every', '5000', '--missed-max', '5'], 'kairos: --missed-max goes with --missed each\n'],
    ['an unknown subcommand', ['remove', 'nightly'], "kairos: kairos schedule takes 'add', 'list', 'get', 'pause', 'resume' or 'rm'\n"],
  ];

  for (const [what, args, stderr] of cases) {
    it(`refuses ${what} with exit 2, before connecting`, async () => {
      const before = connections;
      const result = await kairos(['schedule', ...args, '--url', url]);
      expect(result).toEqual({ code: 2, stdout: '', stderr });
      expect(connections).toBe(before);
    });
  }

  it('connects once the arguments are good (so the counts above mean something)', async () => {
    const before = connections;
    const result = await kairos(['schedule', 'rm', 'nightly', '--url', url]);
    expect(result.code).toBe(1);
    expect(connections).toBeGreaterThan(before);
  });
});

describe('kairos schedule add', () => {
  let fake: FakeNode;

  beforeAll(async () => {
    fake = await FakeNode.start();
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'schedule_upsert') return false;
      const spec = msg.schedule;
      conn.send({
        t: 'schedule',
        rid: msg.rid,
        schedule: {
          name: spec.name,
          queue: spec.queue,
          cron: spec.cron ?? null,
          timezone: spec.timezone ?? null,
          everyMs: null,
          payload: spec.payload,
          priority: spec.priority ?? 0,
          retry: { ...DEFAULT_RETRY_POLICY, ...spec.retry },
          missed: spec.missed ?? 'once',
          missedMax: spec.missedMax ?? 10,
          paused: spec.paused ?? false,
          nextTickAt: null,
          createdAt: 1_000,
          updatedAt: 1_000,
        },
      });
      return true;
    };
  });

  afterAll(() => fake.close());

  it('sends the schedule it was given and prints it, its payload as text', async () => {
    const result = await kairos([
      'schedule', 'add', 'nightly', '--queue', 'reports', '--cron', '0 30 2 * * *', '--tz', 'America/New_York',
      '--payload', '{"report":"daily"}', '--priority', '5', '--attempts', '3', '--missed', 'each', '--missed-max', '4', '--paused',
      '--url', fake.url, '--token', 'secret',
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(fake.messages('schedule_upsert')[0]!.schedule).toEqual({
      name: 'nightly',
      queue: 'reports',
      cron: '0 30 2 * * *',
      timezone: 'America/New_York',
      payload: new TextEncoder().encode('{"report":"daily"}'),
      priority: 5,
      retry: { attemptsMax: 3 },
      missed: 'each',
      missedMax: 4,
      paused: true,
    });
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'nightly', payload: '{"report":"daily"}', paused: true, retry: { attemptsMax: 3 } });
  });
});
