// Reads of the store that race with the owner's own writes.
//
// An owner reads its shard's jobs while it serves: a page-in (pending jobs it left in the
// store) and a fetch (one job, for a cancel, requeue or subscription). A read returns rows as
// they were when it ran. Only this owner writes its shard's jobs, and only jobs it holds in
// memory, so a row can be out of date only if its job was in memory after the read began, was
// written, and left memory again before the read answered (finished and evicted, or spilled
// back to the store). A row of such a job, at a version older than the one that left, must not
// come back: a finished job would run again, its lease sent before its write failed.
//
// So while reads are in flight, the owner notes each job that leaves memory with its version,
// in order; a read remembers where the log stood when it began, and a row is stale when its job
// left after that at a higher version. Entries older than every read in flight are dropped, so
// the log holds only what left during the longest read in flight, and at most `max` entries:
// past that, the oldest are dropped and a read that began before them is "blind": all its rows
// are suspect, and the owner drops the read and reads again.

export type ReadMark = number;

export class StaleReads {
  private seq = 0;
  /** Job id → the version it left memory at and when; insertion order is `seq` order. */
  private readonly left = new Map<string, { version: number; seq: number }>();
  /** The marks of the reads in flight, with counts. */
  private readonly reads = new Map<ReadMark, number>();
  /** Departures at or before this mark were dropped from the log. */
  private forgottenTo = 0;

  constructor(private readonly max: number) {}

  /** A read begins; pass its mark to `isStale` and `end`. */
  begin(): ReadMark {
    const mark = this.seq;
    this.reads.set(mark, (this.reads.get(mark) ?? 0) + 1);
    return mark;
  }

  end(mark: ReadMark): void {
    const n = (this.reads.get(mark) ?? 1) - 1;
    if (n > 0) this.reads.set(mark, n);
    else this.reads.delete(mark);
    this.prune();
  }

  /** A job left memory at `version`. */
  jobLeft(id: string, version: number): void {
    if (this.reads.size === 0) return;
    this.left.delete(id);
    this.left.set(id, { version, seq: ++this.seq });
    while (this.left.size > this.max) {
      const [oldest, { seq }] = this.left.entries().next().value!;
      this.left.delete(oldest);
      this.forgottenTo = seq;
    }
  }

  /** Whether a read begun at `mark` can no longer tell stale rows (see above). */
  isBlind(mark: ReadMark): boolean {
    return mark < this.forgottenTo;
  }

  /** Whether a row read under `mark` is older than its job as it left memory since. */
  isStale(mark: ReadMark, id: string, version: number): boolean {
    const left = this.left.get(id);
    return left !== undefined && left.seq > mark && left.version > version;
  }

  private prune(): void {
    if (this.reads.size === 0) {
      this.left.clear();
      return;
    }
    // A read begins at the current mark, which only grows: the map's first key is the oldest.
    const oldestRead = this.reads.keys().next().value!;
    for (const [id, { seq }] of this.left) {
      if (seq > oldestRead) break;
      this.left.delete(id);
    }
  }
}
