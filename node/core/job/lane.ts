// A lane: one tenant's queue. Ready jobs wait, and workers' credit is counted, per lane, never
// per queue name alone: two tenants may both have a queue called `emails`, and a worker of one
// must never be handed the other's jobs.

import type { Job } from './job.ts';

export function laneOf(tenant: string, queue: string): string {
  return `${tenant}\u0000${queue}`;
}

export function jobLane(job: Job): string {
  return laneOf(job.tenant, job.queue);
}

/** The tenant and queue of a lane. */
export function splitLane(lane: string): [tenant: string, queue: string] {
  const at = lane.indexOf('\u0000');
  return [lane.slice(0, at), lane.slice(at + 1)];
}
