// A binary min-heap under a caller's ordering. Used for ready queues (priority, then run_at)
// and delayed jobs (run_at), where a sorted array would cost O(n) per insertion.

export class Heap<T> {
  private items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Removes every item matching `predicate` (O(n)); for rare operations such as cancel. */
  removeWhere(predicate: (item: T) => boolean): number {
    const kept = this.items.filter((item) => !predicate(item));
    const removed = this.items.length - kept.length;
    if (removed > 0) {
      this.items = kept;
      for (let i = (kept.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
    }
    return removed;
  }

  values(): readonly T[] {
    return this.items;
  }

  private siftDown(start: number): void {
    const items = this.items;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && this.before(items[l]!, items[m]!)) m = l;
      if (r < items.length && this.before(items[r]!, items[m]!)) m = r;
      if (m === i) return;
      [items[i], items[m]] = [items[m]!, items[i]!];
      i = m;
    }
  }
}
