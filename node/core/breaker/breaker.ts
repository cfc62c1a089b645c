// Circuit breakers: one per lane (a tenant's queue), for the whole cluster. The record every
// component sees, where one lives, and its state machine. A breaker lives on the shard its
// (tenant, queue) hashes to; that shard's owner decides its state from the attempt outcomes
// every node reports (owner/breakers.ts), persists each change in a fenced write, and every
// node's dispatcher stops leasing the lane's jobs while it is open (breaker/breaker-board.ts).
//
//   closed ──failure rate ≥ failureRatePct of ≥ minAttempts in windowMs──▶ open
//   open ──cool-down over──▶ half_open (each node may lease `probes` jobs of the lane)
//   half_open ──a success──▶ closed (cool-down back to cooldownMs)
//   half_open ──a failure──▶ open (cool-down doubled, up to cooldownMaxMs)
//   half_open ──no outcome within PROBE_ROUND_MS──▶ half_open, next round (fresh probes)

import { fnv1a32 } from '../../../protocol/job-id.ts';
import type { BreakerConfig, BreakerState } from '../../../protocol/breaker-view.ts';

/** Breakers with a row of their own, per tenant across the cluster (a queue's own settings, or
 * a state a default breaker reached). */
export const BREAKERS_PER_TENANT_MAX = 1_000;
/** A half-open round with no outcome for this long gives every node fresh probes: a probe whose
 * outcome was lost (its node crashed) must not hold the breaker half-open for ever. */
export const PROBE_ROUND_MS = 30_000;

export interface Breaker {
  tenant: string;
  queue: string;
  shard: number;
  /** The queue's own settings; null when the node's default applies (a row written only to
   * keep the state a default breaker reached). */
  config: BreakerConfig | null;
  state: BreakerState;
  /** When it entered its state (wall clock, ms). */
  sinceMs: number;
  /** Open: when it goes half-open. Else null. */
  nextProbeAtMs: number | null;
  /** The cool-down of the current or next opening: grows while reopenings repeat. */
  cooldownMs: number;
  /** Half-open rounds so far in this opening (each gives every node fresh probes). */
  round: number;
  /** The window when it last opened: attempts and failures. Zero before it ever opened. */
  openedAttempts: number;
  openedFailures: number;
  /** Bumped by every write; writes are conditional on it. Versions order every state a node
   * hears of the breaker, so a row is deleted only once no node can remember it
   * (FORGOTTEN_AFTER_MS): a breaker made again then starts at 1 without being taken for an
   * old state. */
  version: number;
  updatedAtMs: number;
}

/** A fenced write of one breaker (Store.writeBreaker): expectedVersion null creates it
 * (refused with 'limit' when the tenant has BREAKERS_PER_TENANT_MAX), else it replaces the row at
 * that version, or with `delete` deletes it ('conflict' otherwise). The store sets version to
 * expectedVersion + 1 (1 when created). */
export interface BreakerWrite {
  breaker: Breaker;
  expectedVersion: number | null;
  delete?: true;
}

/** A breaker closed this long, that follows the node's default or has no settings any more,
 * has its row deleted, which frees one of the tenant's BREAKERS_PER_TENANT_MAX: every node has
 * forgotten its last state by then (an owner signals a closed breaker for a minute, a board
 * forgets a state two minutes after it last heard it). */
export const FORGOTTEN_AFTER_MS = 200_000;

export type BreakerWriteOutcome = 'ok' | 'conflict' | 'limit' | 'stale_epoch';

/** The shard a lane's breaker lives on. */
export function breakerShard(tenant: string, queue: string, shardCount: number): number {
  return fnv1a32(`${tenant}\u0000breaker\u0000${queue}`) % shardCount;
}

/** A closed breaker, fresh. */
export function closedBreaker(tenant: string, queue: string, shard: number, config: BreakerConfig | null, cooldownMs: number, nowMs: number): Breaker {
  return {
    tenant,
    queue,
    shard,
    config,
    state: 'closed',
    sinceMs: nowMs,
    nextProbeAtMs: null,
    cooldownMs,
    round: 0,
    openedAttempts: 0,
    openedFailures: 0,
    version: 0,
    updatedAtMs: nowMs,
  };
}
