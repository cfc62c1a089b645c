// Following jobs. One node-side subscription per job, however many listeners the program has
// on it; pushes are deduplicated by `updatedAt` (the node sends a job's changes in commit
// order, and after a reconnect the fresh `subscribed` view may repeat the last push). After a
// reconnect every subscription is made again, and the view it returns reports whatever
// changed while the link was down.

import { isTerminal } from '../job-rules.ts';
import type { JobChanged, Subscribe, Subscribed, Unsubscribe } from '../client-messages.ts';
import type { JobView } from '../job-view.ts';
import type { Answerer } from './messages.ts';

export interface Subscription {
  /** The job as it was when the subscription was made. */
  readonly current: JobView;
  /** Stops `onChange`. `done` then never settles. */
  unsubscribe(): Promise<void>;
  /** Resolves with the job's terminal view (at once when it already was terminal). Rejects
   * with ConnectionClosedError when the client closes first, or with the KairosError that
   * refused to subscribe again after a reconnect (e.g. `not_found`). */
  readonly done: Promise<JobView>;
}

export type OnChange = (job: JobView) => void;

interface Listener {
  onChange: OnChange;
  resolve(job: JobView): void;
  reject(error: Error): void;
}

interface Followed {
  listeners: Set<Listener>;
  /** The newest view seen, from a push or a `subscribed`. */
  last: JobView | null;
  /** A `subscribed` has come back at least once, so a reconnect must subscribe again (a
   * request still pending is re-sent by the connection anyway). */
  established: boolean;
}

/** How subscriptions reach the node: the client's request path. */
export interface SubscriptionLink {
  request(request: Subscribe, answerer: Answerer<Subscribed>): void;
  unsubscribe(request: Unsubscribe): Promise<void>;
  warn(message: string): void;
}

export class Subscriptions {
  private readonly followed = new Map<string, Followed>();

  constructor(private readonly link: SubscriptionLink) {}

  subscribe(jobId: string, onChange: OnChange): Promise<Subscription> {
    let entry = this.followed.get(jobId);
    if (entry === undefined) {
      entry = { listeners: new Set(), last: null, established: false };
      this.followed.set(jobId, entry);
    }
    const followed = entry;
    return new Promise((resolve, reject) => {
      this.link.request({ t: 'subscribe', rid: 0, jobId }, { answered: (outcome) => {
        if (outcome instanceof Error) {
          if (followed.listeners.size === 0 && this.followed.get(jobId) === followed) this.followed.delete(jobId);
          reject(outcome);
          return;
        }
        followed.established = true;
        this.observe(jobId, followed, outcome.job);
        const current = followed.last!;
        let listener: Listener | null = null;
        const done = new Promise<JobView>((resolveDone, rejectDone) => {
          listener = { onChange, resolve: resolveDone, reject: rejectDone };
        });
        // A caller who never awaits `done` must not get an unhandled rejection at close.
        done.catch(() => {});
        if (isTerminal(current.state)) listener!.resolve(current);
        else if (this.followed.get(jobId) === followed) followed.listeners.add(listener!);
        resolve({ current, done, unsubscribe: () => this.unsubscribe(jobId, followed, listener!) });
      } });
    });
  }

  /** A `job_changed` push. */
  changed(push: JobChanged): void {
    const followed = this.followed.get(push.jobId);
    if (followed !== undefined) this.observe(push.jobId, followed, push.job);
  }

  /** After a reconnect: subscribe again to every job followed before the link dropped. */
  resubscribe(): void {
    for (const [jobId, followed] of this.followed) {
      if (!followed.established) continue;
      this.link.request({ t: 'subscribe', rid: 0, jobId }, { answered: (outcome) => {
        if (this.followed.get(jobId) !== followed) return;
        if (outcome instanceof Error) return this.end(jobId, followed, outcome);
        this.observe(jobId, followed, outcome.job);
      } });
    }
  }

  /** The client is closing or has failed: nothing more will arrive. */
  closeAll(error: Error): void {
    for (const [jobId, followed] of this.followed) this.end(jobId, followed, error);
  }

  private observe(jobId: string, followed: Followed, job: JobView): void {
    const last = followed.last;
    if (last !== null && (job.updatedAt < last.updatedAt || (job.updatedAt === last.updatedAt && job.state === last.state))) return;
    followed.last = job;
    const terminal = isTerminal(job.state);
    if (terminal) this.followed.delete(jobId);
    for (const listener of followed.listeners) {
      try {
        listener.onChange(job);
      } catch (error) {
        this.link.warn(`a subscription callback for ${jobId} threw: ${String(error)}`);
      }
      if (terminal) listener.resolve(job);
    }
  }

  private end(jobId: string, followed: Followed, error: Error): void {
    this.followed.delete(jobId);
    for (const listener of followed.listeners) listener.reject(error);
    followed.listeners.clear();
  }

  private async unsubscribe(jobId: string, followed: Followed, listener: Listener): Promise<void> {
    if (!followed.listeners.delete(listener) || followed.listeners.size > 0) return;
    if (this.followed.get(jobId) !== followed) return;
    this.followed.delete(jobId);
    await this.link.unsubscribe({ t: 'unsubscribe', rid: 0, jobId });
  }
}
