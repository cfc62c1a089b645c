// Watching the tenant's circuit breakers. One `breaker_watch` per connection, however many
// listeners the program has: the node pushes `breaker_changed` to the connection until it
// closes, so a second request would only ask for the same pushes again. After a reconnect the
// new connection watches nothing, so the watch is sent again, as subscriptions are made again
// (subscriptions.ts). Changes that happened while the link was down are not replayed: read
// `client.breakers.list()` to catch up.

import type { BreakerChanged, BreakerWatch, Ok } from '../client-messages.ts';
import type { Answerer } from './messages.ts';

/** One breaker's change of state, as the node the client is connected to sees it. */
export type BreakerChange = Omit<BreakerChanged, 't'>;
export type OnBreakerChange = (change: BreakerChange) => void;

/** How the watch reaches the node: the client's request path. */
export interface BreakerWatchLink {
  request(request: BreakerWatch, answerer: Answerer<Ok>): void;
  warn(message: string): void;
}

export class BreakerWatches {
  private readonly listeners = new Set<OnBreakerChange>();
  /** The node has answered a watch on some connection, so a reconnect must watch again (a
   * request still pending is re-sent by the connection anyway). */
  private established = false;
  /** Listeners waiting for the watch request in flight, which later callers join instead of
   * sending another. */
  private waiting: Array<{ onChange: OnBreakerChange; resolve(): void; reject(error: Error): void }> | null = null;

  constructor(private readonly link: BreakerWatchLink) {}

  /** Resolves once the node has said it will push changes to `onChange`; rejects with the
   * refusal (and `onChange` hears nothing) when it will not. */
  watch(onChange: OnBreakerChange): Promise<void> {
    if (this.established) {
      this.listeners.add(onChange);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      if (this.waiting !== null) {
        this.waiting.push({ onChange, resolve, reject });
        return;
      }
      const waiting = [{ onChange, resolve, reject }];
      this.waiting = waiting;
      try {
        this.link.request({ t: 'breaker_watch', rid: 0 }, { answered: (outcome) => {
          this.waiting = null;
          if (outcome instanceof Error) {
            for (const w of waiting) w.reject(outcome);
            return;
          }
          this.established = true;
          // Listening from now, synchronously: a push read in the same turn as the `ok` is theirs.
          for (const w of waiting) {
            this.listeners.add(w.onChange);
            w.resolve();
          }
        } });
      } catch (error) {
        // Never sent (the client is closing, say): rejects this promise.
        this.waiting = null;
        throw error;
      }
    });
  }

  /** A `breaker_changed` push. */
  changed(push: BreakerChanged): void {
    const change: BreakerChange = { queue: push.queue, state: push.state, since: push.since, nextProbeAt: push.nextProbeAt };
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.link.warn(`a breaker watch callback threw: ${String(error)}`);
      }
    }
  }

  /** After a reconnect: watch again on the new connection. */
  rewatch(): void {
    if (!this.established) return;
    this.link.request({ t: 'breaker_watch', rid: 0 }, { answered: (outcome) => {
      if (outcome instanceof Error) this.link.warn(`could not watch the breakers again after a reconnect: ${outcome.message}`);
    } });
  }
}
