// The SDK's worker against a fake node over real sockets: credit, the handler's context,
// outcomes, heartbeats, revocation and graceful shutdown.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  connect,
  KairosClient,
  KairosError,
  NonRetryableError,
  type ConnectOptions,
  type JobContext,
} from '../../protocol/sdk/index.ts';
import { FakeNode } from '../support/sdk-fake-node.ts';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

let fake: FakeNode;
let client: KairosClient | null;

async function open(options: Partial<ConnectOptions> = {}): Promise<KairosClient> {
  client = await connect({ url: fake.url, token: 'secret', reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, onWarning: () => {}, ...options });
  return client;
}

/** A promise with its resolver outside, for handlers a test finishes by hand. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
}

beforeEach(async () => {
  fake = await FakeNode.start();
  client = null;
});

afterEach(async () => {
  await client?.close();
  await fake.close();
});

describe('leases and outcomes', () => {
  it('credits its concurrency, runs each lease and credits the slot again after the ack', async () => {
    const c = await open();
    const seen: JobContext[] = [];
    const worker = c.worker('emails', (ctx) => {
      seen.push(ctx);
      return bytes(`done ${text(ctx.payload)}`);
    }, { concurrency: 2 });
    await fake.waitFor((msg) => msg.t === 'credit');
    expect(fake.messages('credit')[0]).toEqual({ t: 'credit', queue: 'emails', slots: 2 });

    const jobs = [1, 2, 3].map((i) => fake.addJob({ queue: 'emails', payload: bytes(String(i)), idempotencyKey: `k${i}` }));
    await expect.poll(() => jobs.every((j) => fake.jobs.get(j.id)!.state === 'succeeded')).toBe(true);

    expect(jobs.map((j) => text(fake.jobs.get(j.id)!.result!))).toEqual(['done 1', 'done 2', 'done 3']);
    expect(seen[0]).toMatchObject({ jobId: jobs[0]!.id, queue: 'emails', attempt: 1, attemptsMax: 5, token: { jobId: jobs[0]!.id, attempt: 1, epoch: 7 } });
    expect(seen[0]!.job).toMatchObject({ idempotencyKey: 'k1', lastError: null });
    await expect.poll(() => fake.messages('credit').slice(1).reduce((n, m) => n + m.slots, 0)).toBe(3);
    expect(worker.running).toBe(0);
  });

  it('coalesces the credits of acks read in one turn into one frame', async () => {
    const c = await open();
    const finish = deferred();
    let started = 0;
    c.worker('q', async () => {
      started++;
      await finish.promise;
    }, { concurrency: 5 });
    await fake.waitFor((msg) => msg.t === 'credit');
    const acks: Array<{ t: 'ack'; rid: number }> = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'complete') return false;
      fake.update(msg.token.jobId, { state: 'succeeded' });
      acks.push({ t: 'ack', rid: msg.rid });
      if (acks.length === 5) conn.sendTogether(acks);
      return true;
    };
    for (let i = 0; i < 5; i++) fake.addJob({ queue: 'q', payload: bytes(String(i)) });
    await expect.poll(() => started).toBe(5);
    const from = fake.received.length;
    finish.resolve();
    await fake.waitFor((msg) => msg.t === 'credit', { from });
    expect(fake.messages('credit')).toEqual([
      { t: 'credit', queue: 'q', slots: 5 },
      { t: 'credit', queue: 'q', slots: 5 },
    ]);
  });

  it('fails a throwing attempt as retryable, and a NonRetryableError as not', async () => {
    const c = await open();
    c.worker('q', (ctx) => {
      throw text(ctx.payload) === 'fatal' ? new NonRetryableError('bad input') : new Error('flaky');
    });
    fake.addJob({ queue: 'q', payload: bytes('fatal'), retry: { attemptsMax: 1 } });
    await fake.waitFor((msg) => msg.t === 'fail');
    fake.addJob({ queue: 'q', payload: bytes('flaky'), retry: { attemptsMax: 1 } });
    await fake.waitFor((msg) => msg.t === 'fail' && msg.retryable);
    const [fatal, flaky] = fake.messages('fail');
    expect(fatal).toMatchObject({ retryable: false });
    expect(fatal!.error).toMatch(/^NonRetryableError: bad input/);
    expect(flaky).toMatchObject({ retryable: true });
    expect(flaky!.error).toMatch(/^Error: flaky/);
  });

  it('reports an outcome the node refuses as stale to onError, and frees the slot', async () => {
    const c = await open();
    const errors: Array<[Error, string | null]> = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'complete') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'stale_lease', message: 'lease re-granted' });
      return true;
    };
    c.worker('q', () => undefined, { onError: (error, jobId) => errors.push([error, jobId]) });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => errors.length).toBe(1);
    expect(errors[0]).toEqual([expect.objectContaining({ code: 'stale_lease', message: "lease re-granted: the attempt's outcome was not recorded" }), job.id]);
    await fake.waitFor((msg) => msg.t === 'credit' && msg.slots === 1, { from: 2 });
  });

  it('fails an attempt whose result is not bytes, without retrying it', async () => {
    const c = await open();
    c.worker('q', () => 'a string' as unknown as Uint8Array);
    fake.addJob({ queue: 'q', payload: bytes('x') });
    const { msg } = await fake.waitFor((m) => m.t === 'fail');
    expect(msg).toMatchObject({ retryable: false, error: expect.stringMatching(/must be a Uint8Array/) });
  });
});

describe('heartbeats and revocation', () => {
  it('heartbeats every leaseMs/3 while the handler runs', async () => {
    fake.leaseMs = 300;
    const c = await open();
    const arrivals: number[] = [];
    fake.intercept = (msg) => {
      if (msg.t === 'heartbeat') arrivals.push(performance.now());
      return false;
    };
    let startedAt = 0;
    c.worker('q', async () => {
      startedAt = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 560));
    });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => fake.jobs.get(job.id)!.state, { timeout: 3000 }).toBe('succeeded');
    // About five in 560 ms; the bounds leave room for a loaded machine, not for a hot loop.
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect(arrivals.length).toBeLessThanOrEqual(6);
    expect(arrivals[0]! - startedAt).toBeGreaterThanOrEqual(90);
    for (let i = 1; i < arrivals.length; i++) expect(arrivals[i]! - arrivals[i - 1]!).toBeGreaterThanOrEqual(70);
  });

  it('aborts the signal on a cancelling revoke and reports nothing', async () => {
    const c = await open();
    const aborted = deferred<unknown>();
    const errors: Error[] = [];
    c.worker('q', async (ctx) => {
      await untilAborted(ctx.signal);
      aborted.resolve(ctx.signal.reason);
      return bytes('too late');
    }, { onError: (error) => errors.push(error) });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => fake.jobs.get(job.id)!.state).toBe('running');
    fake.update(job.id, { state: 'cancelled' });
    fake.live!.send({ t: 'revoke', token: { jobId: job.id, attempt: 1, epoch: 7 }, reason: 'cancelled' });
    const reason = await aborted.promise;
    expect(reason).toBeInstanceOf(KairosError);
    expect(reason).toMatchObject({ code: 'stale_lease', message: 'the job was cancelled' });
    await fake.waitFor((msg) => msg.t === 'credit', { from: fake.received.length });
    expect(fake.messages('complete')).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('sends no outcome after a lost lease and tells onError it was not recorded', async () => {
    const c = await open();
    const errors: Array<[Error, string | null]> = [];
    c.worker('q', async (ctx) => {
      await untilAborted(ctx.signal);
      return bytes('too late');
    }, { onError: (error, jobId) => errors.push([error, jobId]) });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => fake.jobs.get(job.id)!.state).toBe('running');
    fake.update(job.id, { state: 'succeeded' }); // run elsewhere meanwhile
    fake.live!.send({ t: 'revoke', token: { jobId: job.id, attempt: 1, epoch: 7 }, reason: 'lease_lost' });
    await expect.poll(() => errors.length).toBe(1);
    expect(errors[0]![0]).toMatchObject({ code: 'stale_lease', message: "the lease is no longer held (revoked by the node): the attempt's outcome was not recorded" });
    expect(errors[0]![1]).toBe(job.id);
    expect(fake.messages('complete')).toEqual([]);
  });

  it('aborts the signal when a heartbeat finds the lease stale', async () => {
    fake.leaseMs = 150;
    const c = await open();
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'heartbeat') return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'stale_lease', message: 'lease re-granted' });
      return true;
    };
    const extend = deferred<unknown>();
    c.worker('q', async (ctx) => {
      await untilAborted(ctx.signal);
      extend.resolve(await ctx.extendLease().catch((e: unknown) => e));
    });
    fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect(extend.promise).resolves.toMatchObject({ code: 'stale_lease' });
  });

  it('re-sends an unacknowledged outcome after a reconnect and reports a stale answer to onError', async () => {
    const c = await open();
    const errors: Error[] = [];
    let dropped = false;
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'complete' || dropped) return false;
      dropped = true;
      fake.update(msg.token.jobId, { state: 'succeeded' }); // committed; the ack is lost
      conn.drop();
      return true;
    };
    c.worker('q', () => bytes('r'), { concurrency: 3, onError: (error) => errors.push(error) });
    fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => errors.length).toBe(1);
    expect(errors[0]).toMatchObject({ code: 'stale_lease', message: expect.stringMatching(/re-sent after a reconnect, and the first copy may have been recorded/) });
    const onNewLink = fake.received.filter((r) => r.conn.index === 1).map((r) => r.msg);
    expect(onNewLink).toContainEqual({ t: 'credit', queue: 'q', slots: 2 });
    expect(onNewLink).toContainEqual(expect.objectContaining({ t: 'complete' }));
  });
});

describe('outcomes answered internal', () => {
  it('sends the outcome again under the same token, and its ack records it', async () => {
    const c = await open();
    const errors: Error[] = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'complete' || fake.messages('complete').length > 1) return false;
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    c.worker('q', () => bytes('r'), { onError: (error) => errors.push(error) });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => fake.jobs.get(job.id)!.state).toBe('succeeded');
    const [first, second] = fake.messages('complete');
    expect(second!.token).toEqual(first!.token);
    expect(errors).toEqual([]);
  });

  it('reports an outcome refused as stale after an unknown one as unknown, not as unrecorded', async () => {
    const c = await open();
    const errors: Error[] = [];
    fake.intercept = (msg, conn) => {
      if (msg.t !== 'complete' || fake.messages('complete').length > 1) return false;
      fake.update(msg.token.jobId, { state: 'succeeded' }); // committed, but the node cannot tell
      conn.send({ t: 'error', rid: msg.rid, code: 'internal', message: 'outcome unknown' });
      return true;
    };
    c.worker('q', () => bytes('r'), { onError: (error) => errors.push(error) });
    fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => errors.length).toBe(1);
    expect(fake.messages('complete')).toHaveLength(2);
    expect(errors[0]).toMatchObject({ code: 'internal' });
  });
});

describe('graceful close', () => {
  it('drains, lets running handlers finish within the deadline, returns the rest', async () => {
    const c = await open();
    const quick = deferred();
    const started: string[] = [];
    const worker = c.worker('q', async (ctx) => {
      started.push(text(ctx.payload));
      if (text(ctx.payload) === 'quick') await quick.promise;
      else await untilAborted(ctx.signal);
    }, { concurrency: 2, shutdownDeadlineMs: 300 });
    const quickJob = fake.addJob({ queue: 'q', payload: bytes('quick') });
    const stuckJob = fake.addJob({ queue: 'q', payload: bytes('stuck') });
    await expect.poll(() => worker.running).toBe(2);

    const closing = worker.close();
    await fake.waitFor((msg) => msg.t === 'drain');
    // A lease already on its way when the node took the drain is given back at once.
    const late = fake.addJob({ queue: 'q', payload: bytes('late') });
    fake.lease(fake.live!, late.id);
    await fake.waitFor((msg) => msg.t === 'return' && msg.token.jobId === late.id);
    quick.resolve();
    await closing;

    expect(fake.messages('drain')).toEqual([{ t: 'drain', queue: 'q' }]);
    expect(fake.jobs.get(quickJob.id)!.state).toBe('succeeded');
    expect(fake.jobs.get(stuckJob.id)!.state).toBe('pending');
    expect(fake.messages('return').map((m) => m.token.jobId).sort()).toEqual([late.id, stuckJob.id].sort());
    expect(started).toEqual(['quick', 'stuck']);
    expect(fake.messages('credit')).toHaveLength(1);
    expect(worker.running).toBe(0);
  });

  it('returns nothing when every handler finishes in time', async () => {
    const c = await open();
    const finish = deferred();
    const worker = c.worker('q', () => finish.promise.then(() => bytes('ok')), { shutdownDeadlineMs: 5_000 });
    const job = fake.addJob({ queue: 'q', payload: bytes('x') });
    await expect.poll(() => worker.running).toBe(1);
    const closing = worker.close();
    setTimeout(() => finish.resolve(), 50);
    await closing;
    expect(fake.jobs.get(job.id)!.state).toBe('succeeded');
    expect(fake.messages('return')).toEqual([]);
  });
});
