// Test-only hooks inside product code. Production leaves `env.testHooks` undefined, so every
// site is off and every planted bug absent; the simulator sets them.
//
// - buggify: FoundationDB's BUGGIFY. A site forces a rare path (a late flush, a forced spill)
//   so that the simulator visits it often; the simulator enables each site for a run with
//   some probability and fires it on a visit with another.
// - planted bugs: known bugs the simulator must catch (test/sim/checker-efficacy.test.ts
//   proves each is caught within a bounded number of seeds).

import type { BreakerGate } from './breaker/breaker-board.ts';

export type BuggifySite = 'owner.delay_flush' | 'owner.spill' | 'owner.short_lease_check' | 'committer.small_batches';

export type PlantedBug =
  /** The owner answers a submission before its insert commits. */
  | 'ack_before_commit'
  /** The owner neither deduplicates an idempotency key nor records it in the store. */
  | 'forget_idempotency_key'
  /** The store skips the shard epoch check of a commit. */
  | 'skip_epoch_check'
  /** The owner lets a stale lease holder's verdict through, as if it held the current lease. */
  | 'accept_stale_lease'
  /** The owner accepts a lease request from any connection whose token matches. */
  | 'ignore_lease_holder'
  /** The owner keeps the leases of a worker whose connection closed (they run out instead). */
  | 'keep_lost_worker_leases'
  /** A tick's job key names the owner's epoch too, so a tick fired again by another owner makes
   * a second job. */
  | 'tick_key_per_owner'
  /** The owner runs no tick that is more than a second late, whatever the missed-tick policy. */
  | 'drop_late_ticks'
  /** The dispatcher ignores what it is told of circuit breakers: it leases an open lane's jobs. */
  | 'breaker_ignore_gate'
  /** An open breaker has no time to probe: it never goes half-open, so never closes. */
  | 'breaker_never_probe';

export const PLANTED_BUGS: readonly PlantedBug[] = [
  'ack_before_commit',
  'forget_idempotency_key',
  'skip_epoch_check',
  'accept_stale_lease',
  'ignore_lease_holder',
  'keep_lost_worker_leases',
  'tick_key_per_owner',
  'drop_late_ticks',
  'breaker_ignore_gate',
  'breaker_never_probe',
];

/** What a site did, for the simulator's checkers that cannot see it from outside the node
 * (sim/breaker-checker.ts). */
export type Observation =
  /** The dispatcher was told a lane's breaker gate (null: closed). */
  | { kind: 'breaker_gate'; lane: string; gate: BreakerGate | null }
  /** The dispatcher granted `slots` of a lane: to an owner here (`s<shard>`), as an offer to
   * another node (`n<node>`), or one idle worker to an owner about to insert a job (`idle`). */
  | { kind: 'granted'; lane: string; slots: number; to: string };

export interface TestHooks {
  buggify(site: BuggifySite): boolean;
  planted(bug: PlantedBug): boolean;
  /** Called with what sites did (production: never; the simulator: on every node). */
  observe?(observation: Observation): void;
}

export function buggify(hooks: TestHooks | undefined, site: BuggifySite): boolean {
  return hooks !== undefined && hooks.buggify(site);
}

export function planted(hooks: TestHooks | undefined, bug: PlantedBug): boolean {
  return hooks !== undefined && hooks.planted(bug);
}
