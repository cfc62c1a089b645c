// The outbound half of point-to-point messaging with one peer: a long-lived stream carrying
// length-prefixed frames, opened on the first send and reopened after it fails.
//
// Frames sent within one tick go out as one write. Written one by one, each small frame costs
// a yamux frame, a noise seal and a syscall; coalesced, throughput was about 10x (docs/STACK.md).
// The writer waits one `setImmediate` after it is woken, so every send made in the current
// turn of the event loop (the actor runtime drains mailboxes in `setImmediate` callbacks)
// joins the write. While a write is held back by the stream, frames keep accumulating and
// go out together when it frees up.
//
// Delivery is at most once and in order per link. Frames are dropped when the peer cannot be
// dialled, when a stream fails with frames in flight, and when more than PENDING_BYTES_MAX wait
// for a slow peer: the actors above tolerate loss (safety rests on fencing in Postgres; these
// messages decide only liveness and routing), so the link never blocks or buffers without
// bound.

import type { Stream } from '@libp2p/interface';
import * as lp from 'it-length-prefixed';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/env.ts';

/** How long sends to a peer that could not be dialled are dropped before dialling again (a
 * connection from the peer ends it sooner). Without it every send to a dead peer would dial. */
const REDIAL_BACKOFF_MS = 1000;
const PENDING_BYTES_MAX = 8 * 1024 * 1024;

type LinkState = 'idle' | 'opening' | 'open' | 'closed';

export class PeerLink {
  private state: LinkState = 'idle';
  private chunks: Uint8Array[] = [];
  private pendingBytes = 0;
  private pendingFrames = 0;
  /** Bumped whenever a stream is given up, so the writer of an old stream stops. */
  private generation = 0;
  private wake: (() => void) | null = null;
  private unreachableUntilMs = 0;
  /** Frames dropped since the last successful write; only the first of a run is logged. */
  private droppedRun = 0;

  constructor(
    private readonly peer: string,
    private readonly openStream: () => Promise<Stream>,
    private readonly logger: Logger,
  ) {}

  /** Queues one encoded message. Never blocks and never throws. */
  send(frame: Uint8Array): void {
    if (this.state === 'closed') return;
    if (this.state === 'idle' && performance.now() < this.unreachableUntilMs) return this.drop('unreachable', 1);
    if (this.pendingBytes + frame.byteLength > PENDING_BYTES_MAX) return this.drop('backlog_full', 1);
    for (const chunk of lp.encode.single(frame)) {
      this.chunks.push(chunk);
      this.pendingBytes += chunk.byteLength;
    }
    this.pendingFrames++;
    if (this.state === 'idle') this.open();
    else this.wake?.();
  }

  /** The peer has connected: it is worth dialling again at once. */
  reachable(): void {
    this.unreachableUntilMs = 0;
  }

  close(): void {
    this.state = 'closed';
    this.generation++;
    this.wake?.();
    this.discard();
  }

  private open(): void {
    this.state = 'opening';
    const generation = ++this.generation;
    this.openStream().then(
      (stream) => {
        if (generation !== this.generation) return stream.abort(new Error('link closed'));
        this.state = 'open';
        const ended = (error: unknown) => this.ended(generation, error);
        stream.sink(this.writes(generation)).then(() => ended(null), ended);
        // The peer never writes. Its half ends when the stream is reset or its connection
        // closes, which the sink would not notice while it waits for frames to write.
        drain(stream.source).then(() => ended(null), ended);
      },
      (error: unknown) => {
        if (generation !== this.generation) return;
        this.state = 'idle';
        this.unreachableUntilMs = performance.now() + REDIAL_BACKOFF_MS;
        this.logger.log('debug', 'peer_dial_failed', { peer: this.peer, error: String(error) });
        this.drop('unreachable', this.discard());
      },
    );
  }

  /** What the stream writes: everything pending, one chunk per tick. */
  private async *writes(generation: number): AsyncGenerator<Uint8Array> {
    while (generation === this.generation) {
      if (this.pendingBytes === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      const write = Buffer.concat(this.chunks, this.pendingBytes);
      this.chunks = [];
      this.pendingBytes = 0;
      this.pendingFrames = 0;
      this.droppedRun = 0;
      yield write;
    }
  }

  /** The stream is gone (reset, or its connection closed). Wake the writer so it stops, and
   * reopen the stream if anything is waiting; otherwise the next send does. */
  private ended(generation: number, error: unknown): void {
    if (generation !== this.generation) return;
    this.generation++;
    this.wake?.();
    this.state = 'idle';
    this.logger.log('debug', 'peer_stream_ended', { peer: this.peer, error: String(error) });
    if (this.pendingBytes > 0) this.open();
  }

  /** Empties the queue and says how many frames it held. */
  private discard(): number {
    const frames = this.pendingFrames;
    this.chunks = [];
    this.pendingBytes = 0;
    this.pendingFrames = 0;
    return frames;
  }

  private drop(reason: 'unreachable' | 'backlog_full', frames: number): void {
    if (frames === 0) return;
    if (this.droppedRun === 0) this.logger.log('debug', 'peer_frames_dropped', { peer: this.peer, reason, frames });
    this.droppedRun += frames;
  }
}

async function drain(source: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of source);
}
