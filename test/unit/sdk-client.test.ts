// The SDK's producer side against a fake node over real sockets: the handshake, each request
// and its reply, typed errors, automatic retry, unknown outcomes, batching, the connection's
// in-flight bound and subscriptions.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, KairosClient, KairosError, OutcomeUnknownError, RequestTimeoutError, type ConnectOptions, type JobView } from '../../protocol/sdk/index.ts';
import type { Submit } from '../../protocol/client-messages.ts';
import { FakeNode } from '../support/sdk-fake-node.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

let fake: FakeNode;
let client: KairosClient | null;
const warnings: string[] = [];

async function open(options: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  client = await connect({ url: fake.url, token: 'secret', onWarning: (m) => warnings.push(m), ...options });
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

describe('handshake', () => {
  it('sends hello with the supported versions and records the welcome', async () => {
    const c = await open({ client: 'sdk-test/1' });
    expect(fake.messages('hello')).toEqual([{ t: 'hello', versions: [1], client: 'sdk-test/1' }]);
    expect(c.node).toBe('fake-1');
    expect(c.shardCount).toBe(16);
    expect(c.limits.batchMax).toBe(1000);
    expect(c.limits.inflightMax).toBe(20_000);
  });

  it('rejects a refused token with an unauthorized KairosError', async () => {
    const error = await connect({ url: fake.url, token: 'wrong', onWarning: () => {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KairosError);
    expect((error as KairosError).code).toBe('unauthorized');
  });

  it('rejects a node that speaks none of its versions, without retrying', async () => {
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'hello') return false;
      conn.send({ t: 'error', rid: null, code: 'unsupported_version', message: 'this node speaks versions 2' });
      return true;
    };
    await expect(connect({ url: fake.url, token: 'secret', onWarning: () => {} })).rejects.toMatchObject({ name: 'KairosError', code: 'unsupported_version' });
    expect(fake.messages('hello')).toHaveLength(1);
  });

  it('tries the fallback URLs in turn', async () => {
    const c = await open({ url: 'ws://127.0.0.1:1', urls: [fake.url] });
    expect(c.node).toBe('fake-1');
  });
});

describe('requests', () => {
  it('submits with a generated idempotency key, then gets, lists and cancels', async () => {
    const c = await open();
    const { jobId, duplicate } = await c.submit({ queue: 'emails', payload: bytes('hi') });
    expect(duplicate).toBe(false);
    const sent = fake.messages('submit')[0]!;
    expect(sent.job.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);

    const job = await c.get(jobId);
    expect(job).toMatchObject({ id: jobId, queue: 'emails', state: 'pending' });
    expect(job.payload).toEqual(bytes('hi'));

    await c.submit({ queue: 'sms', payload: bytes('yo') });
    const page = await c.list({ queue: 'emails' });
    expect(page.jobs.map((j) => j.id)).toEqual([jobId]);
    expect(page.next).toBeNull();

    const cancelled = await c.cancel(jobId);
    expect(cancelled.state).toBe('cancelled');
  });

  it('reports a duplicate only for the caller\'s own key', async () => {
    const c = await open();
    const first = await c.submit({ queue: 'q', payload: bytes('1'), idempotencyKey: 'order-1' });
    const second = await c.submit({ queue: 'q', payload: bytes('1'), idempotencyKey: 'order-1' });
    expect(second).toEqual({ jobId: first.jobId, duplicate: true });
  });

  it('pages through a list', async () => {
    const c = await open();
    for (let i = 0; i < 5; i++) await c.submit({ queue: 'q', payload: bytes(String(i)) });
    const first = await c.list({ limit: 2 });
    const second = await c.list({ limit: 2, after: first.next! });
    expect(first.jobs).toHaveLength(2);
    expect(second.jobs).toHaveLength(2);
    expect(new Set([...first.jobs, ...second.jobs].map((j) => j.id)).size).toBe(4);
  });

  it('lists and requeues dead jobs', async () => {
    const c = await open();
    const dead = fake.addJob({ queue: 'q', payload: bytes('x') }, 'dead');
    const page = await c.dlq.list({ queue: 'q' });
    expect(page.jobs.map((j) => j.id)).toEqual([dead.id]);
    const requeued = await c.dlq.requeue(dead.id, { attempts: 3 });
    expect(requeued.state).toBe('pending');
    expect(fake.messages('dlq_requeue')[0]).toMatchObject({ jobId: dead.id, attempts: 3 });
  });
});

describe('typed errors', () => {
  it('turns an error reply into a KairosError with its code and field', async () => {
    const c = await open();
    const missing = await c.get('03f-mjuohs00-5-16').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(KairosError);
    expect(missing).toMatchObject({ name: 'KairosError', code: 'not_found', retryable: false });

    const bad = await c.submit({ queue: '', payload: bytes('x') }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'bad_request', field: 'job.queue' });
  });

  it('refuses to cancel a finished job with illegal_state', async () => {
    const c = await open();
    const done = fake.addJob({ queue: 'q', payload: bytes('x') }, 'succeeded');
    await expect(c.cancel(done.id)).rejects.toMatchObject({ code: 'illegal_state' });
  });

  it('times out a request the node never answers', async () => {
    const c = await open({ requestTimeoutMs: 200 });
    fake.intercept = (msg) => msg.t === 'get';
    const error = await c.get('03f-mjuohs00-5-16').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RequestTimeoutError);
    expect((error as RequestTimeoutError).timeoutMs).toBe(200);
  });
});

describe('automatic retry', () => {
  it('retries an overloaded submission after retryAfterMs with the same key', async () => {
    const c = await open();
    const refusedAt: number[] = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit' || refusedAt.length >= 2) return false;
      refusedAt.push(performance.now());
      conn.send({ t: 'error', rid: msg.rid, code: 'overloaded', message: 'full', retryAfterMs: 150 });
      return true;
    };
    const started = performance.now();
    const { jobId } = await c.submit({ queue: 'q', payload: bytes('x') });
    expect(fake.jobs.has(jobId)).toBe(true);
    const submits = fake.messages('submit');
    expect(submits).toHaveLength(3);
    expect(new Set(submits.map((s) => s.job.idempotencyKey)).size).toBe(1);
    expect(refusedAt[1]! - refusedAt[0]!).toBeGreaterThanOrEqual(140);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('gives up with the refusal once the next try would pass the deadline', async () => {
    const c = await open({ retry: { deadlineMs: 300 } });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'rate_limited', message: 'slow down', retryAfterMs: 200 });
      return true;
    };
    const error = await c.submit({ queue: 'q', payload: bytes('x') }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'rate_limited', retryAfterMs: 200 });
    expect(fake.messages('submit')).toHaveLength(2);
  });

  it('hands a retryable refusal to the caller at once when retry is off', async () => {
    const c = await open({ retry: false });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'get') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'unavailable', message: 'hand-off', retryAfterMs: 500 });
      return true;
    };
    await expect(c.get('03f-mjuohs00-5-16')).rejects.toMatchObject({ code: 'unavailable', retryable: true });
    expect(fake.messages('get')).toHaveLength(1);
  });
});

describe('unknown outcomes', () => {
  it('sends a submission answered internal again under the same key, and reports the job it created', async () => {
    const c = await open();
    let committed: JobView | null = null;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit' || committed !== null) return false;
      committed = fake.addJob(msg.job); // committed, but the node cannot tell
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    const result = await c.submit({ queue: 'q', payload: bytes('x') });
    const submits = fake.messages('submit');
    expect(submits).toHaveLength(2);
    expect(submits[1]!.job.idempotencyKey).toBe(submits[0]!.job.idempotencyKey);
    expect(result).toEqual({ jobId: committed!.id, duplicate: false });
    expect(fake.jobs.size).toBe(1);
  });

  it('sends a submission that timed out again under the same key', async () => {
    const c = await open({ requestTimeoutMs: 150 });
    fake.intercept = (msg) => msg.t === 'submit' && fake.messages('submit').length === 1;
    const { jobId } = await c.submit({ queue: 'q', payload: bytes('x') });
    const submits = fake.messages('submit');
    expect(submits).toHaveLength(2);
    expect(submits[1]!.job.idempotencyKey).toBe(submits[0]!.job.idempotencyKey);
    expect(fake.jobs.has(jobId)).toBe(true);
  });

  it('reports a submission still unknown at the deadline as OutcomeUnknownError carrying its key', async () => {
    const c = await open({ retry: { deadlineMs: 300 } });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    const generated = await c.submit({ queue: 'q', payload: bytes('x') }).catch((e: unknown) => e);
    expect(generated).toBeInstanceOf(OutcomeUnknownError);
    const submits = fake.messages('submit');
    expect(submits.length).toBeGreaterThan(1);
    expect(new Set(submits.map((s) => s.job.idempotencyKey))).toEqual(new Set([(generated as OutcomeUnknownError).idempotencyKey]));
    expect((generated as Error).message).toMatch(/may or may not exist/);
    expect((generated as Error).cause).toMatchObject({ code: 'internal' });

    const own = await c.submit({ queue: 'q', payload: bytes('x'), idempotencyKey: 'order-7' }).catch((e: unknown) => e);
    expect(own).toMatchObject({ name: 'OutcomeUnknownError', idempotencyKey: 'order-7' });
  });

  it('reports an unknown outcome as unknown though a later try was refused', async () => {
    const c = await open({ retry: { deadlineMs: 300 } });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      const first = fake.messages('submit').length === 1;
      conn.send({ t: 'error', rid: msg.rid, ...(first ? { code: 'internal', message: 'outcome unknown' } : { code: 'overloaded', message: 'full', retryAfterMs: 100 }) });
      return true;
    };
    const error = await c.submit({ queue: 'q', payload: bytes('x') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutcomeUnknownError);
    expect(fake.messages('submit').length).toBeGreaterThan(2);
  });

  it('hands an unknown submission to the caller at once when retry is off, still as OutcomeUnknownError', async () => {
    const c = await open({ retry: false });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    await expect(c.submit({ queue: 'q', payload: bytes('x') })).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(fake.messages('submit')).toHaveLength(1);
  });

  it('sends a batch answered internal again, whole, under the same keys', async () => {
    const c = await open();
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit_batch' || fake.messages('submit_batch').length > 1) return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    const results = await c.submitMany([
      { queue: 'q', payload: bytes('a') },
      { queue: 'q', payload: bytes('b') },
    ]);
    expect(results.every((r) => 'jobId' in r)).toBe(true);
    const batches = fake.messages('submit_batch');
    expect(batches).toHaveLength(2);
    expect(batches[1]!.jobs.map((j) => j.idempotencyKey)).toEqual(batches[0]!.jobs.map((j) => j.idempotencyKey));
  });

  it('sends the jobs of a batch answered internal again, and reports those still unknown with their own keys', async () => {
    const c = await open({ retry: { deadlineMs: 300 } });
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit_batch') return false;
      const results = msg.jobs.map((spec) =>
        spec.queue === 'lost' ? { error: { code: 'internal' as const, message: 'outcome unknown' } } : { jobId: fake.addJob(spec).id, duplicate: false },
      );
      conn.send({ t: 'submitted_batch', rid: msg.rid, results });
      return true;
    };
    const results = await c.submitMany([
      { queue: 'q', payload: bytes('a') },
      { queue: 'lost', payload: bytes('b') },
      { queue: 'lost', payload: bytes('c'), idempotencyKey: 'order-9' },
    ]);
    const [first, ...later] = fake.messages('submit_batch');
    expect(later.length).toBeGreaterThan(0);
    for (const batch of later) expect(batch.jobs.map((j) => j.idempotencyKey)).toEqual(first!.jobs.slice(1).map((j) => j.idempotencyKey));
    expect('jobId' in results[0]!).toBe(true);
    expect(results[1]).toBeInstanceOf(OutcomeUnknownError);
    expect(results[1]).toMatchObject({ idempotencyKey: first!.jobs[1]!.idempotencyKey });
    expect(results[2]).toMatchObject({ name: 'OutcomeUnknownError', idempotencyKey: 'order-9' });
  });
});

describe('submitMany', () => {
  it('splits by batchMax and returns one result per job, in order', async () => {
    await fake.close();
    fake = await FakeNode.start({ limits: { batchMax: 3 } });
    const c = await open();
    const results = await c.submitMany(Array.from({ length: 7 }, (_, i) => ({ queue: 'q', payload: bytes(String(i)) })));
    expect(fake.messages('submit_batch').map((b) => b.jobs.length)).toEqual([3, 3, 1]);
    const ids = results.map((r) => ('jobId' in r ? r.jobId : null));
    expect(ids.every((id) => id !== null)).toBe(true);
    expect(ids.map((id) => new TextDecoder().decode(fake.jobs.get(id!)!.payload))).toEqual(['0', '1', '2', '3', '4', '5', '6']);
  });

  it('keeps batches within the frame limit', async () => {
    const c = await open();
    const payload = new Uint8Array(200 * 1024);
    await c.submitMany(Array.from({ length: 12 }, () => ({ queue: 'q', payload })));
    const sizes = fake.messages('submit_batch').map((b) => b.jobs.length);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(12);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(5);
  });

  it('reports a refused job in place and retries a retryable one', async () => {
    const c = await open();
    let refused = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit_batch' || refused) return false;
      refused = true;
      conn.send({
        t: 'submitted_batch',
        rid: msg.rid,
        results: [
          { jobId: fake.addJob(msg.jobs[0]!).id, duplicate: false },
          { error: { code: 'unavailable', message: 'shard moving', retryAfterMs: 50 } },
        ],
      });
      return true;
    };
    const results = await c.submitMany([
      { queue: 'q', payload: bytes('a') },
      { queue: 'q', payload: bytes('b') },
    ]);
    expect(results.every((r) => 'jobId' in r)).toBe(true);
    const batches = fake.messages('submit_batch');
    expect(batches.map((b) => b.jobs.length)).toEqual([2, 1]);
    expect(batches[1]!.jobs[0]!.idempotencyKey).toBe(batches[0]!.jobs[1]!.idempotencyKey);
  });

  it('cuts batches to inflightMax when that is below batchMax', async () => {
    await fake.close();
    fake = await FakeNode.start({ limits: { inflightMax: 3 } });
    const c = await open();
    const results = await c.submitMany(Array.from({ length: 7 }, (_, i) => ({ queue: 'q', payload: bytes(String(i)) })));
    expect(results.every((r) => 'jobId' in r)).toBe(true);
    expect(fake.messages('submit_batch').map((b) => b.jobs.length)).toEqual([3, 3, 1]);
    expect(fake.live!.inflightPeak).toBeLessThanOrEqual(3);
  });

  it('pins a frame refusal on the job it names and submits the rest', async () => {
    const c = await open();
    const results = await c.submitMany([
      { queue: 'q', payload: bytes('a') },
      { queue: '', payload: bytes('b') },
      { queue: 'q', payload: bytes('c') },
    ]);
    expect('jobId' in results[0]!).toBe(true);
    expect(results[1]).toMatchObject({ name: 'KairosError', code: 'bad_request', field: 'queue' });
    expect('jobId' in results[2]!).toBe(true);
  });
});

describe('the in-flight bound', () => {
  /** Submissions the fake node holds unanswered, with their connection. */
  function holdSubmissions(): Array<{ msg: Submit; answer(): void }> {
    const held: Array<{ msg: Submit; answer(): void }> = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'submit') return false;
      held.push({ msg, answer: () => conn.send({ t: 'submitted', rid: msg.rid, jobId: fake.addJob(msg.job).id, duplicate: false }) });
      return true;
    };
    return held;
  }

  it('keeps submissions in flight at or below inflightMax, sending the rest as answers come', async () => {
    await fake.close();
    fake = await FakeNode.start({ limits: { inflightMax: 2 } });
    const c = await open();
    const held = holdSubmissions();
    const submitted = Promise.all(Array.from({ length: 5 }, (_, i) => c.submit({ queue: 'q', payload: bytes(String(i)) })));
    await expect.poll(() => held.length).toBe(2);
    await c.get('03f-mjuohs00-5-16').catch(() => {}); // a round trip: a third submission would have come first
    expect(fake.messages('submit')).toHaveLength(2);
    held[0]!.answer();
    await expect.poll(() => held.length).toBe(3);
    fake.intercept = null;
    for (const h of held.slice(1)) h.answer();
    await expect(submitted).resolves.toHaveLength(5);
    // None was refused and sent again.
    expect(fake.messages('submit')).toHaveLength(5);
  });

  it('counts a timed-out submission until the node answers it, as the node does', async () => {
    await fake.close();
    fake = await FakeNode.start({ limits: { inflightMax: 1 } });
    const c = await open({ requestTimeoutMs: 150, retry: false });
    const held = holdSubmissions();
    await expect(c.submit({ queue: 'q', payload: bytes('a') })).rejects.toMatchObject({ name: 'OutcomeUnknownError', cause: { name: 'RequestTimeoutError', sent: true } });
    fake.intercept = null;
    const second = c.submit({ queue: 'q', payload: bytes('b') });
    await c.get('03f-mjuohs00-5-16').catch(() => {});
    expect(fake.messages('submit')).toHaveLength(1);
    held[0]!.answer(); // late, but it frees the slot
    await expect(second).resolves.toMatchObject({ duplicate: false });
    expect(fake.messages('submit')).toHaveLength(2);
  });
});

describe('subscribe', () => {
  it('reports each change and resolves done at a terminal state', async () => {
    const c = await open();
    const { jobId } = await c.submit({ queue: 'q', payload: bytes('x') });
    const seen: JobView['state'][] = [];
    const sub = await c.subscribe(jobId, (job) => seen.push(job.state));
    expect(sub.current.state).toBe('pending');
    fake.update(jobId, { state: 'running' });
    fake.update(jobId, { state: 'succeeded', result: bytes('ok') });
    const done = await sub.done;
    expect(done.result).toEqual(bytes('ok'));
    expect(seen).toEqual(['running', 'succeeded']);
  });

  it('resolves done at once for a finished job', async () => {
    const c = await open();
    const job = fake.addJob({ queue: 'q', payload: bytes('x') }, 'dead');
    const sub = await c.subscribe(job.id, () => {});
    await expect(sub.done).resolves.toMatchObject({ state: 'dead' });
  });

  it('stops reporting after unsubscribe', async () => {
    const c = await open();
    const { jobId } = await c.submit({ queue: 'q', payload: bytes('x') });
    const seen: string[] = [];
    const sub = await c.subscribe(jobId, (job) => seen.push(job.state));
    await sub.unsubscribe();
    expect(fake.messages('unsubscribe')).toEqual([{ t: 'unsubscribe', rid: expect.any(Number), jobId }]);
    fake.update(jobId, { state: 'running' });
    await c.get(jobId); // a round trip: any push would have arrived before its reply
    expect(seen).toEqual([]);
  });
});

describe('close', () => {
  it('waits for calls in flight, then refuses new ones', async () => {
    const c = await open();
    const submitted = c.submit({ queue: 'q', payload: bytes('x') });
    await c.close();
    await expect(submitted).resolves.toMatchObject({ duplicate: false });
    await expect(c.get('03f-mjuohs00-5-16')).rejects.toMatchObject({ name: 'ConnectionClosedError' });
    client = null;
  });
});
