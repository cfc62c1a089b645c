// Virtual time: a priority queue of callbacks ordered by (virtual instant, insertion order).
// The insertion order breaks ties, so two runs that schedule the same things in the same order
// run them in the same order: the root of the simulator's determinism.

import type { Timers, TimerId } from '../node/core/env.ts';

interface Entry {
  atMs: number;
  seq: number;
  fn: () => void;
}

export class EventQueue {
  private heap: Entry[] = [];
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

  get pending(): number {
    return this.heap.length - this.cancelled.size;
  }

  /** Schedules `fn` at now + delay; returns a handle for cancel(). */
  schedule(delayMs: number, fn: () => void): number {
    const entry = { atMs: this.nowMsValue + Math.max(0, delayMs), seq: ++this.seq, fn };
    this.push(entry);
    return entry.seq;
  }

  cancel(handle: number): void {
    if (handle > 0 && handle <= this.seq) this.cancelled.add(handle);
  }

  /** Runs the next event, advancing time to it; false when nothing is left. */
  step(): boolean {
    for (;;) {
      const entry = this.pop();
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
    while (this.heap.length > 0 && this.cancelled.has(this.heap[0]!.seq)) {
      this.cancelled.delete(this.heap[0]!.seq);
      this.pop();
    }
    return this.heap[0]?.atMs ?? null;
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

  private push(entry: Entry): void {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): Entry | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
