// What a node counts about itself, as the actors record it. The actors see only this interface
// (Env.metrics); node/adapters/prometheus.ts binds it to prom-client and serves it at /metrics,
// and the simulator binds it to nothing. The catalogue below is every counter and histogram the
// actors may record, with its labels: the names, with the `kairos_` prefix, are what operators
// and deploy/grafana/kairos.json read, so renaming one is a change of the node's interface.
// Gauges (jobs per state, shards, members, connections, breakers) are not recorded: the adapter
// reads them from the node when it is scraped (KairosNode.gauges).

export const COUNTERS = {
  submissions_total: { help: 'Submissions answered to clients, by outcome (accepted, refused) and refusal code.', labels: ['outcome', 'reason'] },
  job_transitions_total: { help: 'Job state changes, by tenant, queue and the state reached (leases as they are granted, the rest as they commit).', labels: ['tenant', 'queue', 'to'] },
  leases_granted_total: { help: 'Leases handed to workers.', labels: [] },
  leases_expired_total: { help: 'Leases that ran out before their worker answered.', labels: [] },
  shard_acquisitions_total: { help: 'Shards this node acquired (each at a new epoch).', labels: [] },
  shard_losses_total: { help: 'Shards this node stopped serving, by why (stopped, deposed, failed).', labels: ['exit'] },
  forwards_total: { help: 'Requests forwarded to the node that owns their shard, by kind and outcome (answered, lost).', labels: ['kind', 'outcome'] },
  breaker_transitions_total: { help: 'Circuit breaker state changes this node decided, by the state reached.', labels: ['to'] },
} as const satisfies Record<string, { help: string; labels: readonly string[] }>;

export const HISTOGRAMS = {
  commit_batch_writes: { help: 'Writes per committed transaction of the group commit.', buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] },
  commit_duration_seconds: { help: 'Time from sending a group commit to its answer.', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10] },
} as const satisfies Record<string, { help: string; buckets: readonly number[] }>;

export type CounterName = keyof typeof COUNTERS;
export type HistogramName = keyof typeof HISTOGRAMS;
/** The labels a counter takes, each a string. */
export type LabelsOf<N extends CounterName> = { [L in (typeof COUNTERS)[N]['labels'][number]]: string };

export interface Metrics {
  inc<N extends CounterName>(name: N, labels: LabelsOf<N>, by?: number): void;
  observe(name: HistogramName, value: number): void;
}

/** Counts nothing: the simulator, and nodes without an HTTP listener. */
export const NO_METRICS: Metrics = {
  inc() {},
  observe() {},
};
