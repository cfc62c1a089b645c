// `npm run chaos`: the fault harness on real processes (test/chaos/harness.ts). Prints the
// summary and exits 1 on any violation, safety or liveness (2 on a usage error). With --runs N,
// runs seeds seed, seed+1, … one after another and ends with the figures over all of them.
//
//   npm run chaos -- [--nodes 3] [--seconds 60] [--faults kill-node,stop-node,…|all] [--seed N]
//                    [--rate 40] [--shards 32] [--drain-ms 120000] [--runs 1] [--keep] [--json]
//                    [--node-log-level warn|info|debug]

import { parseArgs } from 'node:util';
import { aggregate } from './aggregate.ts';
import { FAULT_KINDS, runChaos, type ChaosReport, type FaultKind } from './harness.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '60' },
    faults: { type: 'string', default: 'all' },
    seed: { type: 'string' },
    rate: { type: 'string', default: '40' },
    shards: { type: 'string', default: '32' },
    'drain-ms': { type: 'string', default: '120000' },
    runs: { type: 'string', default: '1' },
    'node-log-level': { type: 'string', default: 'warn' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const faults = (values.faults === 'all' ? [...FAULT_KINDS] : values.faults!.split(',')) as FaultKind[];
const unknown = faults.filter((f) => !(FAULT_KINDS as readonly string[]).includes(f));
if (unknown.length > 0 || faults.length === 0) {
  process.stderr.write(`chaos: unknown fault(s) ${unknown.join(',')}; known: ${FAULT_KINDS.join(',')}\n`);
  process.exit(2);
}
const firstSeed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const reports: ChaosReport[] = [];
for (let run = 0; run < Number(values.runs); run++) {
  const seed = firstSeed + run;
  const report = await runChaos({
    nodes: Number(values.nodes),
    seconds: Number(values.seconds),
    faults,
    seed,
    rate: Number(values.rate),
    shards: Number(values.shards),
    drainMs: Number(values['drain-ms']),
    keep: values.keep,
    nodeLogLevel: values['node-log-level'],
  });
  reports.push(report);
  process.stdout.write(`${values.json ? JSON.stringify(report) : report.summary}\n`);
  process.stdout.write(`reproduce: npm run chaos -- --nodes ${values.nodes} --seconds ${values.seconds} --faults ${faults.join(',')} --seed ${seed} --rate ${values.rate}\n`);
}
if (reports.length > 1) {
  const figures = aggregate(reports);
  process.stdout.write(`${values.json ? JSON.stringify(figures) : figures.summary}\n`);
}
process.exit(reports.some((r) => r.safety.length + r.liveness.length > 0) ? 1 : 0);
