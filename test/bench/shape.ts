// The shape every system is measured in, and the figures of its JSON line. One producer
// process and `workers` worker processes (producer.ts, worker.ts, each loading the system's
// client adapter), on a fresh database:
//
// 1. Throughput, the measured phase: the producer adds `jobs` jobs in sequential calls of
//    `chunk` while the workers run them.
//    - submitPerSec: jobs / (first add call → last call acknowledged, i.e. committed);
//    - e2ePerSec: jobs / (first add call → every completion committed). The workers report
//      how many handlers they have started; once that reaches `jobs`, each drains (closes its
//      worker, which returns when every outcome is committed) and says when it was done. So
//      nothing queries the jobs table while the phase runs, and the end is known within the
//      workers' report interval (10 ms);
//    - cpuUsPerJob: CPU time per job of each role (the system's nodes, the workers, the
//      producer, PostgreSQL: every process of the server, background ones included), from
//      /proc, read before and after the phase; otherCpuSec is what the rest of the machine
//      used meanwhile (on a shared machine, a large figure means a disturbed run);
//    - the PostgreSQL figures of pg-stats.ts.
// 2. Latency: `latencyJobs` jobs added one call each, at 200 calls a second; start latency is
//    from the add call to the handler's start (p50, p99).
// Then one query checks that every job finished (system.verify).

import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { machineBusyMs, treeCpuMs } from './cpu-usage.ts';
import { openPgWindow, postmasterPid, enableStatements, statsConnection, type PgFigures, type RoundTripCounter } from './pg-stats.ts';
import type { FromProducer, FromWorker, ToProducer, ToWorker } from './process-protocol.ts';

const HERE = import.meta.dirname;
const LATENCY_RATE_PER_SEC = 200;
/** A phase that sees no handler start for this long has lost jobs, or a process hung. */
const STALL_MS = 60_000;
/** Preloaded into every process that talks to PostgreSQL. */
export const ROUND_TRIPS_PRELOAD = pathToFileURL(join(HERE, 'round-trips.mjs')).href;

/** With KAIROS_BENCH_PROFILE=DIR, every process of a run (nodes, workers, producer) writes its
 * CPU profile to DIR when it exits, named with its pid; the log names each role's pids. */
export function profileFlags(): string[] {
  const dir = process.env.KAIROS_BENCH_PROFILE;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

/** A system set up on the benchmark's database, ready for its producer and workers. */
export interface SystemUnderTest {
  /** Its name in the output. */
  name: string;
  /** The client adapter module (a ClientAdapter) the producer and worker processes load. */
  adapterModule: string;
  producerOptions: Record<string, unknown>;
  workerOptions(index: number): Record<string, unknown>;
  /** Its own server processes (Kairos's nodes); none for graphile-worker. */
  nodePids: number[];
  /** Matches the text of its statements that write job rows (add, lease, finish), whose row
   * counts in pg_stat_statements are job writes. */
  jobWrites: RegExp;
  /** Throws unless every job finished, as it should; run once, after the measurements. */
  verify(url: string, jobs: number): Promise<void>;
  /** Figures of its own for the line (peak RSS of the nodes, settings). */
  figures(): Record<string, unknown>;
}

/** The command-line options of bench.ts and compare.ts that set the shape, with defaults. */
export const SHAPE_ARGS = {
  nodes: { type: 'string', default: '1' },
  jobs: { type: 'string', default: '50000' },
  workers: { type: 'string', default: '2' },
  /** Kairos's handler slots per worker process (graphile-worker's are its preset's). */
  concurrency: { type: 'string', default: '128' },
  // The mission's average job carries 2 KB.
  'payload-bytes': { type: 'string', default: '2048' },
  chunk: { type: 'string', default: '1000' },
  'latency-jobs': { type: 'string', default: '1000' },
} as const;

export type ShapeArgs = Record<keyof typeof SHAPE_ARGS, string>;

export const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

/** The shape's numbers from the command line, for measureShape. */
export function shapeOf(args: ShapeArgs): Pick<ShapeOptions, 'jobs' | 'chunk' | 'payloadBytes' | 'latencyJobs' | 'workers'> {
  return {
    jobs: Number(args.jobs),
    chunk: Number(args.chunk),
    payloadBytes: Number(args['payload-bytes']),
    latencyJobs: Number(args['latency-jobs']),
    workers: Number(args.workers),
  };
}

export interface ShapeOptions {
  /** The benchmark's database. */
  url: string;
  jobs: number;
  chunk: number;
  payloadBytes: number;
  latencyJobs: number;
  workers: number;
  roundTrips: RoundTripCounter;
  log(line: string): void;
  /** Something to run beside the throughput phase (Kairos's --drop-partition): started with
   * the phase, given a promise of the moment half its jobs have started; its figures join the
   * line. It is awaited after the phase's figures are taken, before the latency phase. */
  alongside?(halfway: Promise<void>): Promise<Record<string, unknown>>;
}

export interface CpuUsPerJob {
  node: number | null;
  workers: number;
  producer: number;
  postgres: number | null;
  total: number;
}

export interface BenchLine extends Partial<PgFigures> {
  system: string;
  jobs: number;
  payloadBytes: number;
  chunk: number;
  submitPerSec: number;
  e2ePerSec: number;
  startLatencyP50Ms: number;
  startLatencyP99Ms: number;
  cpuUsPerJob: CpuUsPerJob;
  otherCpuSec: number;
  [more: string]: unknown;
}

export async function measureShape(system: SystemUnderTest, options: ShapeOptions): Promise<BenchLine> {
  const { jobs, chunk, payloadBytes, latencyJobs, log } = options;
  const env = options.roundTrips.env;
  const workers = await Promise.all(
    Array.from({ length: options.workers }, (_, i) => spawnRole<ToWorker, FromWorker>('worker.ts', system.adapterModule, system.workerOptions(i), env)),
  );
  const producer = await spawnRole<ToProducer, FromProducer>('producer.ts', system.adapterModule, system.producerOptions, env);
  const progress = new Progress(workers);
  const db = await statsConnection(options.url);
  try {
    const statements = await enableStatements(db);
    if (!statements) log('pg_stat_statements is not loaded on this server: no statement figures');
    const postmaster = await postmasterPid(db);

    log(`${system.name}: ${jobs} jobs of ${payloadBytes} bytes added in chunks of ${chunk}, ${workers.length} worker processes`);
    const clientPids = [...system.nodePids, ...workers.map((w) => w.pid), producer.pid];
    const pgWindow = await openPgWindow(db, statements, options.roundTrips, clientPids);
    const roles = { node: system.nodePids, workers: workers.map((w) => w.pid), producer: [producer.pid], postgres: postmaster === null ? [] : [postmaster] };
    const cpuBefore = roleCpuMs(roles);
    const busyBeforeMs = machineBusyMs();
    const ownBefore = process.cpuUsage();

    producer.send({ t: 'submit', jobs, chunk, payloadBytes });
    // Settled at once, so that a failure of it is not unhandled while the phase runs.
    const alongside = options.alongside?.(progress.until(Math.ceil(jobs / 2))).then(
      (figures) => ({ figures }),
      (error: unknown) => ({ error }),
    );
    const [submitted] = await Promise.all([producer.next('submitted'), progress.until(jobs)]);
    const endMs = await drain(workers);

    const cpuAfter = roleCpuMs(roles);
    const own = process.cpuUsage(ownBefore);
    const roleMs = (role: keyof typeof roles) => cpuAfter[role] - cpuBefore[role];
    const usPerJob = (ms: number) => Math.round((ms * 1000) / jobs);
    const allRolesMs = roleMs('node') + roleMs('workers') + roleMs('producer') + roleMs('postgres');
    const otherMs = machineBusyMs() - busyBeforeMs - allRolesMs - (own.user + own.system) / 1000;
    const e2eSec = (endMs - submitted.firstCallMs) / 1000;
    // CPU profiles (profileFlags) are timed on the same clock, so they can be cut to the phase.
    log(`throughput phase: ${submitted.firstCallMs.toFixed(0)}-${endMs.toFixed(0)} ms on CLOCK_MONOTONIC; pids ${JSON.stringify(roles)}`);
    const pgFigures = await pgWindow.read(jobs, e2eSec, system.jobWrites, log);
    let besideFigures: Record<string, unknown> = {};
    if (alongside !== undefined) {
      const beside = await alongside;
      if ('error' in beside) throw beside.error;
      besideFigures = beside.figures;
    }

    log(`latency: ${latencyJobs} jobs, one call each, at ${LATENCY_RATE_PER_SEC}/s`);
    await reopen(workers);
    producer.send({ t: 'paced', jobs: latencyJobs, ratePerSec: LATENCY_RATE_PER_SEC, payloadBytes });
    await Promise.all([producer.next('paced-done'), progress.until(jobs + latencyJobs)]);
    const latencies: number[] = [];
    for (const worker of workers) {
      worker.send({ t: 'latencies' });
      latencies.push(...(await worker.next('latencies')).ms);
    }
    latencies.sort((a, b) => a - b);
    await drain(workers);
    await system.verify(options.url, jobs + latencyJobs);

    return {
      system: system.name,
      jobs,
      payloadBytes,
      chunk,
      submitPerSec: Math.round(jobs / ((submitted.lastAckMs - submitted.firstCallMs) / 1000)),
      e2ePerSec: Math.round(jobs / e2eSec),
      startLatencyP50Ms: round2(percentile(latencies, 0.5)),
      startLatencyP99Ms: round2(percentile(latencies, 0.99)),
      cpuUsPerJob: {
        node: roles.node.length === 0 ? null : usPerJob(roleMs('node')),
        workers: usPerJob(roleMs('workers')),
        producer: usPerJob(roleMs('producer')),
        postgres: postmaster === null ? null : usPerJob(roleMs('postgres')),
        total: usPerJob(allRolesMs),
      },
      otherCpuSec: Math.round(Math.max(0, otherMs) / 100) / 10,
      ...pgFigures,
      ...besideFigures,
      ...system.figures(),
      workers: workers.length,
    };
  } finally {
    progress.close();
    await db.end();
    await Promise.all([producer, ...workers].map((role) => role.stop()));
  }
}

/** Drains every worker; resolves with the moment the last one had every outcome committed. */
async function drain(workers: Array<Role<ToWorker, FromWorker>>): Promise<number> {
  const drained = await Promise.all(
    workers.map(async (worker) => {
      worker.send({ t: 'drain' });
      return (await worker.next('drained')).atMs;
    }),
  );
  return Math.max(...drained);
}

async function reopen(workers: Array<Role<ToWorker, FromWorker>>): Promise<void> {
  await Promise.all(
    workers.map(async (worker) => {
      worker.send({ t: 'reopen' });
      await worker.next('reopened');
    }),
  );
}

function roleCpuMs<R extends string>(roles: Record<R, number[]>): Record<R, number> {
  return Object.fromEntries(Object.entries<number[]>(roles).map(([role, pids]) => [role, treeCpuMs(pids)])) as Record<R, number>;
}

/** Handlers started over all workers, as they report them. */
class Progress {
  private readonly started: number[];
  private readonly redelivered: number[];
  private waiting: Array<{ jobs: number; reached(): void; abandon(): void }> = [];

  constructor(workers: Array<Role<ToWorker, FromWorker>>) {
    this.started = workers.map(() => 0);
    this.redelivered = workers.map(() => 0);
    workers.forEach((worker, i) =>
      worker.onMessage((message) => {
        if (message.t !== 'progress') return;
        this.started[i] = message.started;
        this.redelivered[i] = message.redelivered;
        for (const waiter of this.waiting.filter((w) => this.count() >= w.jobs)) waiter.reached();
      }),
    );
  }

  /** Distinct jobs started: a job run a second time (its lease lost) does not count twice. */
  private count(): number {
    return sum(this.started) - sum(this.redelivered);
  }

  /** Resolves once `jobs` distinct jobs have started; rejects when none starts for STALL_MS,
   * or when the measurement ends first (close). */
  until(jobs: number): Promise<void> {
    if (this.count() >= jobs) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let seen = this.count();
      const done = () => {
        clearInterval(watch);
        this.waiting = this.waiting.filter((w) => w !== waiter);
      };
      const watch = setInterval(() => {
        if (this.count() === seen) {
          done();
          reject(new Error(`stalled: ${seen} of ${jobs} jobs started, none in ${STALL_MS / 1000} s`));
        }
        seen = this.count();
      }, STALL_MS);
      const waiter = {
        jobs,
        reached: () => {
          done();
          resolve();
        },
        abandon: () => {
          done();
          reject(new Error(`the measurement ended before ${jobs} jobs started`));
        },
      };
      this.waiting.push(waiter);
    });
  }

  /** Rejects whatever still waits. */
  close(): void {
    for (const waiter of [...this.waiting]) waiter.abandon();
  }
}

interface Role<In, Out extends { t: string }> {
  readonly pid: number;
  send(message: In): void;
  /** The next message of kind `t` not yet taken. */
  next<T extends Out['t']>(t: T): Promise<Extract<Out, { t: T }>>;
  onMessage(listener: (message: Out) => void): void;
  /** Closes the channel, which ends the process, and waits for it. */
  stop(): Promise<void>;
}

async function spawnRole<In, Out extends { t: string }>(script: string, adapterModule: string, options: Record<string, unknown>, env: Record<string, string>): Promise<Role<In, Out>> {
  const child: ChildProcess = fork(join(HERE, script), [adapterModule, JSON.stringify(options)], {
    execArgv: ['--import', 'tsx', '--import', ROUND_TRIPS_PRELOAD, ...profileFlags()],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const inbox: Out[] = [];
  const listeners: Array<(message: Out) => void> = [];
  let waiter: (() => void) | null = null;
  child.on('message', (message: Out) => {
    for (const listener of listeners) listener(message);
    if (message.t === 'progress') return;
    inbox.push(message);
    waiter?.();
  });
  const role: Role<In, Out> = {
    pid: child.pid!,
    send: (message) => void child.send(message as object),
    async next(t) {
      for (;;) {
        const at = inbox.findIndex((m) => m.t === t);
        if (at >= 0) return inbox.splice(at, 1)[0] as Extract<Out, { t: typeof t }>;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${script} exited (${child.signalCode ?? `code ${child.exitCode}`})`);
        await Promise.race([new Promise<void>((resolve) => (waiter = resolve)), exited]);
      }
    },
    onMessage: (listener) => void listeners.push(listener),
    async stop() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
  await role.next('ready' as Out['t']);
  return role;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
