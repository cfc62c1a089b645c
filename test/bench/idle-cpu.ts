// `npm run bench:idle`: what a node costs while it only waits. Two `kairos start` processes run
// side by side: one is given --jobs jobs due in 30 days, the other holds none. 30 days is past
// the longest delay setTimeout holds (about 24.9 days): timers that long once fired after
// 1 ms, and every owner holding such a job re-armed its wake every millisecond. After
// --settle seconds both nodes' CPU time is read from /proc over the same --seconds window.
// Prints one JSON line on stdout (CPU ms per second of each node, their ratio, and the
// TimeoutOverflowWarnings the loaded node printed in the window) and a line for people on
// stderr.
//
//   npm run bench:idle [-- --jobs 1000 --seconds 10 --settle 5]
//
// Each node runs on an embedded PostgreSQL of its own (the node's default without
// DATABASE_URL, which is ignored here), so the two are separate clusters; only the node
// processes are measured, not their servers.

import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startChildNode, type ChildNode } from '../../node/cli/child-node.ts';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { freePort } from '../../node/store/embedded.ts';
import { connect } from '../../protocol/sdk/index.ts';
import { processCpuMs } from './cpu-usage.ts';

const TOKEN = 'bench-token-0001';
const DELAY_MS = 30 * 86_400_000;

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    settle: { type: 'string', default: '5' },
  },
});
const jobs = Number(values.jobs);
const windowMs = Number(values.seconds) * 1000;
const settleMs = Number(values.settle) * 1000;
const log = (line: string) => process.stderr.write(`bench:idle: ${line}\n`);

const tempDir = mkdtempSync(join(tmpdir(), 'kairos-idle-'));
// mkdtemp makes it private; the embedded servers run as the postgres user when we are root.
chmodSync(tempDir, 0o755);
const nodes: ChildNode[] = [];

try {
  const keyFile = join(tempDir, 'cluster.key');
  await writeClusterKeyFile(keyFile);
  const startNode = async (name: string) =>
    startChildNode({
      args: ['--port', '0', '--pg-port', String(await freePort()), '--data-dir', join(tempDir, name), '--log-level', 'warn', '--cluster-key', keyFile],
      env: { DATABASE_URL: undefined, KAIROS_TOKENS: `${TOKEN}=bench` },
      // The whole log, to count the overflow warnings in it.
      keepLog: true,
    });
  const [loaded, idle] = await Promise.all([startNode('loaded'), startNode('idle')]);
  nodes.push(loaded, idle);

  log(`submitting ${jobs} jobs due in 30 days to one node`);
  const client = await connect({ url: loaded.url, token: TOKEN, client: 'bench-idle', onWarning: () => {} });
  const payload = new Uint8Array([0x6e]);
  const results = await client.submitMany(Array.from({ length: jobs }, () => ({ queue: 'idle', payload, delayMs: DELAY_MS })));
  await client.close();
  const refused = results.filter((r) => r instanceof Error).length;
  if (refused > 0) throw new Error(`${refused} submissions refused`);

  log(`settling for ${settleMs / 1000} s, then measuring for ${windowMs / 1000} s`);
  await new Promise((r) => setTimeout(r, settleMs));
  const warningsBefore = overflowWarnings(loaded);
  const before = nodes.map(cpuMs);
  const startedMs = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const [loadedMs, idleMs] = nodes.map((node, i) => cpuMs(node) - before[i]!);
  const seconds = (performance.now() - startedMs) / 1000;

  const loadedCpuMsPerSec = round2(loadedMs! / seconds);
  const idleCpuMsPerSec = round2(idleMs! / seconds);
  const ratio = idleMs === 0 ? null : round2(loadedMs! / idleMs!);
  const timeoutOverflowWarnings = overflowWarnings(loaded) - warningsBefore;
  process.stdout.write(`${JSON.stringify({ jobs, delayDays: 30, seconds: round2(seconds), loadedCpuMsPerSec, idleCpuMsPerSec, ratio, timeoutOverflowWarnings })}\n`);
  log(
    `a node holding ${jobs} jobs due in 30 days used ${loadedCpuMsPerSec} ms of CPU per second, an empty one ${idleCpuMsPerSec} ` +
      `(${ratio ?? 'n/a'}x); ${timeoutOverflowWarnings} TimeoutOverflowWarnings in ${round2(seconds)} s`,
  );
} finally {
  await Promise.all(nodes.map((node) => node.stop()));
  rmSync(tempDir, { recursive: true, force: true });
}

function cpuMs(node: ChildNode): number {
  return processCpuMs(node.child.pid!) ?? Number.NaN;
}

function overflowWarnings(node: ChildNode): number {
  return node.log().split('TimeoutOverflowWarning').length - 1;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
