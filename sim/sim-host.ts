// A simulated machine running one Kairos node: the real node (createNode) on the simulated
// environment, with the faults a machine has. A host is a factory, so the harness can crash it
// (every actor, mailbox and timer is gone; the store keeps what was committed) and start it
// again; pause it past its leases (a zombie that wakes up and acts on stale state); and skew or
// jump its wall clock.

import type { Env, Network, Timers } from '../node/core/env.ts';
import { createNode, type KairosNode, type NodeConfig } from '../node/core/node.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Store } from '../node/core/store.ts';
import type { Observation, TestHooks } from '../node/core/test-hooks.ts';
import type { EventQueue } from './event-queue.ts';
import { simCalendar } from './sim-env.ts';
import { NO_METRICS } from '../node/core/metrics.ts';

export class SimHost {
  node: KairosNode | null = null;
  /** Incarnations so far: a restarted host is a new process. */
  incarnation = 0;
  private pausedUntilMs = 0;
  /** Offset of this host's wall clock from virtual time. */
  skewMs = 0;
  private readonly onCrash: Array<() => void> = [];

  constructor(
    readonly id: string,
    private readonly queue: EventQueue,
    private readonly random: SeededRandom,
    /** The store of one incarnation: a new process opens its own connections. */
    private readonly openStore: (incarnation: number) => Store,
    private readonly config: NodeConfig,
    private readonly hooks: TestHooks,
    private readonly network: Network,
    /** Sees the node's log lines (the checkers watch some). */
    private readonly onLog: (host: string, event: string, fields?: Record<string, unknown>) => void = () => {},
    /** Sees what the node's sites report (TestHooks.observe), per incarnation. */
    private readonly onObserve: (host: string, incarnation: number, observation: Observation) => void = () => {},
  ) {}

  get alive(): boolean {
    return this.node !== null;
  }

  get paused(): boolean {
    return this.queue.nowMs < this.pausedUntilMs;
  }

  /** When the current pause ends (in the past when not paused). */
  get pausedUntil(): number {
    return this.pausedUntilMs;
  }

  start(): void {
    if (this.node !== null) return;
    this.incarnation++;
    const incarnation = this.incarnation;
    const env: Env = {
      nodeId: this.id,
      clock: { monotonicMs: () => Math.floor(this.queue.nowMs), wallMs: () => Math.floor(this.queue.nowMs + this.skewMs) },
      timers: this.timers(incarnation),
      random: this.random.derive(`incarnation-${incarnation}`),
      logger: { log: (_level, event, fields) => this.onLog(this.id, event, fields) },
      store: this.openStore(incarnation),
      network: this.network,
      calendar: simCalendar,
      metrics: NO_METRICS,
      testHooks: {
        buggify: (site) => this.hooks.buggify(site),
        planted: (bug) => this.hooks.planted(bug),
        observe: (observation) => this.onObserve(this.id, incarnation, observation),
      },
    };
    // A restarted node is a new incarnation (its peers must tell its heartbeats from the old
    // one's), and rejoins a running cluster.
    const cluster = this.config.cluster;
    const config = cluster === null ? this.config : { ...this.config, cluster: { ...cluster, incarnation, clientUrl: `sim://${this.id}`, joining: incarnation > 1 } };
    this.node = createNode(env, config);
    this.node.start();
  }

  /** The process dies: memory, mailboxes and timers are lost at once. */
  crash(): void {
    if (this.node === null) return;
    this.node.system.stopAll();
    this.node = null;
    for (const listener of this.onCrash.splice(0)) listener();
  }

  /** Graceful stop: the node leaves the cluster, hands its shards off and stops; then its
   * connections drop as after a crash. */
  leave(stopped: () => void): void {
    const node = this.node;
    if (node === null) return;
    void node.shutdown().then(() => {
      if (this.node !== node) return;
      this.node = null;
      for (const listener of this.onCrash.splice(0)) listener();
      stopped();
    });
  }

  /** Call `listener` when the current incarnation crashes (its connections drop). */
  whenCrashed(listener: () => void): void {
    this.onCrash.push(listener);
  }

  /** The process stops running for a while (GC pause, SIGSTOP, a VM migration); nothing it
   * scheduled runs until it wakes. */
  pause(forMs: number): void {
    this.pausedUntilMs = Math.max(this.pausedUntilMs, this.queue.nowMs + forMs);
  }

  resume(): void {
    this.pausedUntilMs = 0;
  }

  /** Runs `fn` on this host now, or when it wakes if paused; never for a dead incarnation. */
  run(fn: () => void): void {
    const incarnation = this.incarnation;
    const go = () => {
      if (this.node === null || this.incarnation !== incarnation) return;
      if (this.paused) return void this.queue.schedule(this.pausedUntilMs - this.queue.nowMs, go);
      fn();
    };
    go();
  }

  /** Timers of one incarnation: they fire late while the host is paused, never after a crash.
   * A timer postponed by a pause keeps its id, so cancelling it still works. */
  private timers(incarnation: number): Timers {
    const live = new Set<number>();
    let nextId = 0;
    const guard = (id: number, fire: () => void) => {
      const attempt = () => {
        if (!live.has(id)) return;
        if (this.incarnation !== incarnation || this.node === null) return void live.delete(id);
        if (this.paused) return void this.queue.schedule(this.pausedUntilMs - this.queue.nowMs, attempt);
        live.delete(id);
        fire();
      };
      return attempt;
    };
    const schedule = (delayMs: number, fire: () => void) => {
      const id = ++nextId;
      live.add(id);
      this.queue.schedule(delayMs, guard(id, fire));
      return id;
    };
    return {
      setTimer: schedule,
      cancelTimer: (id) => void live.delete(id),
      defer: (fn) => void schedule(0, fn),
    };
  }
}
