// Attempt outcomes per lane, counted by every owner of a node as its attempts end, and taken by
// the node's board (breaker-board.ts) a few times a second to be reported to the owners that
// decide the lanes' breakers. A plain object shared by the actors of one node rather than a
// message per attempt: counting must cost an attempt next to nothing, and every actor of a node
// runs on one thread, as the dispatcher's takeIdleWorker does.

/** Lanes counted between two reports, at most: outcomes of more are not counted. */
export const TALLY_LANES_MAX = 10_000;

export class BreakerTally {
  private counts = new Map<string, [successes: number, failures: number, abandoned: number]>();

  /** `firstSinceTaken` is called when the tally goes from empty to not, so that the board
   * arms one timer per report, not one per attempt. */
  constructor(private readonly firstSinceTaken: () => void) {}

  /** `abandoned`: the attempt ended with no verdict (its lease given back, its worker gone). */
  record(lane: string, outcome: 'succeeded' | 'failed' | 'abandoned'): void {
    let count = this.counts.get(lane);
    if (count === undefined) {
      if (this.counts.size >= TALLY_LANES_MAX) return;
      if (this.counts.size === 0) this.firstSinceTaken();
      this.counts.set(lane, (count = [0, 0, 0]));
    }
    count[outcome === 'succeeded' ? 0 : outcome === 'failed' ? 1 : 2]++;
  }

  /** The counts since the last call, which start again from nothing. */
  take(): Map<string, [successes: number, failures: number, abandoned: number]> {
    const counts = this.counts;
    this.counts = new Map();
    return counts;
  }
}
