// What the SDK does when the link drops: it reconnects with backoff and re-sends what was
// not answered, so a dropped connection neither loses nor duplicates a submission. And what it
// does when its own process stalls: replies that arrived meanwhile still count.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  connect,
  ConnectionClosedError,
  KairosClient,
  RequestTimeoutError,
  webSocketDialer,
  type ConnectOptions,
  type JobView,
} from '../../protocol/sdk/index.ts';
import { FakeNode } from '../support/sdk-fake-node.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

let fake: FakeNode;
let client: KairosClient | null;
const warnings: string[] = [];

async function open(options: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  client = await connect({
    url: fake.url,
    token: 'secret',
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    onWarning: (m) => warnings.push(m),
    ...options,
  });
  return client;
}

beforeEach(async () => {
  fake = await FakeNode.start();
  client = null;
  warnings.length = 0;
});

afterEach(async () => {
  await client?.close();
  await fake.close();
});

describe('re-sending after a dropped link', () => {
  it('re-sends a submission committed but not acknowledged, with the same key: one job, one answer', async () => {
    const c = await open();
    let committed: JobView | null = null;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit' || committed !== null) return false;
      committed = fake.addJob(msg.job); // committed, then the link dies before the reply
      conn.drop();
      return true;
    };
    const result = await c.submit({ queue: 'q', payload: bytes('once') });

    const submits = fake.messages('submit');
    expect(submits).toHaveLength(2);
    expect(submits[1]!.job.idempotencyKey).toBe(submits[0]!.job.idempotencyKey);
    expect(fake.received.find((r) => r.msg.t === 'submit' && r.conn.index === 1)).toBeDefined();
    expect(fake.jobs.size).toBe(1);
    expect(result).toEqual({ jobId: committed!.id, duplicate: false });
    expect(warnings.some((w) => w.startsWith('connection lost'))).toBe(true);
  });

  it('re-sends a batch that was dropped before it was applied', async () => {
    const c = await open();
    let dropped = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit_batch' || dropped) return false;
      dropped = true;
      conn.drop();
      return true;
    };
    const results = await c.submitMany([
      { queue: 'q', payload: bytes('a'), idempotencyKey: 'k-a' },
      { queue: 'q', payload: bytes('b') },
    ]);
    const batches = fake.messages('submit_batch');
    expect(batches).toHaveLength(2);
    expect(batches[1]!.jobs.map((j) => j.idempotencyKey)).toEqual(batches[0]!.jobs.map((j) => j.idempotencyKey));
    expect(results).toEqual([
      { jobId: expect.any(String), duplicate: false },
      { jobId: expect.any(String), duplicate: false },
    ]);
    expect(fake.jobs.size).toBe(2);
  });

  it('treats illegal_state for a re-sent cancel of a cancelled job as success', async () => {
    const c = await open();
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    let dropped = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'cancel' || dropped) return false;
      dropped = true;
      fake.update(job.id, { state: 'cancelled' });
      conn.drop();
      return true;
    };
    await expect(c.cancel(job.id)).resolves.toMatchObject({ id: job.id, state: 'cancelled' });
    expect(fake.messages('cancel')).toHaveLength(2);
  });

  it('subscribes again after a reconnect and reports what changed meanwhile', async () => {
    const c = await open();
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    const seen: string[] = [];
    const sub = await c.subscribe(job.id, (view) => seen.push(view.state));
    const from = fake.received.length;
    fake.live!.drop();
    fake.update(job.id, { state: 'running' }); // nobody is subscribed on the fake right now
    await fake.waitFor((msg, conn) => msg.t === 'subscribe' && conn.index === 1, { from });
    await c.get(job.id); // a round trip after the re-subscription's reply
    expect(seen).toEqual(['running']);
    fake.update(job.id, { state: 'succeeded' });
    await expect(sub.done).resolves.toMatchObject({ state: 'succeeded' });
  });
});

describe('reconnection', () => {
  it('drops a link whose peer stops answering pings, and reconnects', async () => {
    const c = await open({ transport: webSocketDialer({ keepaliveMs: 100 }) });
    fake.live!.freeze();
    await fake.waitFor((msg, conn) => msg.t === 'hello' && conn.index === 1);
    expect(warnings).toContain('connection lost: no answer to a ping within 100 ms');
    const { jobId } = await c.submit({ queue: 'q', payload: bytes('x') });
    expect(fake.jobs.has(jobId)).toBe(true);
  });

  it('times out a request, reconnections included, and ignores a late answer', async () => {
    const c = await open({ requestTimeoutMs: 300 });
    let dropped = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'get') return false;
      if (!dropped) conn.drop();
      dropped = true;
      setTimeout(() => conn.send({ t: 'error', rid: msg.rid, code: 'not_found', message: 'late' }), 400);
      return true;
    };
    const error = await c.get('03f-mjuohs00-5-16').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RequestTimeoutError);
    expect(fake.messages('get')).toHaveLength(2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(c.submit({ queue: 'q', payload: bytes('x') })).resolves.toMatchObject({ duplicate: false });
  });

  it('gives up after maxAttempts and fails what is pending with ConnectionClosedError', async () => {
    const c = await open({ reconnect: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 } });
    fake.intercept = (msg) => msg.t === 'get';
    const pending = c.get('03f-mjuohs00-5-16');
    await fake.waitFor((msg) => msg.t === 'get');
    await fake.close();
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionClosedError);
    expect((error as Error).message).toMatch(/gave up after 2 reconnection attempts/);
    await expect(c.submit({ queue: 'q', payload: bytes('x') })).rejects.toBeInstanceOf(ConnectionClosedError);
    fake = await FakeNode.start(); // for afterEach
  });

  it('reports a submission sent before the client closed for good as OutcomeUnknownError', async () => {
    const c = await open({ reconnect: false });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      conn.drop();
      return true;
    };
    const error = await c.submit({ queue: 'q', payload: bytes('x') }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'OutcomeUnknownError', idempotencyKey: fake.messages('submit')[0]!.job.idempotencyKey });
    expect((error as Error).cause).toBeInstanceOf(ConnectionClosedError);
    await expect(c.submit({ queue: 'q', payload: bytes('y') })).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('closes on a dropped link when reconnection is off', async () => {
    const c = await open({ reconnect: false });
    fake.live!.drop();
    await expect.poll(async () => (await c.get('03f-mjuohs00-5-16').catch((e: unknown) => e)) instanceof ConnectionClosedError).toBe(true);
  });
});

describe('a stalled process', () => {
  it('reads the replies that arrived while it was stopped before timing their requests out', async () => {
    const c = await open({ requestTimeoutMs: 200, retry: false });
    const count = 20;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      if (fake.messages('submit').length < count) return true;
      conn.sendTogether(fake.messages('submit').map((m) => ({ t: 'submitted', rid: m.rid, jobId: fake.addJob(m.job).id, duplicate: false })));
      // The whole process stops (as under SIGSTOP) past the requests' deadline, with the
      // replies waiting in the client's socket.
      const until = performance.now() + 400;
      while (performance.now() < until);
      return true;
    };
    const results = await Promise.all(Array.from({ length: count }, (_, i) => c.submit({ queue: 'q', payload: bytes(String(i)) }).catch((e: unknown) => e)));
    expect(results.filter((r) => r instanceof Error)).toEqual([]);
    expect(fake.messages('submit')).toHaveLength(count);
  });
});
