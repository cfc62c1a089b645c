// Virtual time: a priority queue of callbacks ordered by (virtual instant, insertion order).
// The insertion order breaks ties, so two runs that schedule the same things in the same order
// run them in the same order: the root of the simulator's determinism.

import type { Timers, TimerId } from '../node/core/env.ts';
import { Heap } from '../node/core/util/heap.ts';

interface Entry {
  atMs: number;
  seq: number;
  fn: () => void;
}

export class EventQueue {
  private readonly heap = new Heap<Entry>(before);
  private seq = 0;
  private readonly cancelled = new Set<number>();
  private nowMsValue = 0;
  /** Callbacks run so far: the simulator reports it as its event count. */
  eventsRun = 0;

  constructor(startMs = 0) {
    this.nowMsValue = startMs;
  }

  get nowMs(): number {
    return this.nowMsValue;
  }

  /** Schedules `fn` at now + delay; returns a handle for cancel(). */
  schedule(delayMs: number, fn: () => void): number {
    const entry = { atMs: this.nowMsValue + Math.max(0, delayMs), seq: ++this.seq, fn };
    this.heap.push(entry);
    return entry.seq;
  }

  cancel(handle: number): void {
    if (handle > 0 && handle <= this.seq) this.cancelled.add(handle);
  }

  /** Runs the next event, advancing time to it; false when nothing is left. */
  step(): boolean {
    for (;;) {
      const entry = this.heap.pop();
      if (entry === undefined) return false;
      if (this.cancelled.delete(entry.seq)) continue;
      this.nowMsValue = entry.atMs;
      this.eventsRun++;
      entry.fn();
      return true;
    }
  }

  /** Instant of the next live event, or null. */
  peekMs(): number | null {
    for (let top = this.heap.peek(); top !== undefined && this.cancelled.has(top.seq); top = this.heap.peek()) {
      this.cancelled.delete(top.seq);
      this.heap.pop();
    }
    return this.heap.peek()?.atMs ?? null;
  }

  /** Moves time forward to `atMs` without running anything (used when the queue is idle). */
  advanceTo(atMs: number): void {
    if (atMs > this.nowMsValue) this.nowMsValue = atMs;
  }

  /** The Timers of the environment, bound to this queue. */
  timers(): Timers {
    return {
      setTimer: (delayMs, fire): TimerId => this.schedule(delayMs, fire),
      cancelTimer: (id) => this.cancel(id),
      defer: (fn) => void this.schedule(0, fn),
    };
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
