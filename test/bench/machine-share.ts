// What the three outage benchmarks (breaker-outage.ts, tick-accuracy.ts, cell-outage.ts) print
// alike: the CPU the rest of the machine took during a run, so a reader can tell a quiet run
// from a crowded one, and ranges over runs.

import pg from 'pg';
import { machineBusyMs, treeCpuMs } from './cpu-usage.ts';
import { postmasterPid } from './pg-stats.ts';

/** CPU the rest of the machine uses from now: all of it but this process's tree (nodes,
 * workers, servers it started) and the PostgreSQL server at `url`, when it runs here. */
export async function cpuWindow(url: string): Promise<{ otherSec(): number }> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const roots = [process.pid, ...[await postmasterPid(db)].filter((pid) => pid !== null)];
  await db.end();
  const [busy, ours] = [machineBusyMs(), treeCpuMs(roots)];
  return { otherSec: () => Math.round((machineBusyMs() - busy - (treeCpuMs(roots) - ours)) / 100) / 10 };
}

/** `lo-hi` of the runs' figures, or the one figure when they agree. */
export function range(xs: number[]): string {
  const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
  return lo === hi ? `${lo}` : `${lo}-${hi}`;
}
