// The actor runtime on virtual time: one message at a time, effects come back as messages,
// timers are keyed and cancellable, a stopped actor receives nothing more.

import { describe, expect, it } from 'vitest';
import { ActorSystem, type Actor, type ActorContext } from '../../node/core/actor/runtime.ts';
import type { Env } from '../../node/core/env.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { NO_METRICS } from '../../node/core/metrics.ts';
import { EventQueue } from '../../sim/event-queue.ts';

function testEnv(queue: EventQueue): Env {
  return {
    nodeId: 'n1',
    clock: { monotonicMs: () => queue.nowMs, wallMs: () => queue.nowMs },
    timers: queue.timers(),
    random: new SeededRandom(1),
    logger: { log() {} },
    store: undefined as never,
    network: { send() {}, publish() {} },
    calendar: undefined as never,
    metrics: NO_METRICS,
  };
}

/** Runs events and lets promise callbacks settle between them, as the simulator does. */
async function runAll(queue: EventQueue): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setImmediate(resolve));
    if (!queue.step()) {
      await new Promise((resolve) => setImmediate(resolve));
      if (queue.peekMs() === null) return;
    }
  }
}

type Msg = { kind: 'add'; n: number } | { kind: 'tick' } | { kind: 'loaded'; value: number } | { kind: 'failed'; error: string };

class Counter implements Actor<Msg> {
  log: string[] = [];
  total = 0;
  inHandler = false;
  receive(msg: Msg, ctx: ActorContext<Msg>): void {
    expect(this.inHandler).toBe(false);
    this.inHandler = true;
    switch (msg.kind) {
      case 'add':
        this.total += msg.n;
        if (msg.n === 10) ctx.pipe(async () => 5, (value) => ({ kind: 'loaded', value }), (e) => ({ kind: 'failed', error: String(e) }));
        if (msg.n === 20) ctx.pipe(() => { throw new Error('sync boom'); }, (value: number) => ({ kind: 'loaded', value }), (e) => ({ kind: 'failed', error: String(e) }));
        break;
      case 'tick':
        this.log.push(`tick@${ctx.env.clock.monotonicMs()}`);
        break;
      case 'loaded':
        this.log.push(`loaded ${msg.value}`);
        break;
      case 'failed':
        this.log.push(`failed ${msg.error}`);
        break;
    }
    this.inHandler = false;
  }
}

describe('actor runtime', () => {
  it('delivers messages in order, one at a time, and pipes effect results back as messages', async () => {
    const queue = new EventQueue();
    const system = new ActorSystem(testEnv(queue));
    const counter = new Counter();
    const ref = system.spawn('counter', counter);
    for (let i = 1; i <= 1_000; i++) ref.tell({ kind: 'add', n: 1 });
    ref.tell({ kind: 'add', n: 10 });
    ref.tell({ kind: 'add', n: 20 });
    await runAll(queue);
    expect(counter.total).toBe(1_030);
    expect(counter.log).toEqual(['loaded 5', 'failed Error: sync boom']);
  });

  it('keyed timers fire at their virtual instant, restart replaces, cancel prevents', async () => {
    const queue = new EventQueue(1_000);
    const system = new ActorSystem(testEnv(queue));
    const counter = new Counter();
    let ctxRef: ActorContext<Msg> | null = null;
    const ref = system.spawn<Msg>('timers', {
      receive(msg, ctx) {
        ctxRef = ctx;
        counter.receive(msg, ctx);
      },
    });
    ref.tell({ kind: 'add', n: 0 });
    await runAll(queue);
    const ctx = ctxRef!;
    ctx.startTimer('a', 50, { kind: 'tick' });
    ctx.startTimer('a', 70, { kind: 'tick' });
    ctx.startTimer('b', 30, { kind: 'tick' });
    ctx.cancelTimer('b');
    expect(ctx.hasTimer('a')).toBe(true);
    expect(ctx.hasTimer('b')).toBe(false);
    await runAll(queue);
    expect(counter.log).toEqual(['tick@1070']);
    expect(ctx.hasTimer('a')).toBe(false);
  });

  it('a stopped actor drops its mailbox, timers and late effect results', async () => {
    const queue = new EventQueue();
    const system = new ActorSystem(testEnv(queue));
    const counter = new Counter();
    let stopped = 0;
    const ref = system.spawn<Msg>('stopper', {
      receive(msg, ctx) {
        counter.receive(msg, ctx);
        if (msg.kind === 'add' && msg.n === 10) {
          ctx.startTimer('t', 10, { kind: 'tick' });
          ctx.stop();
        }
      },
      stopped() {
        stopped++;
      },
    });
    ref.tell({ kind: 'add', n: 10 });
    ref.tell({ kind: 'add', n: 1 });
    await runAll(queue);
    expect(ref.alive).toBe(false);
    expect(stopped).toBe(1);
    expect(counter.total).toBe(10);
    expect(counter.log).toEqual([]);
    expect(system.size).toBe(0);
  });

  it('checks invariants after every message and lets a broken one crash', async () => {
    const queue = new EventQueue();
    const system = new ActorSystem(testEnv(queue));
    let n = 0;
    const ref = system.spawn<Msg>('bad', {
      receive() { n++; },
      invariants() { if (n > 2) throw new Error('invariant: n <= 2'); },
    });
    for (let i = 0; i < 3; i++) ref.tell({ kind: 'tick' });
    expect(() => { while (queue.step()); }).toThrow('invariant: n <= 2');
  });
});
