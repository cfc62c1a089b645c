// One seed of the simulator: several real nodes (the production actor code) on simulated
// hosts, sharing one simulated store, with simulated clients and workers, under the seed's
// fault plan. Two phases, as in TigerBeetle's VOPR: a safety phase with faults, then a
// liveness phase with faults healed, crashed nodes restarted and clocks fixed, in which every
// acknowledged job must reach a terminal state within a bound of virtual time.

import { DEFAULT_NODE_CONFIG, type NodeConfig } from '../node/core/node.ts';
import { SeededRandom } from '../node/core/random.ts';
import type { PlantedBug, TestHooks } from '../node/core/test-hooks.ts';
import { BreakerChecker, closeBoundMs, DOWNSTREAM_QUEUE, DOWNSTREAM_TENANT, SIM_BREAKER } from './breaker-checker.ts';
import { Checkers, InvariantViolation } from './checkers.ts';
import { EventQueue } from './event-queue.ts';
import { FailoverChecker, failoverBoundMs } from './failover-checker.ts';
import { ReadyJobsChecker } from './ready-jobs-checker.ts';
import { describePlan, NO_FAULTS, swarmPlan, type FaultPlan } from './fault-plan.ts';
import { Health } from './health.ts';
import { describeHostile, drawHostileMix, HOSTILE_TENANT, startHostiles } from './hostile.ts';
import { HostileCheckers } from './hostile-checkers.ts';
import { LockingDatabase, REAL_POOL_SIZES, type DatabaseFaults, type ModelBug } from './locking-store.ts';
import { MemoryBacking, MemoryStore } from './memory-store.ts';
import { ScheduleChecker } from './schedule-checker.ts';
import { runUntil, simCalendar } from './sim-env.ts';
import { SimHost } from './sim-host.ts';
import { SimLink, type LinkEnds, type LinkTap, type NetworkFaults } from './sim-link.ts';
import { SimNodeNetwork } from './node-network.ts';
import { Trace } from './trace.ts';
import { startSdkWorker } from './sdk-worker.ts';
import { BEHAVIOURS, Downstream, SimProducer, SimWorker, type Dialer } from './workload.ts';

export interface SimOptions {
  seed: number;
  nodes: number;
  jobs: number;
  faults: boolean;
  /** Virtual length of the safety phase. */
  durationMs: number;
  /** Virtual time the liveness phase may take. */
  livenessBoundMs: number;
  shards: number;
  /** Bugs planted in the node (test-hooks.ts) or in the store model (locking-store.ts). */
  planted: Array<PlantedBug | ModelBug>;
  keepTrace: boolean;
  /** Hostile tenants and connections (hostile.ts): in some seeds, in every seed, or never. */
  hostile: 'seeded' | 'always' | 'never';
  /** The nodes' hello deadline when not the default one the checkers hold them to: a node that
   * does not enforce it, for the checkers' own test. */
  nodeHelloDeadlineMs: number | null;
}

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  seed: 1,
  nodes: 3,
  jobs: 200,
  faults: true,
  durationMs: 30_000,
  livenessBoundMs: 180_000,
  shards: 16,
  planted: [],
  keepTrace: false,
  hostile: 'seeded',
  nodeHelloDeadlineMs: null,
};

export interface SimResult {
  seed: number;
  ok: boolean;
  violation: InvariantViolation | null;
  trace: string;
  traceEvents: string[] | null;
  plan: string;
  virtualMs: number;
  wallMs: number;
  events: number;
  acked: number;
  duplicateExecutions: number;
  /** How often the connection checks applied (hostile-checkers.ts). */
  connectionChecks: HostileCheckers['counts'];
  /** What the downstream lane's breaker went through (breaker-checker.ts). */
  breaker: BreakerChecker['stats'];
}

/** Shard leases in the simulator: short, so takeovers happen within a run. */
const SHARD_LEASE_MS = 6_000;
/** Job leases (OwnerConfig.leaseMs). */
const JOB_LEASE_MS = 3_000;
const START_MS = 1_764_300_000_000;
/** After healing, how long past the failover bound the run goes on for the schedule checker. */
const SCHEDULE_WATCH_MS = 3_000;

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  const wallStart = performance.now();
  const root = new SeededRandom(options.seed);
  const queue = new EventQueue(START_MS);
  const trace = new Trace(() => queue.nowMs - START_MS, options.keepTrace);
  const plan = options.faults ? swarmPlan(root.derive('faults'), options.nodes, options.durationMs, SHARD_LEASE_MS) : NO_FAULTS;
  const checkers = new Checkers();
  const hooksRandom = root.derive('buggify');
  const planted = new Set<PlantedBug | ModelBug>(options.planted);
  let healed = false;
  const hooks: TestHooks = {
    buggify: (site) => !healed && plan.buggify.includes(site) && hooksRandom.next() < 0.25,
    planted: (bug) => planted.has(bug),
  };

  // The store and its faults.
  const backing = new MemoryBacking(options.shards, () => queue.nowMs, hooks.planted);
  const health = new Health(plan, options.nodes, options.durationMs);
  let hosts: SimHost[] = [];
  const hostileChecks = new HostileCheckers(checkers, queue, health, {
    nowMs: () => queue.nowMs,
    host: (id) => hosts.find((h) => h.id === id),
    shard: (shard) => backing.shards[shard]!,
    cluster: plan.cluster,
    helloDeadlineMs: DEFAULT_NODE_CONFIG.gateway.helloDeadlineMs,
  }, START_MS);
  const schedules = new ScheduleChecker(simCalendar, (invariant, detail) => checkers.report(invariant, detail));
  // The downstream of one lane, down in the seed's outages (on a random stream of its own).
  const downstream = new Downstream(
    DOWNSTREAM_TENANT,
    DOWNSTREAM_QUEUE,
    options.faults ? Downstream.outagesFor(root.derive('downstream'), options.durationMs) : [],
    () => queue.nowMs - START_MS,
  );
  const breakers = new BreakerChecker({
    nowMs: () => queue.nowMs - START_MS,
    startMs: START_MS,
    cluster: plan.cluster,
    health,
    leaseMs: JOB_LEASE_MS,
    shardCount: options.shards,
    shardOwner: (shard) => backing.shards[shard]?.owner ?? null,
    schedule: (delayMs, fn) => void queue.schedule(delayMs, fn),
    report: (invariant, detail) => checkers.report(invariant, detail),
    trace: (event) => trace.add(event),
  });
  backing.observer = {
    acquired: (owner, leases) => {
      checkers.acquired(owner, leases);
      breakers.acquired(owner, leases);
    },
    committed: (batch, outcomes, before) => {
      checkers.committed(batch, outcomes, before);
      hostileChecks.committed(batch, outcomes, before);
      schedules.committed(batch, outcomes);
      breakers.committed(batch, outcomes);
    },
    breakerWritten: (breaker) => breakers.breakerWritten(breaker),
  };
  await schedules.seed(new MemoryStore(backing), options.shards, (shard) => backing.shards[shard]!.epoch, queue.nowMs);
  await breakers.seed(new MemoryStore(backing), options.shards, (shard) => backing.shards[shard]!.epoch, queue.nowMs);
  const storeFaults = (): DatabaseFaults =>
    healed
      ? { errorRate: 0, unknownRate: 0, terminateRate: 0, latencyMinMs: 0.1, latencyMaxMs: 1, slowFactor: () => 1 }
      : {
          errorRate: plan.storeErrorRate,
          unknownRate: plan.storeUnknownRate,
          terminateRate: plan.sessionTerminateRate,
          // Per statement, one way: a commit makes several round trips.
          latencyMinMs: 0.1,
          latencyMaxMs: plan.storeLatencyMaxMs / 2,
          slowFactor: () => (plan.storeSlow.some(([a, b]) => queue.nowMs - START_MS >= a && queue.nowMs - START_MS < b) ? 20 : 1),
        };
  const database = new LockingDatabase(
    queue,
    backing,
    new MemoryStore(backing),
    root.derive('store'),
    storeFaults,
    (bug) => planted.has(bug),
    { deadlock: (detail) => checkers.deadlocked(detail), waited: (op, key, holders) => checkers.lockWaited(op, key, holders) },
    (op) => trace.add(`store:${op}`),
  );

  // The hosts.
  const config: NodeConfig = {
    ...DEFAULT_NODE_CONFIG,
    shardCount: options.shards,
    owner: {
      ...DEFAULT_NODE_CONFIG.owner,
      leaseMs: JOB_LEASE_MS,
      leaseCheckMs: 250,
      memoryJobsMax: plan.ownerMemory?.ready ?? 64,
      ...(plan.ownerMemory === null ? {} : { delayedJobsMax: plan.ownerMemory.delayed }),
      uncommittedMax: plan.uncommittedMax,
      leaseWriteDelayMs: plan.leaseWriteDelayMs ?? DEFAULT_NODE_CONFIG.owner.leaseWriteDelayMs,
    },
    shards: { shardLeaseMs: SHARD_LEASE_MS, safetyMarginMs: 1_500, renewEveryMs: 1_000, acquireRetryMs: 500 },
    gateway: {
      ...DEFAULT_NODE_CONFIG.gateway,
      connInflightMax: plan.connInflightMax,
      helloDeadlineMs: options.nodeHelloDeadlineMs ?? DEFAULT_NODE_CONFIG.gateway.helloDeadlineMs,
      rateLimit: plan.ratePerSecond === null ? null : { perSecond: plan.ratePerSecond, burst: plan.ratePerSecond },
    },
    retention: { ...DEFAULT_NODE_CONFIG.retention, everyMs: 3_600_000 },
    cluster: plan.cluster
      ? {
          membership: { heartbeatEveryMs: 250, suspectAfterMs: 1_000, deadAfterMs: 2_500, forgetAfterMs: 60_000, stableForMs: 1_500, joinTimeoutMs: 10_000 },
          // Each host names its own incarnation and clientUrl, and joins when it restarts.
          incarnation: 0,
          clientUrl: '',
          addrs: [],
          joining: false,
        }
      : null,
  };
  const nodeNetwork = new SimNodeNetwork(
    queue,
    root.derive('node-network'),
    () =>
      healed
        ? { delayMinMs: 0.1, delayMaxMs: 2, dropRate: 0, duplicateRate: 0 }
        : { delayMinMs: 0.1, delayMaxMs: plan.nodeDelayMaxMs, dropRate: plan.nodeDropRate, duplicateRate: plan.nodeDuplicateRate },
    trace,
  );
  // Each incarnation of a host is a process with connections of its own.
  const openStore = (i: number, incarnation: number) => {
    const host = () => hosts[i]!;
    return database.connect(
      {
        node: `n${i}`,
        gone: () => host().incarnation !== incarnation || !host().alive,
        pausedUntilMs: () => host().pausedUntil,
        pause: (forMs) => {
          if (healed) return;
          trace.add(`holder-pause n${i}`);
          health.paused(i, queue.nowMs - START_MS, forMs);
          host().pause(forMs);
        },
      },
      plan.pools ?? REAL_POOL_SIZES,
    );
  };
  hosts = Array.from(
    { length: options.nodes },
    (_, i) =>
      new SimHost(
        `n${i}`,
        queue,
        root.derive(`node-${i}`),
        (incarnation) => openStore(i, incarnation),
        config,
        hooks,
        nodeNetwork.networkOf(`n${i}`),
        (host, event, fields) => {
          hostileChecks.logged(host, event, fields);
          breakers.logged(host, event, fields);
        },
        (host, incarnation, observation) => breakers.observed(host, incarnation, observation),
      ),
  );
  for (const host of hosts) nodeNetwork.add(host);
  for (const host of hosts) host.start();

  // The network between clients and hosts.
  const unreachable = new Set<string>();
  const netRandom = root.derive('network');
  const netFaults = (): NetworkFaults => ({ delayMinMs: 0.1, delayMaxMs: healed ? 2 : plan.netDelayMaxMs, unreachable });
  const tap: LinkTap = {
    delivered: (link, message) => hostileChecks.delivered(link, message),
    closeReached: (link) => hostileChecks.closeReached(link),
    lostWithNode: (link) => hostileChecks.lostWithNode(link),
    sent: (link, message) => breakers.sent(link, message),
  };
  const links = new Set<SimLink>();
  let nextLink = 0;
  const dialerTo = (pick: () => SimHost | undefined, tenant: string): Dialer => (ends) => {
    const host = pick();
    if (host === undefined) return null;
    const link = SimLink.connect(`l${++nextLink}`, host, tenant, queue, netRandom, netFaults, ends, trace, tap);
    if (link !== null) links.add(link);
    return link;
  };
  const workloadRandom = root.derive('workload');
  // The workload: two tenants' producers, and workers on every host (in contention mode a node
  // serves only the shards it wins and offers its workers to nobody else).
  const producers = ['t1', 't2'].map(
    (tenant) => new SimProducer(tenant, queue, workloadRandom.derive(tenant), hosts.map((host) => dialerTo(() => host, tenant)), checkers),
  );
  producers.forEach((p, i) =>
    p.plan(Math.ceil(options.jobs / producers.length) - (i === 0 ? 0 : options.jobs % 2), options.durationMs * 0.7, {
      keyed: 0.6,
      delayed: 0.2,
      burst: plan.connInflightMax < 20_000 || plan.ratePerSecond !== null ? 0.3 : 0.05,
      behaviours: options.faults ? BEHAVIOURS : ['succeed'],
    }),
  );
  // The downstream's lane gets jobs of its own producer, on a stream of its own, which its
  // handlers run as the downstream answers.
  const downstreamProducer = new SimProducer(DOWNSTREAM_TENANT, queue, workloadRandom.derive('downstream'), hosts.map((host) => dialerTo(() => host, DOWNSTREAM_TENANT)), checkers);
  downstreamProducer.plan(Math.ceil(options.jobs / 8), options.durationMs * 0.7, { keyed: 0.6, delayed: 0.2, burst: 0, behaviours: ['succeed'], queue: DOWNSTREAM_QUEUE });
  producers.push(downstreamProducer);
  // On every host, for each tenant (a worker only gets its own tenant's jobs), a worker: one
  // modelled (it can hang or turn zombie on purpose) and one the real SDK (its own credit,
  // heartbeats, reconnects and re-sends, under the same faults), alternating across hosts.
  // Those of the downstream's tenant work its queue too.
  const downstreamOf = (tenant: string) => (tenant === downstream.tenant ? downstream : null);
  const workers = hosts.map((host, i) => {
    const [modelled, sdk] = i % 2 === 0 ? ['t1', 't2'] : ['t2', 't1'];
    const worker = new SimWorker(`w${i}`, modelled, 4, queue, workloadRandom.derive(`w${i}`), dialerTo(() => host, modelled), checkers, downstreamOf(modelled));
    worker.start();
    // It starts on this host and fails over to the hosts it learns of (their `sim://` URLs).
    const byUrl = (url: string) => dialerTo(() => hosts.find((h) => `sim://${h.id}` === url), sdk);
    startSdkWorker(`sim://${host.id}`, byUrl, queue, workloadRandom.derive(`sdk${i}`), checkers, 4, downstreamOf(sdk));
    return worker;
  });

  // Hostile clients, on random streams of their own (a seed without them runs as it did before
  // they existed). Their tenant's jobs are run by its own (hostile) worker only.
  const hostileRandom = root.derive('hostile');
  const hostile = options.hostile === 'never' ? null : drawHostileMix(hostileRandom, options.hostile === 'always');
  if (hostile !== null) {
    const hostileNet = root.derive('hostile-network');
    const dial = (tenant: string, ends: LinkEnds, index?: number): SimLink | null => {
      const host = hosts[index ?? hostileNet.int(hosts.length)]!;
      const link = SimLink.connect(`l${++nextLink}`, host, tenant, queue, hostileNet, netFaults, ends, trace, tap);
      if (link !== null) links.add(link);
      return link;
    };
    if (hostile.worker) {
      const dialers = hosts.map((_, i): Dialer => (ends) => dial(HOSTILE_TENANT, ends, i));
      const producer = new SimProducer(HOSTILE_TENANT, queue, hostileRandom.derive('producer'), dialers, checkers);
      producer.plan(10 + hostileRandom.int(10), options.durationMs * 0.7, { keyed: 0.5, delayed: 0.1, burst: 0, behaviours: ['succeed'] });
      producers.push(producer);
    }
    startHostiles(hostile, {
      queue,
      random: hostileRandom.derive('actors'),
      hosts: hosts.length,
      dial,
      checks: hostileChecks,
      checkers,
      tenants: ['t1', 't2'],
      activeUntilMs: START_MS + options.durationMs + 10_000,
    });
  }

  // The fault schedule.
  const afterMs = (ms: number, fn: () => void) => queue.schedule(ms, () => (healed ? undefined : fn()));
  for (const [h, at, downMs] of plan.crashes) {
    afterMs(at, () => {
      trace.add(`crash n${h}`);
      hosts[h]!.crash();
      if (downMs !== null) afterMs(downMs, () => hosts[h]!.start());
    });
  }
  for (const [h, at, downMs] of plan.leaves) {
    afterMs(at, () => {
      trace.add(`leave n${h}`);
      // Back after `downMs`, or once stopped if that takes longer; after healing too.
      const backAtMs = queue.nowMs + downMs;
      hosts[h]!.leave(() => queue.schedule(Math.max(0, backAtMs - queue.nowMs), () => hosts[h]!.start()));
    });
  }
  for (const [h, at, forMs] of plan.holderPauses) afterMs(at, () => database.pauseHolder(`n${h}`, forMs));
  for (const [h, at, forMs] of plan.pauses) afterMs(at, () => (trace.add(`pause n${h}`), hosts[h]!.pause(forMs)));
  for (const [h, at, skewMs] of plan.clockJumps) afterMs(at, () => (hosts[h]!.skewMs = skewMs));
  for (const [h, at, forMs] of plan.isolations) {
    afterMs(at, () => {
      unreachable.add(`n${h}`);
      for (const link of links) if (link.host.id === `n${h}`) link.disconnect();
      afterMs(forMs, () => unreachable.delete(`n${h}`));
    });
  }
  const partitionRandom = root.derive('partitions');
  for (const partition of plan.nodePartitions) {
    const id = (i: number) => `n${i}`;
    switch (partition.kind) {
      case 'isolate':
        afterMs(partition.atMs, () => {
          trace.add(`isolate n${partition.node}`);
          nodeNetwork.isolate(id(partition.node));
          afterMs(partition.forMs, () => nodeNetwork.healAll());
        });
        break;
      case 'split':
        afterMs(partition.atMs, () => {
          const side = new Set(hosts.filter(() => partitionRandom.next() < 0.5).map((h) => h.id));
          trace.add(`split ${[...side].join(',')}`);
          for (const [a, b] of nodeNetwork.links) if (side.has(a) !== side.has(b)) nodeNetwork.block(a, b);
          afterMs(partition.forMs, () => nodeNetwork.healAll());
        });
        break;
      case 'one_way':
        afterMs(partition.atMs, () => {
          nodeNetwork.block(id(partition.from), id(partition.to));
          afterMs(partition.forMs, () => nodeNetwork.unblock(id(partition.from), id(partition.to)));
        });
        break;
      case 'swizzle':
        afterMs(partition.atMs, () => {
          const links = nodeNetwork.links;
          links.forEach(([a, b], i) => afterMs(i * partition.stepMs, () => nodeNetwork.block(a, b)));
          const restore = [...links];
          for (let i = restore.length - 1; i > 0; i--) {
            const j = partitionRandom.int(i + 1);
            [restore[i], restore[j]] = [restore[j]!, restore[i]!];
          }
          restore.forEach(([a, b], i) => afterMs((links.length + i) * partition.stepMs, () => nodeNetwork.unblock(a, b)));
        });
        break;
      case 'flap':
        for (let k = 0; k < partition.times; k++) {
          afterMs(partition.atMs + k * partition.periodMs * 2, () => nodeNetwork.isolate(id(partition.node)));
          afterMs(partition.atMs + k * partition.periodMs * 2 + partition.periodMs, () => nodeNetwork.healAll());
        }
        break;
    }
  }
  if (plan.disconnectsPerSecond > 0) {
    const dropOne = () => {
      const open = [...links].filter((l) => l.open);
      if (open.length > 0) open[netRandom.int(open.length)]!.disconnect();
      afterMs((1_000 / plan.disconnectsPerSecond) * (0.5 + netRandom.next()), dropOne);
    };
    afterMs(1_000 / plan.disconnectsPerSecond, dropOne);
  }

  // Safety phase.
  const safetyEnd = START_MS + options.durationMs;
  await runUntil(queue, () => false, safetyEnd, () => checkers.violation !== null);

  // Liveness phase: heal everything and wait for every acknowledged job to finish.
  healed = true;
  const report = (invariant: string, detail: string) => checkers.report(invariant, detail);
  new FailoverChecker(queue, () => hosts, options.shards, failoverBoundMs(config), report).start();
  const readyJobs = new ReadyJobsChecker(queue, () => hosts, workers, (nowMs) => checkers.pendingDue(nowMs), report, (due) => breakers.gated(due, config.owner.memoryJobsMax));
  // The breaker closes within its bound once the downstream is up again too.
  const breakerClosedByMs = START_MS + breakers.healed(downstream.healedAtMs, closeBoundMs(SIM_BREAKER, failoverBoundMs(config)), failoverBoundMs(config));
  checkers.onLeased = (job) => readyJobs.leased(job);
  readyJobs.start();
  unreachable.clear();
  nodeNetwork.healAll();
  for (const host of hosts) {
    host.resume();
    host.skewMs = 0;
    if (!host.alive) host.start();
  }
  const settled = () => !plan.cluster || clusterSettled(hosts, options.shards);
  const finished = () => producers.every((p) => p.outstanding === 0) && checkers.unfinished().length === 0 && settled();
  const done = await runUntil(queue, finished, safetyEnd + options.livenessBoundMs, () => checkers.violation !== null);
  for (const p of producers) checkers.refusedLeftNothing(p.refusedKeys());
  if (checkers.violation === null && !done && !settled()) {
    checkers.violation = new InvariantViolation('liveness', `after healing, the nodes' views or the shard map did not converge within ${options.livenessBoundMs / 1000} s: ${describeCluster(hosts)}`);
  }
  // Schedules: every tick from healing on runs. Those that fell while a shard found its owner
  // again run late, so the run goes on past the failover bound before they are counted.
  const watchedUntil = Math.max(queue.nowMs, safetyEnd + failoverBoundMs(config) + SCHEDULE_WATCH_MS);
  await runUntil(queue, () => false, watchedUntil, () => checkers.violation !== null);
  if (checkers.violation === null) schedules.checkRan(safetyEnd, watchedUntil - SCHEDULE_WATCH_MS);
  // A breaker still not closed: the run goes on until it closes or its bound is up.
  if (!breakers.closed) await runUntil(queue, () => breakers.closed, breakerClosedByMs, () => checkers.violation !== null);
  if (checkers.violation === null && !done) {
    const left = checkers.unfinished();
    const example = left[0] === undefined ? 'none' : `${left[0]} of ${checkers.job(left[0])?.tenant ?? '?'} is ${checkers.job(left[0])?.state ?? 'missing'}`;
    checkers.violation = new InvariantViolation(
      'liveness',
      `after healing, ${left.length} acknowledged jobs not terminal and ${producers.reduce((n, p) => n + p.outstanding, 0)} submissions unanswered within ${options.livenessBoundMs / 1000} s (e.g. ${example})`,
    );
  }
  return {
    seed: options.seed,
    ok: checkers.violation === null,
    violation: checkers.violation,
    trace: trace.hex(),
    traceEvents: trace.kept,
    plan: [describePlan(plan), describeOutages(downstream), describeHostile(hostile)].filter((p) => p !== '').join(' '),
    virtualMs: queue.nowMs - START_MS,
    wallMs: performance.now() - wallStart,
    events: queue.eventsRun,
    acked: checkers.acked.size,
    duplicateExecutions: checkers.duplicateExecutions(),
    connectionChecks: hostileChecks.counts,
    breaker: breakers.stats,
  };
}

function describeOutages(downstream: Downstream): string {
  if (downstream.outages.length === 0) return '';
  return `downstream-down=${downstream.outages.map(([from, to]) => `${(from / 1000).toFixed(1)}-${(to / 1000).toFixed(1)}s`).join('+')}`;
}

/** After healing: every node sees every node in the ring, and every shard is served by exactly
 * one node. */
function clusterSettled(hosts: SimHost[], shards: number): boolean {
  const ids = hosts.map((h) => h.id).sort().join(',');
  if (hosts.some((h) => h.node === null || h.node.ring()?.join(',') !== ids)) return false;
  const servedBy = new Array<number>(shards).fill(0);
  for (const host of hosts) for (const shard of host.node!.routes.shards()) servedBy[shard]!++;
  return servedBy.every((n) => n === 1);
}

function describeCluster(hosts: SimHost[]): string {
  return hosts.map((h) => `${h.id} ring=[${h.node?.ring()?.join(',') ?? 'down'}] serves ${h.node?.routes.served ?? 0}`).join('; ');
}
