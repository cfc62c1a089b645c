// A shard owner's in-memory queues: per lane (a tenant's queue, see job/lane.ts), the jobs
// that may run now (highest priority first, then earliest run_at, then id for a total order),
// and one timer index of jobs waiting for their run_at (a min-heap, and a max-heap of the same
// items so that the owner can keep only the earliest ones). The owner bounds the two apart
// (see enqueue in paging.ts). Removal is lazy: an entry carries the place it is queued in and a
// generation bumped on every (re)queueing; a popped item whose entry moved on since (cancelled,
// leased, requeued after a retry) is skipped.

import type { Job } from '../job/job.ts';
import { jobLane } from '../job/lane.ts';
import { Heap } from '../util/heap.ts';

export interface Queued {
  job: Job;
  place: 'ready' | 'delayed' | 'none';
  queueGen: number;
}

/** A heap item: the entry and the generation it was queued under. */
interface Item<E> {
  entry: E;
  gen: number;
}

function readyBefore(a: Item<Queued>, b: Item<Queued>): boolean {
  const x = a.entry.job;
  const y = b.entry.job;
  if (x.priority !== y.priority) return x.priority > y.priority;
  if (x.runAtMs !== y.runAtMs) return x.runAtMs < y.runAtMs;
  return x.id < y.id;
}

function delayedBefore(a: Item<Queued>, b: Item<Queued>): boolean {
  const x = a.entry.job;
  const y = b.entry.job;
  return x.runAtMs < y.runAtMs || (x.runAtMs === y.runAtMs && x.id < y.id);
}

function delayedAfter(a: Item<Queued>, b: Item<Queued>): boolean {
  return delayedBefore(b, a);
}

function live<E extends Queued>(item: Item<E>, place: Queued['place']): boolean {
  return item.entry.place === place && item.entry.queueGen === item.gen;
}

export class ReadyQueues<E extends Queued> {
  private readonly ready = new Map<string, Heap<Item<E>>>();
  private readonly readyCount = new Map<string, number>();
  private readyTotal = 0;
  private readonly delayed = new Heap<Item<E>>(delayedBefore);
  private readonly delayedLatest = new Heap<Item<E>>(delayedAfter);
  private delayedCount = 0;
  /** Delayed jobs per lane, for the node's gauges. */
  private readonly delayedByLane = new Map<string, number>();

  /** Queues a pending job: ready if due at `nowMs`, else delayed. Returns which. */
  add(entry: E, nowMs: number): 'ready' | 'delayed' {
    if (entry.place !== 'none') throw new Error(`ready-queue: ${entry.job.id} is already ${entry.place}`);
    const item = { entry, gen: ++entry.queueGen };
    if (entry.job.runAtMs <= nowMs) {
      entry.place = 'ready';
      const lane = jobLane(entry.job);
      let heap = this.ready.get(lane);
      if (heap === undefined) {
        heap = new Heap<Item<E>>(readyBefore);
        this.ready.set(lane, heap);
      }
      heap.push(item);
      this.readyCount.set(lane, this.readyOf(lane) + 1);
      this.readyTotal++;
    } else {
      entry.place = 'delayed';
      this.delayed.push(item);
      this.delayedLatest.push(item);
      this.delayedCount++;
      const lane = jobLane(entry.job);
      this.delayedByLane.set(lane, (this.delayedByLane.get(lane) ?? 0) + 1);
      // The max-heap is consulted only when the index is full, so its stale items (jobs taken
      // out since) seldom surface: rebuild it when mostly stale (amortised O(log n) a push).
      if (this.delayedLatest.size > 2 * this.delayedCount + 64) this.rebuildLatest();
    }
    return entry.place;
  }

  /** Takes an entry out of whichever queue holds it (lazily). */
  remove(entry: E): void {
    if (entry.place === 'ready') {
      this.readyCount.set(jobLane(entry.job), this.readyOf(jobLane(entry.job)) - 1);
      this.readyTotal--;
    }
    if (entry.place === 'delayed') {
      this.delayedCount--;
      const lane = jobLane(entry.job);
      const left = this.delayedByLane.get(lane)! - 1;
      if (left > 0) this.delayedByLane.set(lane, left);
      else this.delayedByLane.delete(lane);
    }
    entry.place = 'none';
  }

  /** The best ready job of `lane`, removed; undefined when none. */
  take(lane: string): E | undefined {
    const heap = this.ready.get(lane);
    if (heap === undefined) return undefined;
    for (let item = heap.pop(); item !== undefined; item = heap.pop()) {
      if (!live(item, 'ready')) continue;
      this.remove(item.entry);
      return item.entry;
    }
    return undefined;
  }

  /** The ready job of `lane` that would run last among those `movable` allows, removed;
   * undefined when none. O(n) in the lane: for making room when the queues are full. */
  takeLast(lane: string, movable: (entry: E) => boolean): E | undefined {
    let last: Item<E> | undefined;
    for (const item of this.ready.get(lane)?.values() ?? []) {
      if (!live(item, 'ready') || !movable(item.entry)) continue;
      if (last === undefined || readyBefore(last, item)) last = item;
    }
    if (last === undefined) return undefined;
    this.remove(last.entry);
    return last.entry;
  }

  /** The lane holding the most ready jobs, or undefined when none holds any. */
  largestLane(): string | undefined {
    let largest: string | undefined;
    for (const [lane, n] of this.readyCount) if (n > 0 && (largest === undefined || n > this.readyOf(largest))) largest = lane;
    return largest;
  }

  /** Takes the delayed jobs that are due out of the timer index, earliest first, for the owner
   * to queue again (as ready, or to the store when the ready queues are full). */
  takeDue(nowMs: number): E[] {
    const due: E[] = [];
    for (let top = this.delayed.peek(); top !== undefined; top = this.delayed.peek()) {
      if (!live(top, 'delayed')) {
        this.delayed.pop();
        continue;
      }
      if (top.entry.job.runAtMs > nowMs) break;
      this.delayed.pop();
      this.remove(top.entry);
      due.push(top.entry);
    }
    return due;
  }

  /** The delayed job due last, or undefined. */
  latestDelayed(): E | undefined {
    for (let top = this.delayedLatest.peek(); top !== undefined; top = this.delayedLatest.peek()) {
      if (live(top, 'delayed')) return top.entry;
      this.delayedLatest.pop();
    }
    return undefined;
  }

  private rebuildLatest(): void {
    const items: Array<Item<E>> = [];
    for (let item = this.delayedLatest.pop(); item !== undefined; item = this.delayedLatest.pop()) {
      if (live(item, 'delayed')) items.push(item);
    }
    for (const item of items) this.delayedLatest.push(item);
  }

  /** run_at of the earliest delayed job, or null. */
  nextDueMs(): number | null {
    for (let top = this.delayed.peek(); top !== undefined; top = this.delayed.peek()) {
      if (live(top, 'delayed')) return top.entry.job.runAtMs;
      this.delayed.pop();
    }
    return null;
  }

  /** Priority of the best ready job of `lane`, or null when none is ready. */
  topPriority(lane: string): number | null {
    const heap = this.ready.get(lane);
    if (heap === undefined) return null;
    for (let top = heap.peek(); top !== undefined; top = heap.peek()) {
      if (live(top, 'ready')) return top.entry.job.priority;
      heap.pop();
    }
    return null;
  }

  readyOf(lane: string): number {
    return this.readyCount.get(lane) ?? 0;
  }

  /** Ready and delayed jobs held per lane, of the lanes that hold any. */
  *laneCounts(): Generator<[lane: string, ready: number, delayed: number]> {
    for (const [lane, ready] of this.readyCount) if (ready > 0) yield [lane, ready, this.delayedByLane.get(lane) ?? 0];
    for (const [lane, delayed] of this.delayedByLane) if (this.readyOf(lane) === 0) yield [lane, 0, delayed];
  }

  queuesWithReady(): string[] {
    return [...this.readyCount].filter(([, n]) => n > 0).map(([q]) => q);
  }

  /** Ready jobs held, of every lane. */
  get readySize(): number {
    return this.readyTotal;
  }

  /** Delayed jobs held. */
  get delayedSize(): number {
    return this.delayedCount;
  }
}
