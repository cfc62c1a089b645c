// client.schedules against the fake node: each method is its request, each reply its result,
// and a delete re-sent after a dropped link that finds the schedule gone is a success.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, KairosClient, type ConnectOptions, type ScheduleSpec, type ScheduleView } from '../../protocol/sdk/index.ts';
import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import { FakeNode, type FakeConnection, type Inbound } from '../support/sdk-fake-node.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

let fake: FakeNode;
let client: KairosClient | null;
/** The fake node's schedules, by name. */
let schedules: Map<string, ScheduleView>;

async function open(options: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  client = await connect({ url: fake.url, token: 'secret', reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, onWarning: () => {}, ...options });
  return client;
}

function viewOf(spec: ScheduleSpec): ScheduleView {
  return {
    name: spec.name,
    queue: spec.queue,
    cron: spec.cron ?? null,
    timezone: spec.cron === undefined ? null : spec.timezone ?? 'UTC',
    everyMs: spec.everyMs ?? null,
    payload: spec.payload,
    priority: spec.priority ?? 0,
    retry: DEFAULT_RETRY_POLICY,
    missed: spec.missed ?? 'once',
    missedMax: spec.missedMax ?? 10,
    paused: spec.paused ?? false,
    nextTickAt: spec.paused === true ? null : 2_000_000_000_000,
    createdAt: 1_000,
    updatedAt: 1_000,
  };
}

/** Answers the schedule requests from `schedules`, as a node would. */
function answerSchedules(msg: Inbound, conn: FakeConnection): boolean {
  switch (msg.t) {
    case 'schedule_upsert':
      schedules.set(msg.schedule.name, viewOf(msg.schedule));
      conn.send({ t: 'schedule', rid: msg.rid, schedule: schedules.get(msg.schedule.name)! });
      return true;
    case 'schedule_list': {
      const names = [...schedules.keys()].sort().filter((name) => msg.after === undefined || name > msg.after);
      const page = names.slice(0, msg.limit ?? 100);
      const next = page.length < names.length ? page.at(-1)! : null;
      conn.send({ t: 'schedule_page', rid: msg.rid, schedules: page.map((name) => schedules.get(name)!), next });
      return true;
    }
    case 'schedule_get':
    case 'schedule_pause':
    case 'schedule_delete': {
      const found = schedules.get(msg.name);
      if (found === undefined) {
        conn.send({ t: 'error', rid: msg.rid, code: 'not_found', message: `no schedule ${msg.name}` });
      } else if (msg.t === 'schedule_get') {
        conn.send({ t: 'schedule', rid: msg.rid, schedule: found });
      } else if (msg.t === 'schedule_pause') {
        const changed = { ...found, paused: msg.paused, nextTickAt: msg.paused ? null : 2_000_000_000_000 };
        schedules.set(msg.name, changed);
        conn.send({ t: 'schedule', rid: msg.rid, schedule: changed });
      } else {
        schedules.delete(msg.name);
        conn.send({ t: 'ok', rid: msg.rid });
      }
      return true;
    }
    default:
      return false;
  }
}

beforeEach(async () => {
  fake = await FakeNode.start();
  client = null;
  schedules = new Map();
  fake.intercept = answerSchedules;
});

afterEach(async () => {
  await client?.close();
  await fake.close();
});

describe('client.schedules', () => {
  it('creates, reads, pages through, pauses, resumes and deletes', async () => {
    const c = await open();
    const spec: ScheduleSpec = { name: 'nightly', queue: 'reports', cron: '0 3 * * *', timezone: 'Europe/Paris', payload: bytes('{}'), missed: 'skip' };
    const created = await c.schedules.upsert(spec);
    expect(fake.messages('schedule_upsert')[0]!.schedule).toEqual(spec);
    expect(created).toMatchObject({ name: 'nightly', cron: '0 3 * * *', timezone: 'Europe/Paris', everyMs: null, missed: 'skip', paused: false });
    expect(await c.schedules.get('nightly')).toEqual(created);

    await c.schedules.upsert({ name: 'often', queue: 'q', everyMs: 5_000, payload: bytes('') });
    const first = await c.schedules.list({ limit: 1 });
    expect(first.schedules.map((s) => s.name)).toEqual(['nightly']);
    expect(first.next).toBe('nightly');
    const second = await c.schedules.list({ after: first.next! });
    expect(second).toEqual({ schedules: [expect.objectContaining({ name: 'often', everyMs: 5_000 })], next: null });

    expect(await c.schedules.pause('nightly')).toMatchObject({ paused: true, nextTickAt: null });
    expect(await c.schedules.resume('nightly')).toMatchObject({ paused: false, nextTickAt: 2_000_000_000_000 });
    expect(fake.messages('schedule_pause').map((m) => m.paused)).toEqual([true, false]);

    await expect(c.schedules.delete('nightly')).resolves.toBeUndefined();
    await expect(c.schedules.get('nightly')).rejects.toMatchObject({ name: 'KairosError', code: 'not_found' });
  });

  it('refuses to delete a schedule that does not exist', async () => {
    const c = await open();
    await expect(c.schedules.delete('nothing')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('treats not_found for a re-sent delete as success: the first copy deleted it', async () => {
    const c = await open();
    await c.schedules.upsert({ name: 'nightly', queue: 'q', everyMs: 60_000, payload: bytes('') });
    let dropped = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'schedule_delete' || dropped) return answerSchedules(msg, conn);
      dropped = true;
      schedules.delete(msg.name); // committed, then the link dies before the reply
      conn.drop();
      return true;
    };
    await expect(c.schedules.delete('nightly')).resolves.toBeUndefined();
    expect(fake.messages('schedule_delete')).toHaveLength(2);
  });
});
