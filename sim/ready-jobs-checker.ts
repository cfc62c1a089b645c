// After healing: no ready job waits while a worker that could run it sits idle. A job that is
// due and pending (as committed) must be leased within a bound while a modelled worker of its
// tenant, connected to the node that serves the job's shard, has free credit for its queue,
// unless jobs of its lane (tenant and queue) at its priority or better are being leased
// meanwhile: those come first (priority, then round-robin across sources: dispatcher.ts), and
// a worker that keeps taking them is busy, not idle.
// The owner keeps its ready jobs apart from its delayed ones (docs/DESIGN.md, "Jobs"), so jobs
// due later never keep ready ones out of memory; when they do, or a due job left in the store
// is never paged in, this is what shows it. Small owner memories in the fault plan
// (`ownerMemory`) make the spill and page-in paths run. Jobs of a lane whose circuit breaker is
// not closed wait on purpose, and so may others of their shard (breaker-checker.ts `gated`):
// the bound holds them from when it closes.

import type { Job } from '../node/core/job/job.ts';
import type { EventQueue } from './event-queue.ts';
import type { SimHost } from './sim-host.ts';
import type { SimWorker } from './workload.ts';

/** How long a due job may wait with an idle worker at hand. The worker's slots may be out on
 * an offer to another node that was lost before healing: the dispatcher takes an offer with no
 * answer for 5 s as lost and sweeps every 1 s (dispatcher.ts), so 6 s; then the owner's timer
 * for its next due job, a page-in (one store round trip) and a grant take well under one more. */
const WAIT_BOUND_MS = 7_000;
const LOOK_EVERY_MS = 250;

export class ReadyJobsChecker {
  /** Job id → since when it has waited, due, with an idle worker at hand. */
  private readonly waitingSince = new Map<string, number>();
  /** Lane → priority → when a job of that lane and priority was last leased. */
  private readonly leasedAt = new Map<string, Map<number, number>>();

  constructor(
    private readonly queue: EventQueue,
    private readonly hosts: () => readonly SimHost[],
    private readonly workers: readonly SimWorker[],
    private readonly pendingDue: (nowMs: number) => Job[],
    private readonly report: (invariant: string, detail: string) => void,
    /** Given the jobs pending and due, those that may wait for now (breaker-checker.ts). */
    private readonly gated: (due: readonly Job[]) => (job: Job) => boolean = () => () => false,
  ) {}

  /** A lease of `job` committed. */
  leased(job: Job): void {
    const lane = `${job.tenant}/${job.queue}`;
    if (!this.leasedAt.has(lane)) this.leasedAt.set(lane, new Map());
    this.leasedAt.get(lane)!.set(job.priority, this.queue.nowMs);
  }

  /** When a job of `job`'s lane at its priority or better was last leased. */
  private lastLeaseAhead(job: Job): number {
    let last = Number.NEGATIVE_INFINITY;
    for (const [priority, atMs] of this.leasedAt.get(`${job.tenant}/${job.queue}`) ?? []) if (priority >= job.priority) last = Math.max(last, atMs);
    return last;
  }

  /** From now on (healing: clocks are right again), look until the run ends. */
  start(): void {
    const look = () => {
      const nowMs = this.queue.nowMs;
      const servedBy = new Map<number, string[]>();
      for (const host of this.hosts()) {
        if (host.node === null || host.paused) continue;
        for (const shard of host.node.routes.shards()) servedBy.set(shard, [...(servedBy.get(shard) ?? []), host.id]);
      }
      const waiting = new Set<string>();
      const due = this.pendingDue(nowMs);
      const gated = this.gated(due);
      for (const job of due) {
        const owners = servedBy.get(job.shard) ?? [];
        if (owners.length !== 1 || gated(job)) continue;
        const idle = this.workers.find((w) => w.tenant === job.tenant && w.node === owners[0] && w.freeSlots(job.queue) > 0);
        if (idle === undefined) continue;
        waiting.add(job.id);
        const since = Math.max(this.waitingSince.get(job.id) ?? nowMs, this.lastLeaseAhead(job));
        this.waitingSince.set(job.id, since);
        if (nowMs - since > WAIT_BOUND_MS) {
          this.report(
            'no ready job waits while a worker of its queue is idle',
            `${job.id} (${job.tenant}/${job.queue}, due ${((nowMs - job.runAtMs) / 1000).toFixed(1)} s ago) pending for ${((nowMs - since) / 1000).toFixed(1)} s on ${owners[0]} while ${idle.name} had ${idle.freeSlots(job.queue)} free slots there`,
          );
        }
      }
      for (const id of this.waitingSince.keys()) if (!waiting.has(id)) this.waitingSince.delete(id);
      this.queue.schedule(LOOK_EVERY_MS, look);
    };
    look();
  }
}
