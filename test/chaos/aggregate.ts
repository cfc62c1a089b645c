// Figures over several chaos runs (`npm run chaos -- --runs N`): per fault kind, how often it
// was injected and its failover time (min, median, max; never recovered counted apart), and
// over all runs the deadlocks, node deaths, `internal` answers and queue wait by node, so that a
// claim like "failover within 6 s" rests on a distribution rather than one lucky run.

import type { ChaosReport, FaultKind } from './harness.ts';

export interface FaultFigures {
  kind: FaultKind;
  injected: number;
  notRecovered: number;
  failoverMs: { min: number; median: number; max: number } | null;
}

export interface ChaosAggregate {
  runs: number;
  seeds: number[];
  faults: FaultFigures[];
  deadlocks: number;
  nodeDeaths: number;
  internalAnswers: number[];
  safetyViolations: number;
  livenessViolations: number;
  /** p99 queue wait by node name, one entry per run. */
  queueWaitP99Ms: Record<string, number[]>;
  summary: string;
}

export function aggregate(reports: ChaosReport[]): ChaosAggregate {
  const kinds = [...new Set(reports.flatMap((r) => r.faults.map((f) => f.kind)))].sort();
  const faults = kinds.map((kind): FaultFigures => {
    const records = reports.flatMap((r) => r.faults.filter((f) => f.kind === kind));
    const times = records.flatMap((f) => (f.failoverMs === null ? [] : [f.failoverMs])).sort((a, b) => a - b);
    return {
      kind,
      injected: records.length,
      // A worker holds no shards: nothing to recover, no failover time.
      notRecovered: kind === 'kill-worker' ? 0 : records.length - times.length,
      failoverMs: times.length === 0 ? null : { min: times[0]!, median: times[Math.floor(times.length / 2)]!, max: times.at(-1)! },
    };
  });
  const queueWaitP99Ms: Record<string, number[]> = {};
  for (const r of reports) for (const w of r.queueWait) (queueWaitP99Ms[w.node] ??= []).push(w.p99Ms);
  const result: Omit<ChaosAggregate, 'summary'> = {
    runs: reports.length,
    seeds: reports.map((r) => r.seed),
    faults,
    deadlocks: sum(reports.map((r) => r.deadlocks)),
    nodeDeaths: sum(reports.map((r) => r.nodeDeaths.length)),
    internalAnswers: reports.map((r) => (r.refusals.internal ?? 0) + (r.refusals['probe:internal'] ?? 0)),
    safetyViolations: sum(reports.map((r) => r.safety.length)),
    livenessViolations: sum(reports.map((r) => r.liveness.length)),
    queueWaitP99Ms,
  };
  return { ...result, summary: summarize(result) };
}

function summarize(a: Omit<ChaosAggregate, 'summary'>): string {
  const lines = [`over ${a.runs} runs (seeds ${a.seeds.join(', ')}):`];
  for (const f of a.faults) {
    const t = f.failoverMs === null ? '-' : `min ${f.failoverMs.min} ms, median ${f.failoverMs.median} ms, max ${f.failoverMs.max} ms`;
    lines.push(`  ${f.kind.padEnd(12)} injected ${f.injected}, failover ${f.kind === 'kill-worker' ? '- (workers have no shards)' : t}${f.notRecovered > 0 ? `, NOT RECOVERED ${f.notRecovered}` : ''}`);
  }
  lines.push(`  deadlocks ${a.deadlocks}; node processes lost ${a.nodeDeaths}; internal answers per run ${a.internalAnswers.join(', ')}`);
  lines.push(`  queue wait p99 by node, per run: ${Object.entries(a.queueWaitP99Ms).map(([node, p99s]) => `${node} ${p99s.join('/')} ms`).join('; ')}`);
  lines.push(`  safety violations ${a.safetyViolations}; liveness violations ${a.livenessViolations}`);
  return lines.join('\n');
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
