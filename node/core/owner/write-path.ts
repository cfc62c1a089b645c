// A shard owner's write path: the writes it stages in one turn go to the committer as one
// request, on a flush message of the owner's own (behind the messages already queued), and
// each write's outcome comes back to the callback it was staged with. The owner applies a
// write's effects only in that callback, so nothing in memory runs ahead of the store.

import type { ActorContext, ActorRef } from '../actor/runtime.ts';
import type { CommitReply, CommitterMsg } from '../commit/committer.ts';
import type { JobWrite, WriteOutcome } from '../store.ts';
import type { OwnerMsg } from './owner-messages.ts';
import { buggify } from '../test-hooks.ts';

/** A write that was not applied (`unknown`: or may have been: the store did not confirm). */
export type Aborted = { ok: false; reason: 'aborted'; unknown: boolean };
type Staged = { write: JobWrite; done: (outcome: WriteOutcome | Aborted) => void };

export const ABORTED: Aborted = { ok: false, reason: 'aborted', unknown: false };
const UNKNOWN: Aborted = { ok: false, reason: 'aborted', unknown: true };

export class WritePath {
  private staged: Staged[] = [];
  private readonly inFlight = new Map<number, Staged[]>();
  private inFlightWrites = 0;
  private batchSeq = 0;
  private flushQueued = false;

  constructor(
    private readonly shard: number,
    private readonly epoch: number,
    private readonly committer: ActorRef<CommitterMsg>,
  ) {}

  /** Writes staged or in flight. */
  get uncommitted(): number {
    return this.staged.length + this.inFlightWrites;
  }

  get stagedCount(): number {
    return this.staged.length;
  }

  /** Nothing staged and nothing in flight. */
  get idle(): boolean {
    return this.inFlight.size === 0 && this.staged.length === 0;
  }

  stage(write: JobWrite, ctx: ActorContext<OwnerMsg>, done: Staged['done']): void {
    this.staged.push({ write, done });
    // Flush on a message of our own, behind the ones already queued, so that everything
    // decided in this turn goes to the committer as one request.
    if (!this.flushQueued) {
      this.flushQueued = true;
      ctx.self.tell({ kind: 'flush' });
    }
  }

  /** The owner's flush message arrived. */
  flushArrived(): void {
    this.flushQueued = false;
  }

  /** Sends what is staged. `serving`: the owner still takes work (a late flush may be
   * simulated then). */
  flush(ctx: ActorContext<OwnerMsg>, serving: boolean): void {
    if (this.staged.length === 0) return;
    if (serving && buggify(ctx.env.testHooks, 'owner.delay_flush')) {
      // A late flush: writes wait longer and batches grow, as under a busy committer.
      ctx.startTimer('late_flush', 5, { kind: 'flush' });
      return;
    }
    const staged = this.staged;
    this.staged = [];
    const batch = ++this.batchSeq;
    this.inFlight.set(batch, staged);
    this.inFlightWrites += staged.length;
    const self = ctx.self;
    this.committer.tell({
      kind: 'commit',
      request: {
        shard: this.shard,
        epoch: this.epoch,
        writes: staged.map((s) => s.write),
        done: (reply) => self.tell({ kind: 'commit_done', batch, reply }),
      },
    });
  }

  /** Answers every staged write as aborted. */
  abortStaged(): void {
    const staged = this.staged;
    this.staged = [];
    for (const s of staged) s.done(ABORTED);
  }

  /** A batch's reply: each write hears its outcome. A refused batch calls `refused` first (the
   * owner drains), then its writes hear they were aborted, or may have been applied. */
  committed(batch: number, reply: CommitReply, refused: (status: Exclude<CommitReply['status'], 'committed'>) => void): void {
    const staged = this.inFlight.get(batch);
    if (staged === undefined) return;
    this.inFlight.delete(batch);
    this.inFlightWrites -= staged.length;
    if (reply.status === 'committed') {
      staged.forEach((s, i) => s.done(reply.outcomes[i]!));
    } else {
      refused(reply.status);
      for (const s of staged) s.done(reply.status === 'stale_epoch' ? ABORTED : UNKNOWN);
    }
  }

  invariants(): void {
    if (this.inFlightWrites < 0) throw new Error('owner: negative in-flight writes');
  }
}
