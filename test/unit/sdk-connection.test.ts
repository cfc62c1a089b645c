// The SDK's connection on virtual time and a hand-driven link, for what real sockets cannot
// show deterministically: the order of timers and I/O when a process wakes up after being
// stopped (SIGSTOP, a long GC pause), and submissions timing out while they wait for room
// under the node's inflightMax.

import { beforeEach, describe, expect, it } from 'vitest';
import type { NodeToClient } from '../../protocol/client-messages.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import { ADVERTISED_LIMITS } from '../../protocol/limits.ts';
import { connect, RequestTimeoutError, type KairosClient, type SubmitManyResult } from '../../protocol/sdk/index.ts';
import type { SdkRuntime } from '../../protocol/sdk/runtime.ts';
import type { Dial, LinkListener } from '../../protocol/sdk/transport.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import type { Inbound } from '../support/sdk-fake-node.ts';

const REQUEST_TIMEOUT_MS = 30_000;
const JOB_ID = '03f-mjuohs00-5-16';

/** Virtual time. `turn()` is the timers phase of one turn of Node's event loop: it fires the
 * timers due now that were set before it began; a timer set during it waits for the next
 * turn, after the I/O that is waiting has been read. */
class VirtualTime {
  nowMs = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { atMs: number; fire: () => void }>();

  readonly runtime: SdkRuntime = {
    clock: { monotonicMs: () => this.nowMs },
    timers: {
      setTimer: (delayMs, fire) => {
        this.timers.set(++this.nextId, { atMs: this.nowMs + delayMs, fire });
        return this.nextId;
      },
      cancelTimer: (id) => void this.timers.delete(id as number),
    },
    random: { next: () => 0.5 },
    uuid: () => `key-${this.nextId}`,
    defer: (fn) => queueMicrotask(fn),
  };

  turn(): void {
    const due = [...this.timers].filter(([, timer]) => timer.atMs <= this.nowMs).sort(([a, x], [b, y]) => x.atMs - y.atMs || a - b);
    for (const [id, timer] of due) {
      if (!this.timers.delete(id)) continue;
      timer.fire();
    }
  }
}

let time: VirtualTime;
let listener: LinkListener;
let sent: Inbound[];

/** One link, driven by the test: what the client sends lands in `sent`; `deliver` is the node
 * answering. */
const dial: Dial = (_url, _token, linkListener) => {
  listener = linkListener;
  queueMicrotask(() => linkListener.opened());
  return {
    send: (frame) => {
      const decoded = decodeFromClient(frame);
      if (decoded.ok) sent.push(decoded.msg);
    },
    close: () => queueMicrotask(() => linkListener.closed('closed')),
    terminate: () => {},
  };
};

function deliver(message: NodeToClient): void {
  listener.frame(encodeMessage(message));
}

function lastSent<T extends Inbound['t']>(t: T): Extract<Inbound, { t: T }> {
  return sent.filter((m) => m.t === t).at(-1) as Extract<Inbound, { t: T }>;
}

async function open(inflightMax = 100): Promise<KairosClient> {
  const opening = connect({ url: 'fake:', token: 't', transport: dial, runtime: time.runtime, requestTimeoutMs: REQUEST_TIMEOUT_MS, retry: false, onWarning: () => {} });
  await expect.poll(() => sent.some((m) => m.t === 'hello')).toBe(true);
  deliver({ t: 'welcome', version: 1, node: 'fake-1', shardCount: 16, limits: { ...ADVERTISED_LIMITS, inflightMax } });
  const client = await opening;
  deliver({ t: 'cluster_view', rid: lastSent('cluster').rid, node: 'fake-1', members: [], owners: new Uint8Array(32) });
  return client;
}

const job = {
  id: JOB_ID,
  queue: 'q',
  state: 'pending',
  priority: 0,
  runAt: 0,
  scheduledAt: 0,
  attempts: 0,
  attemptsMax: 5,
  idempotencyKey: null,
  lastError: null,
  result: null,
  payload: new Uint8Array(0),
  createdAt: 0,
  updatedAt: 0,
  finishedAt: null,
} as const;

beforeEach(() => {
  time = new VirtualTime();
  sent = [];
});

describe('waking up after the process was stopped', () => {
  it('settles a request with a reply read in the same wake-up as its expired deadline', async () => {
    const client = await open();
    const answer = client.get(JOB_ID).catch((e: unknown) => e);
    const { rid } = lastSent('get');
    // Stopped for longer than the request timeout; the node's reply came meanwhile.
    time.nowMs += REQUEST_TIMEOUT_MS + 5_000;
    time.turn(); // the deadline's timer runs first,
    deliver({ t: 'job', rid, job }); // then the socket is read,
    time.turn(); // then whatever the timer put off.
    await expect(answer).resolves.toMatchObject({ id: JOB_ID });
  });

  it('still times out a request that has no reply waiting', async () => {
    const client = await open();
    const answer = client.get(JOB_ID).catch((e: unknown) => e);
    time.nowMs += REQUEST_TIMEOUT_MS;
    time.turn();
    time.turn();
    const error = await answer;
    expect(error).toBeInstanceOf(RequestTimeoutError);
    expect(error).toMatchObject({ sent: true, timeoutMs: REQUEST_TIMEOUT_MS });
  });
});

describe('waiting for room under inflightMax', () => {
  it('times out a submission that never left as not sent, and lets the ones behind it go', async () => {
    const client = await open(3);
    const payload = new Uint8Array(1);
    void client.submit({ queue: 'q', payload }).catch(() => {}); // in flight, never answered
    const batch = client.submitMany([{ queue: 'q', payload }, { queue: 'q', payload }, { queue: 'q', payload }]);
    time.nowMs += 1_000;
    void client.submit({ queue: 'later', payload }).catch(() => {});
    // 1 + 3 jobs would pass the bound; the later submission queues behind the batch.
    expect(sent.filter((m) => m.t === 'submit' || m.t === 'submit_batch').map((m) => m.t)).toEqual(['submit']);
    time.nowMs += REQUEST_TIMEOUT_MS - 1_000;
    time.turn();
    time.turn();
    const results: SubmitManyResult[] = await batch;
    expect(results).toHaveLength(3);
    for (const result of results) expect(result).toMatchObject({ name: 'RequestTimeoutError', sent: false });
    expect(lastSent('submit').job.queue).toBe('later');
  });
});
