// CPU time of this process, of the PostgreSQL server it started, of given process trees (the
// benchmark's roles), and of everything else on the machine, from /proc (Linux). On a shared
// 2-core machine a throughput figure means little without knowing how much of the CPU the
// benchmark actually got; CPU time per job does not depend on that.

import { readFileSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';

const TICK_MS = 10; // USER_HZ is 100 on Linux
const SAMPLE_EVERY_MS = 250;
const RESCAN_EVERY = 8;

export interface CpuMeter {
  /** Stops sampling and describes the interval for `units` units of work (jobs, rows). */
  stop(units: number, unit: string): string;
}

/** Starts measuring. Server processes are sampled periodically because a pool may close a
 * connection mid-run, and an exited backend's CPU time can no longer be read. */
export function startCpuMeter(): CpuMeter {
  if (!existsProc()) return { stop: () => 'cpu: n/a (no /proc)' };
  const startedMs = performance.now();
  const ownStart = process.cpuUsage();
  const busyStart = machineBusyMs();
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let samples = 0;
  const sample = (): void => {
    // Finding new backends means reading every process's stat file; reading the known ones
    // is cheap. Rescan now and then, so the meter costs little of the CPU it measures.
    const pids = samples++ % RESCAN_EVERY === 0 ? serverPids() : [...last.keys()];
    for (const pid of pids) {
      const cpuMs = processCpuMs(pid);
      if (cpuMs === null) continue;
      if (!first.has(pid)) first.set(pid, cpuMs);
      last.set(pid, cpuMs);
    }
  };
  sample();
  const timer = setInterval(sample, SAMPLE_EVERY_MS);
  return {
    stop(units, unit) {
      clearInterval(timer);
      sample();
      const wallMs = performance.now() - startedMs;
      const own = process.cpuUsage(ownStart);
      const ownMs = (own.user + own.system) / 1000;
      let serverMs = 0;
      for (const [pid, end] of last) serverMs += end - first.get(pid)!;
      const othersMs = Math.max(0, machineBusyMs() - busyStart - ownMs - serverMs);
      const perUnitUs = ((ownMs + serverMs) * 1000) / units;
      return (
        `cpu: bench ${(ownMs / 1000).toFixed(1)} s + postgres ${(serverMs / 1000).toFixed(1)} s ` +
        `= ${perUnitUs.toFixed(0)} µs per ${unit}; other processes took ${(othersMs / 1000).toFixed(1)} s ` +
        `of the ${((availableParallelism() * wallMs) / 1000).toFixed(1)} core-seconds`
      );
    },
  };
}

function existsProc(): boolean {
  try {
    readFileSync('/proc/stat');
    return true;
  } catch {
    return false;
  }
}

/** Every descendant of this process: the embedded server and its backends. */
function serverPids(): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== null) parentOf.set(Number(entry), Number(fields[1]));
  }
  const tree = new Set([process.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parentOf) {
      if (tree.has(ppid) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  tree.delete(process.pid);
  return [...tree];
}

/** User plus system CPU time of a process so far, all threads; null once it is gone. */
export function processCpuMs(pid: number): number | null {
  const fields = statFields(pid);
  return fields === null ? null : (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** CPU time so far of the processes in `roots` with all their descendants, in ms, including
 * the descendants that have exited and been waited for (a parent's cutime and cstime). Two
 * readings bracket a phase without sampling in between: a child that exits meanwhile (a
 * PostgreSQL backend whose pool closed it) moves from the live sum into its parent's
 * waited-for time, so it is neither lost nor counted twice. */
export function treeCpuMs(roots: number[]): number {
  const childrenOf = new Map<number, number[]>();
  const ownMs = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields === null) continue;
    const ppid = Number(fields[1]);
    childrenOf.set(ppid, [...(childrenOf.get(ppid) ?? []), Number(entry)]);
    ownMs.set(Number(entry), (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * TICK_MS);
  }
  let totalMs = 0;
  const pending = [...roots];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    totalMs += ownMs.get(pid) ?? 0;
    pending.push(...(childrenOf.get(pid) ?? []));
  }
  return totalMs;
}

/** The parent of a process; null once it is gone. */
export function parentPid(pid: number): number | null {
  const fields = statFields(pid);
  return fields === null ? null : Number(fields[1]);
}

/** The fields of /proc/<pid>/stat after the command name; null once the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU time the machine's processes and kernel have used since boot: user, nice, system, irq
 * and softirq. Not idle or iowait; not steal (the hypervisor's); not guest, which user
 * already includes. */
export function machineBusyMs(): number {
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq) * TICK_MS;
}
