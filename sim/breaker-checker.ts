// Circuit breakers in the simulator. Every run gives one lane a breaker of its own: the lane of
// the downstream (workload.ts Downstream), tenant t1's queue qd, whose handlers fail while the
// seed's outages last. The breaker is put in the store before any node starts, as the schedules
// are (schedule-checker.ts, which also ticks a job into the lane every 1.5 s so that it never
// runs dry), with settings small enough to trip and close again within a run. The checker
// watches the breaker's writes as the store applies them, its owners' `breaker.state` lines,
// what each node's dispatcher is told and grants (TestHooks.observe), and the leases gateways
// send to workers, and reports:
// (a) a dispatcher that grants the lane (to an owner of its node, as an offer to another node, or
//     an idle worker for a new job) after it was told the breaker is open and before it is told
//     otherwise, or more than `probes` slots in one half-open round;
// (b) an attempt of the lane (a lease sent to a worker, by when it was granted) started while
//     the breaker is open cluster-wide: from PROPAGATION_MS after the owner logged the opening
//     (committed) until the next write of the breaker commits. Only in a cluster, and only while
//     no node is paused, down, leaving or cut off (Health.calm): a node that cannot hear the
//     breaker's owner cannot know, and (a) still holds it to what it heard. In contention mode
//     nodes do not talk at all: only the owner of the breaker's shard hears of it;
// (c) after healing (faults off, and the downstream up again), a breaker not closed within
//     closeBoundMs: its cool-down at most twice over, a half-open round whose probes were lost,
//     and a failover of its shard. Its lane's acknowledged jobs, those that waited while it
//     was open too, must then finish like every other (checkers.ts, the liveness phase);
// and a `breaker.state` line that names a state the store does not have at that version.

import { closedBreaker, PROBE_ROUND_MS, type Breaker, type BreakerConfig, type BreakerState } from '../node/core/breaker/breaker.ts';
import { breakerShard } from '../node/core/breaker/breaker.ts';
import type { BreakerGate } from '../node/core/breaker/breaker-board.ts';
import type { Job } from '../node/core/job/job.ts';
import { laneOf } from '../node/core/job/lane.ts';
import type { CommitBatch, Store, WriteOutcome } from '../node/core/store.ts';
import type { Observation } from '../node/core/test-hooks.ts';
import type { Health } from './health.ts';
import type { FromNode, SimLink } from './sim-link.ts';

export const DOWNSTREAM_TENANT = 't1';
export const DOWNSTREAM_QUEUE = 'qd';

/** Small enough to trip on a few seconds of outage, and to close again soon after. */
export const SIM_BREAKER: BreakerConfig = {
  enabled: true,
  failureRatePct: 50,
  minAttempts: 5,
  windowMs: 10_000,
  cooldownMs: 2_000,
  cooldownMaxMs: 8_000,
  probes: 1,
  refuseWhenOpen: false,
};

/** How long after its owner learns a breaker opened every node may still lease its lane: its
 * signal goes out in the next heartbeat (250 ms, sent early on a change) and is repeated in
 * every one after, so a few lost ones and the nodes' message delays fit in easily. */
const PROPAGATION_MS = 2_000;

/** A state of the breaker as committed. Times in virtual ms since the run's start. */
interface Version {
  version: number;
  state: BreakerState;
  round: number;
  committedAtMs: number;
  /** When its owner logged it (learned its write committed), or null. */
  loggedAtMs: number | null;
}

export interface BreakerWorld {
  /** Virtual ms since the run's start. */
  nowMs(): number;
  /** Virtual time at the run's start (wall clocks are this plus their skew). */
  startMs: number;
  cluster: boolean;
  health: Health;
  /** The nodes' lease length (OwnerConfig.leaseMs). */
  leaseMs: number;
  schedule(delayMs: number, fn: () => void): void;
  report(invariant: string, detail: string): void;
  /** Adds an event to the run's trace. */
  trace(event: string): void;
}

export class BreakerChecker {
  private readonly lane = laneOf(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE);
  private readonly versions = new Map<number, Version>();
  private latest: Version | null = null;
  /** Per node incarnation (`n1#2`): the gate its dispatcher was last told, and the slots it
   * granted since the current half-open round began there. */
  private readonly told = new Map<string, { gate: BreakerGate | null; granted: number }>();
  /** `jobId/attempt` of the lane's attempts whose lease was sent. */
  private readonly started = new Set<string>();
  /** Jobs of the lane inserted already leased (their lease goes out once the insert commits):
   * when the lease was granted, on the owner's wall clock. */
  private readonly insertedLeased = new Map<string, number>();
  /** For the run's report. */
  readonly stats = { opened: 0, halfOpened: 0, closed: 0, leasesWhileOpen: 0, probes: 0 };

  constructor(private readonly world: BreakerWorld) {}

  /** Puts the breaker in the store, closed, before any node starts. */
  async seed(store: Store, shardCount: number, epochOf: (shard: number) => number, wallMs: number): Promise<void> {
    const shard = breakerShard(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE, shardCount);
    const breaker = closedBreaker(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE, shard, SIM_BREAKER, SIM_BREAKER.cooldownMs, wallMs);
    const outcome = await store.writeBreaker({ shard, epoch: epochOf(shard) }, { breaker, expectedVersion: null });
    if (outcome !== 'ok') throw new Error(`sim: seeding the breaker of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE}: ${outcome}`);
  }

  /** Whether the breaker is closed, as committed. */
  get closed(): boolean {
    return this.latest === null || this.latest.state === 'closed';
  }

  /** Jobs the ready-jobs checker must not hold to its bound: those of the lane while its
   * breaker is not closed (they wait on purpose). */
  gated(job: Job): boolean {
    return job.tenant === DOWNSTREAM_TENANT && job.queue === DOWNSTREAM_QUEUE && !this.closed;
  }

  // ---- What the store applied ------------------------------------------------------------

  breakerWritten(breaker: Breaker): void {
    if (breaker.tenant !== DOWNSTREAM_TENANT || breaker.queue !== DOWNSTREAM_QUEUE) return;
    const version: Version = { version: breaker.version, state: breaker.state, round: breaker.round, committedAtMs: this.world.nowMs(), loggedAtMs: null };
    this.world.trace(`breaker v${breaker.version} ${breaker.state} round ${breaker.round}`);
    this.versions.set(breaker.version, version);
    if (this.latest !== null && breaker.state !== this.latest.state) this.stats[breaker.state === 'open' ? 'opened' : breaker.state === 'half_open' ? 'halfOpened' : 'closed']++;
    this.latest = version;
  }

  committed(batch: CommitBatch, outcomes: WriteOutcome[]): void {
    batch.writes.forEach((write, i) => {
      if (write.kind !== 'insert' || !outcomes[i]!.ok) return;
      const job = write.job;
      if (job.tenant !== DOWNSTREAM_TENANT || job.queue !== DOWNSTREAM_QUEUE || job.state !== 'running' || job.leaseExpiresAtMs === null) return;
      this.insertedLeased.set(job.id, job.leaseExpiresAtMs - this.world.leaseMs);
    });
  }

  /** A node's log line. */
  logged(host: string, event: string, fields: Record<string, unknown> | undefined): void {
    if (event !== 'breaker.state' || fields?.tenant !== DOWNSTREAM_TENANT || fields.queue !== DOWNSTREAM_QUEUE) return;
    const committed = this.versions.get(Number(fields.version));
    if (committed === undefined || committed.state !== fields.state || committed.round !== fields.round) {
      return this.world.report(
        'a breaker state is logged only once committed',
        `${host} logged ${String(fields.state)} (round ${String(fields.round)}) at version ${String(fields.version)}, which the store has ${committed === undefined ? 'not' : `as ${committed.state} (round ${committed.round})`}`,
      );
    }
    committed.loggedAtMs ??= this.world.nowMs();
  }

  // ---- (a) What each dispatcher was told and granted -------------------------------------

  observed(host: string, incarnation: number, o: Observation): void {
    if (o.lane !== this.lane) return;
    const node = `${host}#${incarnation}`;
    const view = this.told.get(node) ?? { gate: null, granted: 0 };
    if (o.kind === 'breaker_gate') {
      this.world.trace(`${node} told breaker ${o.gate === null ? 'closed' : o.gate.state === 'open' ? 'open' : `half_open round ${o.gate.round}`}`);
      // As the dispatcher counts them: the same round told again (every heartbeat repeats it)
      // gives no fresh probes, a new one does.
      const sameRound = view.gate?.state === 'half_open' && o.gate?.state === 'half_open' && view.gate.round === o.gate.round;
      this.told.set(node, { gate: o.gate, granted: sameRound ? view.granted : 0 });
      return;
    }
    this.told.set(node, view);
    const gate = view.gate;
    if (gate === null) return;
    const invariant = 'no lease of a queue with an open breaker except its probes';
    if (gate.state === 'open') {
      return this.world.report(invariant, `${host} granted ${o.slots} of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} (to ${o.to}) after its dispatcher was told the breaker is open`);
    }
    view.granted += o.slots;
    this.stats.probes += o.slots;
    if (view.granted > gate.probes) {
      this.world.report(invariant, `${host} granted ${view.granted} of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} (the last to ${o.to}) in half-open round ${gate.round}, which allows ${gate.probes} per node`);
    }
  }

  // ---- (b) Attempts started while the breaker is open ------------------------------------

  /** A gateway sends `message` on `link` now. */
  sent(link: SimLink, message: FromNode): void {
    if (message.t !== 'lease' || link.tenant !== DOWNSTREAM_TENANT || message.queue !== DOWNSTREAM_QUEUE) return;
    const attempt = `${message.token.jobId}/${message.token.attempt}`;
    if (this.started.has(attempt)) return;
    this.started.add(attempt);
    this.world.trace(`${link.host.id} leases ${attempt} of the downstream to ${link.workerId}`);
    const nowMs = this.world.nowMs();
    // A job inserted already leased took its worker when it was submitted: its lease goes out
    // once the insert commits, which may be much later.
    const inserted = message.token.attempt === 1 ? this.insertedLeased.get(message.token.jobId) : undefined;
    const grantedMs = inserted === undefined ? nowMs : inserted - this.world.startMs - link.host.skewMs;
    for (const v of this.versions.values()) {
      if (v.state !== 'open' || v.loggedAtMs === null) continue;
      const untilMs = this.versions.get(v.version + 1)?.committedAtMs ?? Infinity;
      if (grantedMs < v.loggedAtMs + PROPAGATION_MS || grantedMs >= untilMs) continue;
      this.stats.leasesWhileOpen++;
      if (!this.world.cluster || !this.world.health.calm(v.loggedAtMs, nowMs)) return;
      return this.world.report(
        'attempts are not spent while a breaker is open',
        `attempt ${attempt} of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} leased to ${link.workerId}, granted at ${(grantedMs / 1000).toFixed(3)} s, ` +
          `while the breaker was open (version ${v.version}, logged at ${(v.loggedAtMs / 1000).toFixed(3)} s, next write ${untilMs === Infinity ? 'never' : `at ${(untilMs / 1000).toFixed(3)} s`}), every node up and talking`,
      );
    }
  }

  // ---- (c) Closed after healing -------------------------------------------------------------

  /** Everything healed now; the downstream is up from `downstreamUpAtMs` on. The breaker must be
   * closed `closeBoundMs` after the later of the two. Returns that deadline (ms since the start). */
  healed(downstreamUpAtMs: number, closeBoundMs: number): number {
    const fromMs = Math.max(this.world.nowMs(), downstreamUpAtMs);
    const byMs = fromMs + closeBoundMs;
    this.world.schedule(byMs - this.world.nowMs(), () => {
      if (this.closed) return;
      const v = this.latest!;
      this.world.report(
        'every breaker closes after the downstream heals',
        `the breaker of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} is ${v.state} (version ${v.version}, round ${v.round}, since ${(v.committedAtMs / 1000).toFixed(3)} s) ` +
          `${closeBoundMs / 1000} s after everything healed at ${(fromMs / 1000).toFixed(3)} s`,
      );
    });
    return byMs;
  }
}

/** How long after healing a breaker may take to close: its shard may have to fail over (the
 * new owner loads it as committed); it may be open with the longest cool-down, and a probe
 * granted before healing may fail after it and open it once more for as long; a half-open round
 * whose probes were lost (their worker's connection closed: no outcome) ends after
 * PROBE_ROUND_MS; then a probe runs and its outcome is reported, with a few seconds to spare. */
export function closeBoundMs(config: BreakerConfig, failoverBoundMs: number): number {
  return failoverBoundMs + 2 * config.cooldownMaxMs + PROBE_ROUND_MS + 5_000;
}
