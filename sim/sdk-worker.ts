// The real SDK's worker inside the simulator: `connect()` and `client.worker()` from
// protocol/sdk, given a transport over a simulated link and a runtime on virtual time and a
// seeded random source, so its credit, heartbeats, revocations, reconnects and re-sends run
// under the simulator's faults and replay exactly. Frames go through the real codec both ways.
//
// The checkers watch the frames at the link: a `complete` or `fail` acknowledged with `ack` is
// an outcome the worker was told was recorded.

import { encodeMessage } from '../protocol/codec.ts';
import { connect, DownstreamError, NonRetryableError, type JobContext, type KairosClient } from '../protocol/sdk/index.ts';
import type { SdkRuntime } from '../protocol/sdk/runtime.ts';
import type { Dial, Link } from '../protocol/sdk/transport.ts';
import { decodeFromClient } from '../protocol/validate.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Checkers } from './checkers.ts';
import type { EventQueue } from './event-queue.ts';
import type { Dialer, Downstream } from './workload.ts';
import { BEHAVIOURS } from './workload.ts';

export function simRuntime(queue: EventQueue, random: SeededRandom): SdkRuntime {
  return {
    clock: { monotonicMs: () => queue.nowMs },
    timers: {
      setTimer: (delayMs, fire) => queue.schedule(delayMs, fire),
      cancelTimer: (id) => queue.cancel(id as number),
    },
    random,
    uuid: () => Array.from({ length: 4 }, () => random.nextUint32().toString(16).padStart(8, '0')).join('-'),
    defer: (fn) => void queue.schedule(0, fn),
  };
}

/** A Dial over simulated links: `dialerFor` maps a node's client URL (`sim://n1`) to a link
 * to it, so the SDK fails over to the nodes it learns of as it would over WebSocket. */
function simDial(dialerFor: (url: string) => Dialer, queue: EventQueue, checkers: Checkers): Dial {
  return (url, _token, listener) => {
    const dialer = dialerFor(url);
    const verdicts = new Map<number, { jobId: string; attempt: number; kind: 'complete' | 'fail' }>();
    const link = dialer({
      onMessage: (message) => {
        if (message.t === 'ack' && message.rid !== null) {
          const verdict = verdicts.get(message.rid);
          if (verdict !== undefined) checkers.verdictAcked(verdict.jobId, verdict.attempt, verdict.kind);
        }
        // The node's frame goes through the real codec, as over a socket.
        listener.frame(encodeMessage(message));
      },
      onClose: () => listener.closed('simulated link closed'),
    });
    if (link === null) {
      queue.schedule(0, () => listener.closed('node unreachable'));
    } else {
      // The upgrade is authenticated at once: the simulated gateway trusts the dialer.
      queue.schedule(0, () => listener.opened());
    }
    const handle: Link = {
      send: (frame) => {
        const decoded = decodeFromClient(frame);
        if (!decoded.ok || link === null) return;
        const msg = decoded.msg;
        if ((msg.t === 'complete' || msg.t === 'fail') && msg.rid !== undefined) {
          verdicts.set(msg.rid, { jobId: msg.token.jobId, attempt: msg.token.attempt, kind: msg.t });
        }
        link.send(msg);
      },
      close: () => link?.disconnect(),
      terminate: () => link?.disconnect(),
    };
    return handle;
  };
}

/** Starts an SDK worker for both simulated queues, first connected to `url`; its handlers
 * follow the payload's behaviour. With `downstream` (of this worker's tenant), it also works its
 * queue, whose handler calls it and throws DownstreamError while it is down. */
export function startSdkWorker(
  url: string,
  dialerFor: (url: string) => Dialer,
  queue: EventQueue,
  random: SeededRandom,
  checkers: Checkers,
  slots: number,
  downstream: Downstream | null = null,
): void {
  const runtime = simRuntime(queue, random);
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const id = runtime.timers.setTimer(ms, resolve);
      signal.addEventListener('abort', () => {
        runtime.timers.cancelTimer(id);
        resolve();
      });
    });
  const handler = async (ctx: JobContext): Promise<undefined> => {
    checkers.handlerStarted(ctx.jobId);
    const behaviour = BEHAVIOURS[ctx.payload[0]!] ?? 'succeed';
    // The SDK heartbeats for its handlers, so a slow handler keeps its lease: 'hang' and
    // 'zombie' are, for this worker, just long.
    const long = behaviour === 'long' || ((behaviour === 'hang' || behaviour === 'zombie') && ctx.attempt === 1);
    await sleep(long ? 5_000 : 1 + random.int(20), ctx.signal);
    if (behaviour === 'fail') throw new Error(`fail on attempt ${ctx.attempt}`);
    if (behaviour === 'fail_fatal') throw new NonRetryableError(`fail_fatal on attempt ${ctx.attempt}`);
    return undefined;
  };
  const callDownstream = async (ctx: JobContext): Promise<undefined> => {
    checkers.handlerStarted(ctx.jobId);
    await sleep(1 + random.int(20), ctx.signal);
    if (downstream!.down) throw new DownstreamError('downstream unavailable');
    return undefined;
  };
  void connect({
    url,
    token: 'workers',
    client: 'sim-sdk-worker',
    transport: simDial(dialerFor, queue, checkers),
    runtime,
    reconnect: { initialDelayMs: 100, maxDelayMs: 2_000 },
    onWarning: () => {},
  }).then(
    (client: KairosClient) => {
      for (const name of ['q0', 'q1']) client.worker(name, handler, { concurrency: slots, onError: () => {} });
      if (downstream !== null) client.worker(downstream.queue, callDownstream, { concurrency: slots, onError: () => {} });
    },
    // The first dial found no node: the worker process starts again a little later.
    () => void queue.schedule(500, () => startSdkWorker(url, dialerFor, queue, random, checkers, slots, downstream)),
  );
}
