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
//     none of the nodes involved (the breaker's owner, the lease's granter and its sender) is
//     paused, down, leaving or cut off (Health.calm): a node that cannot hear the breaker's
//     owner cannot know, and (a) still holds it to what it heard. In contention mode nodes do
//     not talk at all: only the owner of the breaker's shard hears of it;
// (c) after healing (faults off, and the downstream up again), a breaker not closed within
//     closeBoundMs: its cool-down at most twice over, a half-open round whose probes were lost,
//     and a failover of its shard; and, from healing on, an open breaker that does not go
//     half-open within its cool-down and a failover (whatever the wall clock said when it
//     opened). Its lane's acknowledged jobs, those that waited while it was open too, must then
//     finish like every other (checkers.ts, the liveness phase);
// and a `breaker.state` line that names a state the store does not have at that version.

import { breakerShard, closedBreaker, PROBE_ROUND_MS, type Breaker } from '../node/core/breaker/breaker.ts';
import { type BreakerConfig, type BreakerState } from '../protocol/breaker-view.ts';
import type { BreakerGate } from '../node/core/breaker/breaker-board.ts';
import type { Job } from '../node/core/job/job.ts';
import { shardOfJobId } from '../protocol/job-id.ts';
import { laneOf } from '../node/core/job/lane.ts';
import type { CommitBatch, ShardLease, Store, WriteOutcome } from '../node/core/store.ts';
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

/** After healing, how late an open breaker may go half-open past its cool-down and a failover:
 * the owner looks at the clock every second, and its write takes a round trip. */
const PROBE_SLACK_MS = 2_000;

/** A state of the breaker as committed. Times in virtual ms since the run's start. */
interface Version {
  version: number;
  state: BreakerState;
  round: number;
  cooldownMs: number;
  committedAtMs: number;
  /** When its owner logged it (learned its write committed), or null. */
  loggedAtMs: number | null;
  /** The node that logged it. */
  loggedBy: string | null;
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
  shardCount: number;
  /** The node holding a shard's lease in the store now, if any. */
  shardOwner(shard: number): string | null;
  schedule(delayMs: number, fn: () => void): void;
  report(invariant: string, detail: string): void;
  /** Adds an event to the run's trace. */
  trace(event: string): void;
}

export class BreakerChecker {
  private readonly lane = laneOf(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE);
  /** The shard the breaker lives on. */
  private shard = -1;
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
  /** Healing: when, and the failover bound. */
  private healing: { atMs: number; failoverMs: number } | null = null;
  /** For the run's report. */
  readonly stats = { opened: 0, halfOpened: 0, closed: 0, probes: 0, leasesWhileOpen: 0, leasesWhileOpenExcused: 0 };

  constructor(private readonly world: BreakerWorld) {}

  /** Puts the breaker in the store, closed, before any node starts. */
  async seed(store: Store, shardCount: number, epochOf: (shard: number) => number, wallMs: number): Promise<void> {
    const shard = breakerShard(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE, shardCount);
    this.shard = shard;
    const breaker = closedBreaker(DOWNSTREAM_TENANT, DOWNSTREAM_QUEUE, shard, SIM_BREAKER, SIM_BREAKER.cooldownMs, wallMs);
    const outcome = await store.writeBreaker({ shard, epoch: epochOf(shard) }, { breaker, expectedVersion: null });
    if (outcome !== 'ok') throw new Error(`sim: seeding the breaker of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE}: ${outcome}`);
  }

  /** Whether the breaker is closed, as committed. */
  get closed(): boolean {
    return this.latest === null || this.latest.state === 'closed';
  }

  /** Given the jobs pending and due, those the ready-jobs checker must not hold to its bound
   * while the breaker is not closed: the lane's own, which wait on purpose, and every due job
   * of a shard with `memoryJobsMax` of them or more. An open breaker's lane is one that no
   * worker takes, and its ready jobs may fill the owner's ready queues: then other lanes' due
   * jobs left in the store are not paged in until they drain (docs/DESIGN.md, "Paging by lane",
   * a known limit). */
  gated(due: readonly Job[], memoryJobsMax: number): (job: Job) => boolean {
    if (this.closed) return () => false;
    const ofLane = (job: Job) => job.tenant === DOWNSTREAM_TENANT && job.queue === DOWNSTREAM_QUEUE;
    const perShard = new Map<number, number>();
    for (const job of due) if (ofLane(job)) perShard.set(job.shard, (perShard.get(job.shard) ?? 0) + 1);
    return (job) => ofLane(job) || (perShard.get(job.shard) ?? 0) >= memoryJobsMax;
  }

  // ---- What the store applied ------------------------------------------------------------

  acquired(owner: string, leases: ShardLease[]): void {
    for (const lease of leases) if (lease.shard === this.shard) this.world.trace(`breaker shard ${lease.shard} acquired by ${owner} at epoch ${lease.epoch}`);
  }

  breakerWritten(breaker: Breaker): void {
    if (breaker.tenant !== DOWNSTREAM_TENANT || breaker.queue !== DOWNSTREAM_QUEUE) return;
    const version: Version = {
      version: breaker.version,
      state: breaker.state,
      round: breaker.round,
      cooldownMs: breaker.cooldownMs,
      committedAtMs: this.world.nowMs(),
      loggedAtMs: null,
      loggedBy: null,
    };
    this.world.trace(`breaker v${breaker.version} ${breaker.state} round ${breaker.round}`);
    this.versions.set(breaker.version, version);
    if (this.latest !== null && breaker.state !== this.latest.state) this.stats[breaker.state === 'open' ? 'opened' : breaker.state === 'half_open' ? 'halfOpened' : 'closed']++;
    this.latest = version;
    if (this.healing !== null && version.state === 'open') this.expectProbe(version, version.committedAtMs);
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
    this.world.trace(`${host} logs breaker v${String(fields.version)} ${String(fields.state)}`);
    const committed = this.versions.get(Number(fields.version));
    if (committed === undefined || committed.state !== fields.state || committed.round !== fields.round) {
      return this.world.report(
        'a breaker state is logged only once committed',
        `${host} logged ${String(fields.state)} (round ${String(fields.round)}) at version ${String(fields.version)}, which the store has ${committed === undefined ? 'not' : `as ${committed.state} (round ${committed.round})`}`,
      );
    }
    if (committed.loggedAtMs !== null) return;
    committed.loggedAtMs = this.world.nowMs();
    committed.loggedBy = host;
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
      // The nodes that must have talked: the breaker's owner, the one that granted the lease
      // (its job's shard's) and the one that sent it (its worker's).
      const shardOwner = this.world.shardOwner(shardOfJobId(message.token.jobId, this.world.shardCount) ?? -1);
      const nodes = new Set([v.loggedBy!, link.host.id, shardOwner ?? link.host.id].map((id) => Number(id.slice(1))));
      if (!this.world.cluster || !this.world.health.calm(nodes, v.loggedAtMs, nowMs)) return void this.stats.leasesWhileOpenExcused++;
      return this.world.report(
        'attempts are not spent while a breaker is open',
        `attempt ${attempt} of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} leased to ${link.workerId}, granted at ${(grantedMs / 1000).toFixed(3)} s, ` +
          `while the breaker was open (version ${v.version}, logged at ${(v.loggedAtMs / 1000).toFixed(3)} s, next write ${untilMs === Infinity ? 'not yet' : `at ${(untilMs / 1000).toFixed(3)} s`}), the nodes involved up and talking`,
      );
    }
  }

  // ---- (c) Closed after healing -------------------------------------------------------------

  /** Everything healed now; the downstream is up from `downstreamUpAtMs` on. The breaker must be
   * closed `closeBoundMs` after the later of the two. Returns that deadline (ms since the start). */
  healed(downstreamUpAtMs: number, closeBoundMs: number, failoverBoundMs: number): number {
    this.healing = { atMs: this.world.nowMs(), failoverMs: failoverBoundMs };
    if (this.latest?.state === 'open') this.expectProbe(this.latest, this.healing.atMs);
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

  /** After healing, open version `v` must give way to a half-open one within its cool-down from
   * `fromMs` (when it opened, or healing), its shard's failover and PROBE_SLACK_MS. */
  private expectProbe(v: Version, fromMs: number): void {
    const { failoverMs, atMs: healedAtMs } = this.healing!;
    const byMs = fromMs + v.cooldownMs + failoverMs + PROBE_SLACK_MS;
    this.world.schedule(byMs - this.world.nowMs(), () => {
      if (this.latest !== v) return;
      this.world.report(
        'every breaker closes after the downstream heals',
        `the breaker of ${DOWNSTREAM_TENANT}/${DOWNSTREAM_QUEUE} is still open (version ${v.version}, since ${(v.committedAtMs / 1000).toFixed(3)} s, cool-down ${v.cooldownMs / 1000} s) ` +
          `at ${(byMs / 1000).toFixed(3)} s: everything healed at ${(healedAtMs / 1000).toFixed(3)} s, and a failover takes ${failoverMs / 1000} s at most`,
      );
    });
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
