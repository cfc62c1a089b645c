// client.breakers against the fake node: each method is its request, each reply its result;
// watching sends one breaker_watch per connection and sends it again after a reconnect; a
// submission refused with circuit_open reaches the caller at once, never retried; and a handler
// that throws DownstreamError or JobError says so in its `fail`.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { breakerConfigOf } from '../../protocol/breaker-view.ts';
import {
  connect,
  DownstreamError,
  JobError,
  KairosClient,
  KairosError,
  NonRetryableError,
  type BreakerChange,
  type BreakerSpec,
  type BreakerView,
  type ConnectOptions,
} from '../../protocol/sdk/index.ts';
import { FakeNode, type FakeConnection, type Inbound } from '../support/sdk-fake-node.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

let fake: FakeNode;
let client: KairosClient | null;
/** The fake node's breakers, by queue. */
let breakers: Map<string, BreakerView>;

async function open(options: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  client = await connect({ url: fake.url, token: 'secret', reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, onWarning: () => {}, ...options });
  return client;
}

function viewOf(spec: BreakerSpec, source: BreakerView['source'] = 'queue'): BreakerView {
  return {
    queue: spec.queue,
    source,
    ...breakerConfigOf(spec),
    state: 'closed',
    since: 1_000,
    nextProbeAt: null,
    currentCooldownMs: breakerConfigOf(spec).cooldownMs,
    openedAttempts: 0,
    openedFailures: 0,
    window: null,
    updatedAt: 1_000,
  };
}

/** Answers the breaker requests from `breakers`, as a node would (without a default breaker). */
function answerBreakers(msg: Inbound, conn: FakeConnection): boolean {
  switch (msg.t) {
    case 'breaker_set':
      breakers.set(msg.breaker.queue, viewOf(msg.breaker));
      conn.send({ t: 'breaker', rid: msg.rid, breaker: breakers.get(msg.breaker.queue)! });
      return true;
    case 'breaker_list': {
      const queues = [...breakers.keys()].sort().filter((queue) => msg.after === undefined || queue > msg.after);
      const page = queues.slice(0, msg.limit ?? 100);
      const next = page.length < queues.length ? page.at(-1)! : null;
      conn.send({ t: 'breaker_page', rid: msg.rid, breakers: page.map((queue) => breakers.get(queue)!), next });
      return true;
    }
    case 'breaker_get':
    case 'breaker_clear': {
      const found = breakers.get(msg.queue);
      if (found === undefined) {
        conn.send({ t: 'error', rid: msg.rid, code: 'not_found', message: `no breaker for queue ${msg.queue}` });
      } else if (msg.t === 'breaker_get') {
        conn.send({ t: 'breaker', rid: msg.rid, breaker: { ...found, window: { attempts: 12, failures: 7 } } });
      } else {
        const cleared = { ...viewOf({ queue: msg.queue }, 'default') };
        breakers.set(msg.queue, cleared);
        conn.send({ t: 'breaker', rid: msg.rid, breaker: cleared });
      }
      return true;
    }
    case 'breaker_watch':
      watchers.add(conn);
      conn.send({ t: 'ok', rid: msg.rid });
      return true;
    default:
      return false;
  }
}

/** Connections that sent breaker_watch. */
let watchers: Set<FakeConnection>;

function push(change: BreakerChange): void {
  for (const conn of watchers) if (!conn.closed) conn.send({ t: 'breaker_changed', ...change });
}

beforeEach(async () => {
  fake = await FakeNode.start();
  client = null;
  breakers = new Map();
  watchers = new Set();
  fake.intercept = answerBreakers;
});

afterEach(async () => {
  await client?.close();
  await fake.close();
});

describe('client.breakers', () => {
  it('sets, reads with the live window, pages through and clears', async () => {
    const c = await open();
    const set = await c.breakers.set('payments', { failureRatePct: 40, minAttempts: 10, cooldownMs: 2_000, refuseWhenOpen: true });
    expect(fake.messages('breaker_set')[0]).toEqual({
      t: 'breaker_set',
      rid: expect.any(Number),
      breaker: { queue: 'payments', failureRatePct: 40, minAttempts: 10, cooldownMs: 2_000, refuseWhenOpen: true },
    });
    expect(set).toMatchObject({ queue: 'payments', source: 'queue', enabled: true, failureRatePct: 40, minAttempts: 10, windowMs: 30_000, cooldownMs: 2_000, refuseWhenOpen: true, state: 'closed', window: null });

    expect(await c.breakers.get('payments')).toMatchObject({ queue: 'payments', window: { attempts: 12, failures: 7 } });

    await c.breakers.set('reports', { enabled: false });
    expect(fake.messages('breaker_set')[1]!.breaker).toEqual({ queue: 'reports', enabled: false });
    const first = await c.breakers.list({ limit: 1 });
    expect(first).toEqual({ breakers: [expect.objectContaining({ queue: 'payments' })], next: 'payments' });
    expect(fake.messages('breaker_list')[0]).toEqual({ t: 'breaker_list', rid: expect.any(Number), limit: 1 });
    const second = await c.breakers.list({ after: first.next! });
    expect(second).toEqual({ breakers: [expect.objectContaining({ queue: 'reports', enabled: false })], next: null });

    expect(await c.breakers.clear('payments')).toMatchObject({ queue: 'payments', source: 'default' });
    expect(fake.messages('breaker_clear')[0]).toEqual({ t: 'breaker_clear', rid: expect.any(Number), queue: 'payments' });
  });

  it('sets a queue with every default when given no options', async () => {
    const c = await open();
    await c.breakers.set('q');
    expect(fake.messages('breaker_set')[0]!.breaker).toEqual({ queue: 'q' });
  });

  it('rejects get of a queue without a breaker with not_found', async () => {
    const c = await open();
    await expect(c.breakers.get('nothing')).rejects.toMatchObject({ name: 'KairosError', code: 'not_found' });
  });

  it('watches with one breaker_watch however many listeners, and hands each change to every one', async () => {
    const c = await open();
    const a: BreakerChange[] = [];
    const b: BreakerChange[] = [];
    await Promise.all([c.breakers.watch((change) => a.push(change)), c.breakers.watch((change) => b.push(change))]);
    const late: BreakerChange[] = [];
    await c.breakers.watch((change) => late.push(change));
    expect(fake.messages('breaker_watch')).toHaveLength(1);

    const opened: BreakerChange = { queue: 'payments', state: 'open', since: 5_000, nextProbeAt: 10_000 };
    push(opened);
    await expect.poll(() => late.length).toBe(1);
    expect(a).toEqual([opened]);
    expect(b).toEqual([opened]);
    expect(late).toEqual([opened]);
  });

  it('hears a change pushed in the same turn as the ok', async () => {
    const c = await open();
    const seen: BreakerChange[] = [];
    const change: BreakerChange = { queue: 'payments', state: 'half_open', since: 7_000, nextProbeAt: null };
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'breaker_watch') return answerBreakers(msg, conn);
      conn.sendTogether([{ t: 'ok', rid: msg.rid }, { t: 'breaker_changed', ...change }]);
      return true;
    };
    await c.breakers.watch((x) => seen.push(x));
    await c.breakers.list(); // a round trip after both frames
    expect(seen).toEqual([change]);
  });

  it('keeps on watching when a listener throws', async () => {
    const warnings: string[] = [];
    const c = await open({ onWarning: (message) => warnings.push(message) });
    const seen: string[] = [];
    await c.breakers.watch(() => {
      throw new Error('listener bug');
    });
    await c.breakers.watch((change) => seen.push(change.state));
    push({ queue: 'q', state: 'open', since: 1, nextProbeAt: 2 });
    push({ queue: 'q', state: 'half_open', since: 2, nextProbeAt: null });
    await expect.poll(() => seen).toEqual(['open', 'half_open']);
    expect(warnings.filter((w) => w.includes('listener bug'))).toHaveLength(2);
  });

  it('rejects the watch when the node refuses it, and watches nothing', async () => {
    const c = await open();
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'breaker_watch') return answerBreakers(msg, conn);
      conn.send({ t: 'error', rid: msg.rid, code: 'unauthorized', message: 'not for this token' });
      return true;
    };
    const seen: BreakerChange[] = [];
    await expect(c.breakers.watch((change) => seen.push(change))).rejects.toMatchObject({ code: 'unauthorized' });
    fake.live!.send({ t: 'breaker_changed', queue: 'q', state: 'open', since: 1, nextProbeAt: 2 });
    await c.breakers.list();
    expect(seen).toEqual([]);
  });

  it('watches again after a reconnect, and hears the new connection', async () => {
    const c = await open();
    const seen: string[] = [];
    await c.breakers.watch((change) => seen.push(`${change.queue}:${change.state}`));
    const from = fake.received.length;
    fake.live!.drop();
    await fake.waitFor((msg, conn) => msg.t === 'breaker_watch' && conn.index === 1, { from });
    await c.breakers.list(); // a round trip after the watch's ok
    push({ queue: 'payments', state: 'closed', since: 9_000, nextProbeAt: null });
    await expect.poll(() => seen).toEqual(['payments:closed']);
    expect(fake.messages('breaker_watch')).toHaveLength(2);
  });

  it('rejects watch once the client is closing', async () => {
    const c = await open();
    void c.close();
    await expect(c.breakers.watch(() => {})).rejects.toMatchObject({ name: 'ConnectionClosedError' });
  });
});

describe('circuit_open', () => {
  const refusal = { code: 'circuit_open', message: 'the breaker of queue payments is open', retryAfterMs: 8_000 } as const;

  it('reaches the caller of submit at once with its retryAfterMs, and is not retried', async () => {
    const c = await open({ retry: { deadlineMs: 60_000 } });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      conn.send({ t: 'error', rid: msg.rid, ...refusal });
      return true;
    };
    const started = Date.now();
    const error = await c.submit({ queue: 'payments', payload: bytes('x') }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(KairosError);
    expect(error).toMatchObject({ code: 'circuit_open', retryAfterMs: 8_000, retryable: true });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(fake.messages('submit')).toHaveLength(1);
  });

  it('is one job’s result in submitMany, not retried, while the others are accepted', async () => {
    const c = await open({ retry: { deadlineMs: 60_000 } });
    // Refused for payments, a job for anything else.
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit_batch') return false;
      const results = msg.jobs.map((job) => (job.queue === 'payments' ? { error: refusal } : { jobId: fake.addJob(job).id, duplicate: false }));
      conn.send({ t: 'submitted_batch', rid: msg.rid, results });
      return true;
    };
    const results = await c.submitMany([
      { queue: 'emails', payload: bytes('a') },
      { queue: 'payments', payload: bytes('b') },
    ]);
    expect(results[0]).toMatchObject({ jobId: expect.any(String), duplicate: false });
    expect(results[1]).toBeInstanceOf(KairosError);
    expect(results[1]).toMatchObject({ code: 'circuit_open', retryAfterMs: 8_000 });
    expect(fake.messages('submit_batch')).toHaveLength(1);
  });
});

describe('a handler says whose failure it was', () => {
  it('sends downstream: true for a DownstreamError, false for a JobError, and nothing otherwise', async () => {
    const c = await open();
    c.worker('q', (ctx) => {
      const kind = new TextDecoder().decode(ctx.payload);
      if (kind === 'downstream') throw new DownstreamError('payments service answered 503');
      if (kind === 'job') throw new JobError('the order has no lines');
      if (kind === 'fatal') throw new NonRetryableError('cannot parse');
      throw new Error('flaky');
    });
    for (const kind of ['downstream', 'job', 'fatal', 'plain']) {
      fake.addJob({ queue: 'q', payload: bytes(kind), retry: { attemptsMax: 1 } });
      await fake.waitFor((msg) => msg.t === 'fail' && msg.error.includes(kind === 'downstream' ? '503' : kind === 'job' ? 'no lines' : kind === 'fatal' ? 'cannot parse' : 'flaky'));
    }
    const [downstream, job, fatal, plain] = fake.messages('fail');
    expect(downstream).toMatchObject({ retryable: true, downstream: true });
    expect(downstream!.error).toMatch(/^DownstreamError: payments service answered 503/);
    expect(job).toMatchObject({ retryable: true, downstream: false });
    expect(job!.error).toMatch(/^JobError: the order has no lines/);
    expect(fatal).toMatchObject({ retryable: false });
    expect(fatal).not.toHaveProperty('downstream');
    expect(plain).toMatchObject({ retryable: true });
    expect(plain).not.toHaveProperty('downstream');
  });
});
