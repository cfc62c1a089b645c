// Group commit for the whole node. Shard owners send their writes here; the committer merges
// the requests of all shards into one fenced store transaction and sends it as soon as a
// connection is free. Under load requests pile up while batches are in flight, so batches grow
// and round trips per job fall; when idle a request goes out at once, so latency stays low.
// There is no fixed wait (docs/DESIGN.md, "Throughput").

import type { Actor, ActorContext } from '../actor/runtime.ts';
import type { CommitResult, JobWrite, ShardLease, WriteOutcome } from '../store.ts';
import { buggify } from '../test-hooks.ts';

export type CommitReply =
  | { status: 'committed'; outcomes: WriteOutcome[] }
  /** The shard's epoch moved on: this owner is deposed and nothing of the request was written. */
  | { status: 'stale_epoch' }
  /** The store failed; whether the request was written is unknown. */
  | { status: 'unavailable'; error: string };

export interface CommitRequest {
  shard: number;
  epoch: number;
  writes: JobWrite[];
  done: (reply: CommitReply) => void;
}

export type CommitterMsg =
  | { kind: 'commit'; request: CommitRequest }
  | { kind: 'flush' }
  | { kind: 'batch_done'; requests: CommitRequest[]; result: CommitResult }
  | { kind: 'batch_failed'; requests: CommitRequest[]; error: unknown };

export interface CommitterConfig {
  /** Transactions in flight at once; keep below the store's pool size. */
  inFlightMax: number;
  /** Writes per transaction, so one transaction stays short. */
  batchWritesMax: number;
}

export class Committer implements Actor<CommitterMsg> {
  private queued: CommitRequest[] = [];
  private inFlight = 0;
  private flushQueued = false;

  constructor(private readonly config: CommitterConfig) {}

  receive(msg: CommitterMsg, ctx: ActorContext<CommitterMsg>): void {
    switch (msg.kind) {
      case 'commit':
        this.queued.push(msg.request);
        // Flush on a message of our own, queued behind whatever is already in the mailbox, so
        // every request that arrived in this turn joins the same batch.
        if (!this.flushQueued) {
          this.flushQueued = true;
          ctx.self.tell({ kind: 'flush' });
        }
        return;
      case 'flush':
        this.flushQueued = false;
        this.sendBatches(ctx);
        return;
      case 'batch_done':
        this.inFlight--;
        this.settle(msg.requests, msg.result);
        this.sendBatches(ctx);
        return;
      case 'batch_failed':
        this.inFlight--;
        for (const request of msg.requests) request.done({ status: 'unavailable', error: String(msg.error) });
        this.sendBatches(ctx);
        return;
    }
  }

  invariants(): void {
    if (this.inFlight < 0 || this.inFlight > this.config.inFlightMax) throw new Error(`committer: inFlight ${this.inFlight}`);
  }

  private sendBatches(ctx: ActorContext<CommitterMsg>): void {
    while (this.inFlight < this.config.inFlightMax && this.queued.length > 0) {
      const requests = this.takeBatch(buggify(ctx.env.testHooks, 'committer.small_batches') ? 1 : Infinity);
      const shards: ShardLease[] = [];
      const writes: JobWrite[] = [];
      for (const request of requests) {
        if (!shards.some((s) => s.shard === request.shard)) shards.push({ shard: request.shard, epoch: request.epoch });
        for (const write of request.writes) writes.push(write);
      }
      this.inFlight++;
      const sentAtMs = ctx.env.clock.monotonicMs();
      ctx.env.metrics.observe('commit_batch_writes', writes.length);
      ctx.pipe(
        () => ctx.env.store.commit({ shards, writes }),
        (result) => {
          ctx.env.metrics.observe('commit_duration_seconds', (ctx.env.clock.monotonicMs() - sentAtMs) / 1_000);
          return { kind: 'batch_done', requests, result };
        },
        (error) => ({ kind: 'batch_failed', requests, error }),
      );
    }
  }

  /** Takes queued requests up to the write limit. Two requests for one shard under different
   * epochs (a deposed owner's last words and its successor's first) cannot share a batch:
   * the later one waits for the next. */
  private takeBatch(requestsMax: number): CommitRequest[] {
    const taken: CommitRequest[] = [];
    const left: CommitRequest[] = [];
    const epochs = new Map<number, number>();
    let writes = 0;
    for (const request of this.queued) {
      const epoch = epochs.get(request.shard);
      const fits = taken.length === 0 || (taken.length < requestsMax && writes + request.writes.length <= this.config.batchWritesMax);
      if (fits && (epoch === undefined || epoch === request.epoch)) {
        taken.push(request);
        epochs.set(request.shard, request.epoch);
        writes += request.writes.length;
      } else {
        left.push(request);
      }
    }
    this.queued = left;
    return taken;
  }

  private settle(requests: CommitRequest[], result: CommitResult): void {
    if (result.status === 'stale_epoch') {
      // Nothing was written. Requests of deposed shards learn it; the others go again, first.
      const stale = new Set(result.staleShards);
      const retry: CommitRequest[] = [];
      for (const request of requests) {
        if (stale.has(request.shard)) request.done({ status: 'stale_epoch' });
        else retry.push(request);
      }
      this.queued = [...retry, ...this.queued];
      return;
    }
    let offset = 0;
    for (const request of requests) {
      request.done({ status: 'committed', outcomes: result.outcomes.slice(offset, offset + request.writes.length) });
      offset += request.writes.length;
    }
  }
}
