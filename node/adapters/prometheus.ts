// The node's metrics in Prometheus form, by prom-client: the counters and histograms the actors
// record through Env.metrics (node/core/metrics.ts has the catalogue), the gauges read from the
// node when it is scraped, and prom-client's own metrics of the process (CPU, memory, event loop
// lag, garbage collection), every name prefixed `kairos_`.
//
// Tenants and queues are chosen by users, so a label of them could grow a series per queue
// without end: the first `laneLabelsMax` (tenant, queue) pairs the node meets get series of their
// own, and the rest are summed under tenant and queue `_other`.

import client from 'prom-client';
import { COUNTERS, HISTOGRAMS, type CounterName, type HistogramName, type LabelsOf, type Metrics } from '../core/metrics.ts';
import { splitLane } from '../core/job/lane.ts';
import type { NodeGauges } from '../core/node.ts';
import type { PoolStats } from '../store/pg-store.ts';

export const LANE_LABELS_MAX_DEFAULT = 100;
const OTHER = '_other';

/** Where the gauges come from, read at each scrape. */
export interface GaugeSources {
  node(): NodeGauges;
  pools(): PoolStats[];
  connections(): number;
}

export class PrometheusMetrics implements Metrics {
  readonly registry = new client.Registry();
  private readonly counters = new Map<CounterName, client.Counter>();
  private readonly histograms = new Map<HistogramName, client.Histogram>();
  /** `tenant\0queue` pairs with series of their own. */
  private readonly lanes = new Set<string>();

  constructor(private readonly laneLabelsMax = LANE_LABELS_MAX_DEFAULT) {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'kairos_' });
    for (const [name, spec] of Object.entries(COUNTERS) as Array<[CounterName, (typeof COUNTERS)[CounterName]]>) {
      this.counters.set(name, new client.Counter({ name: `kairos_${name}`, help: spec.help, labelNames: [...spec.labels], registers: [this.registry] }));
    }
    for (const [name, spec] of Object.entries(HISTOGRAMS) as Array<[HistogramName, (typeof HISTOGRAMS)[HistogramName]]>) {
      this.histograms.set(name, new client.Histogram({ name: `kairos_${name}`, help: spec.help, buckets: [...spec.buckets], registers: [this.registry] }));
    }
  }

  inc<N extends CounterName>(name: N, labels: LabelsOf<N>, by = 1): void {
    const capped: Record<string, string> = { ...labels };
    if ('tenant' in capped && 'queue' in capped) Object.assign(capped, this.lane(capped.tenant!, capped.queue!));
    this.counters.get(name)!.inc(capped, by);
  }

  observe(name: HistogramName, value: number): void {
    this.histograms.get(name)!.observe(value);
  }

  /** Registers the gauges, read from `sources` at each scrape. */
  watch(sources: GaugeSources): void {
    const registers = [this.registry];
    const lane = (l: string) => {
      const [tenant, queue] = splitLane(l);
      return this.lane(tenant, queue);
    };
    new client.Gauge({
      name: 'kairos_jobs',
      help: "Jobs the shard owners on this node hold in memory, by state (ready, delayed, running), tenant and queue; jobs past an owner's memory bound wait in the store, uncounted.",
      labelNames: ['state', 'tenant', 'queue'],
      registers,
      collect() {
        this.reset();
        for (const [l, [ready, delayed, running]] of sources.node().jobs) {
          const labels = lane(l);
          if (ready > 0) this.inc({ state: 'ready', ...labels }, ready);
          if (delayed > 0) this.inc({ state: 'delayed', ...labels }, delayed);
          if (running > 0) this.inc({ state: 'running', ...labels }, running);
        }
      },
    });
    new client.Gauge({
      name: 'kairos_shards_owned',
      help: 'Shards this node serves now.',
      registers,
      collect() {
        this.set(sources.node().shardsOwned);
      },
    });
    new client.Gauge({
      name: 'kairos_members',
      help: 'Members of the cluster by the state this node sees them in (itself not included).',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of sources.node().members) this.set({ state }, n);
      },
    });
    new client.Gauge({
      name: 'kairos_breakers',
      help: 'Circuit breakers that are not closed, as this node knows them, by state.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const state of ['open', 'half_open']) this.set({ state }, sources.node().breakers.get(state) ?? 0);
      },
    });
    new client.Gauge({
      name: 'kairos_pg_pool_waiting',
      help: 'Callers waiting for a PostgreSQL connection, by pool.',
      labelNames: ['pool'],
      registers,
      collect() {
        for (const p of sources.pools()) this.set({ pool: p.pool }, p.waiting);
      },
    });
    new client.Gauge({
      name: 'kairos_pg_pool_connections',
      help: 'PostgreSQL connections open, by pool and whether they are idle.',
      labelNames: ['pool', 'idle'],
      registers,
      collect() {
        for (const p of sources.pools()) {
          this.set({ pool: p.pool, idle: 'true' }, p.idle);
          this.set({ pool: p.pool, idle: 'false' }, p.total - p.idle);
        }
      },
    });
    new client.Gauge({
      name: 'kairos_client_connections',
      help: 'Client and worker WebSocket connections open on this node.',
      registers,
      collect() {
        this.set(sources.connections());
      },
    });
  }

  /** The tenant and queue labels of a lane: its own, or `_other` past the bound. */
  private lane(tenant: string, queue: string): { tenant: string; queue: string } {
    const key = `${tenant}\u0000${queue}`;
    if (this.lanes.has(key)) return { tenant, queue };
    if (this.lanes.size >= this.laneLabelsMax) return { tenant: OTHER, queue: OTHER };
    this.lanes.add(key);
    return { tenant, queue };
  }
}
