// A node's connection pool to the simulated PostgreSQL, as node-postgres's pg.Pool: at most
// `size` connections checked out; callers beyond that wait in order, and one that waits
// `checkoutTimeoutMs` fails as pg.Pool's connectionTimeoutMillis makes it fail. A pool can run
// dry: slow transactions, or a paused node's open ones, hold its connections.

import type { EventQueue } from './event-queue.ts';

/** node-postgres's message for a checkout that timed out (pg-errors.ts maps it by /timeout/). */
export const CHECKOUT_TIMEOUT_MESSAGE = 'timeout exceeded when trying to connect';

interface Waiting {
  got: () => void;
  timer: number;
}

export class SimPool {
  private inUse = 0;
  private readonly waiting: Waiting[] = [];

  constructor(
    private readonly queue: EventQueue,
    readonly size: number,
    private readonly checkoutTimeoutMs: number,
  ) {}

  /** `got` once a connection is the caller's (who must `release` it); `timedOut` if none
   * came within the checkout timeout. */
  checkout(got: () => void, timedOut: (error: Error) => void): void {
    if (this.inUse < this.size) {
      this.inUse++;
      return got();
    }
    const entry: Waiting = {
      got,
      timer: this.queue.schedule(this.checkoutTimeoutMs, () => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        timedOut(new Error(CHECKOUT_TIMEOUT_MESSAGE));
      }),
    };
    this.waiting.push(entry);
  }

  release(): void {
    const next = this.waiting.shift();
    if (next === undefined) {
      this.inUse--;
      return;
    }
    this.queue.cancel(next.timer);
    next.got();
  }
}
