// Store throughput: the full job lifecycle (insert → lease → complete) through the Store's
// batch API, on a real PostgreSQL with durable commits (fsync and synchronous_commit on).
//
//   npm run bench:store [-- --jobs 100000 --batch 1000 --keyed 0.5 --lease-on-insert]
//
// Shape: one producer inserts submissions; four consumers play shard owners (each owns a
// quarter of the shards) and group-commit: each of their batches carries every transition that
// accumulated since their last commit went out (the leases of newly ready jobs and the
// completions of the jobs their previous batch leased), up to --batch writes of each kind.
// Submissions arrive faster than they commit, so the producer, like an owner's committer,
// keeps PRODUCER_IN_FLIGHT batches in flight. Workers finish instantly: the figure is the
// store's ceiling, not a handler's. --lease-on-insert inserts each job already leased, as an
// owner does when a worker is waiting (docs/DESIGN.md, "Throughput": such a job need not be
// written twice).
// Then each transition kind is measured alone ("phases").
//
// CPU time is reported beside the rates: this machine is shared, and µs of CPU per job is the
// figure that does not depend on what else ran (test/bench/cpu-usage.ts).
//
// Uses DATABASE_URL when set, otherwise an embedded server in a fresh temporary directory.

import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { Job } from '../../node/core/job/job.ts';
import type { JobWrite, ShardLease, Store } from '../../node/core/store.ts';
import { chooseDatabase } from '../../node/store/database-url.ts';
import { freePort } from '../../node/store/embedded.ts';
import { createPgStore } from '../../node/store/pg-store.ts';
import { databaseUrl } from '../support/db-url.ts';
import { complete, insertOf, lease, newJob } from '../support/jobs.ts';
import { startCpuMeter } from './cpu-usage.ts';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    keyed: { type: 'string', default: '0.5' },
    'lease-on-insert': { type: 'boolean', default: false },
  },
});
const JOBS = Number(args.jobs);
const BATCH_MAX = Number(args.batch);
const KEYED_FRACTION = Number(args.keyed);
const LEASE_ON_INSERT = args['lease-on-insert'];
const SHARDS = 16;
const CONSUMERS = 4;
const PRODUCER_IN_FLIGHT = 2;
const OWNER = 'bench-node';

interface Stats {
  transactions: number;
  rows: number;
  latenciesMs: number[];
}

const newStats = (): Stats => ({ transactions: 0, rows: 0, latenciesMs: [] });

async function main(): Promise<void> {
  const tempDir = await mkdtemp(join(tmpdir(), 'kairos-store-bench-'));
  await chmod(tempDir, 0o755); // the postgres OS user must reach the data dir when we are root
  const database = await chooseDatabase({ dataDir: join(tempDir, 'pg'), port: await freePort() });
  const name = `kairos_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: database.connectionString });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const store = await createPgStore({ connectionString: databaseUrl(database.connectionString, name), shardCount: SHARDS, poolSize: 8 });
  try {
    await store.retention({ daysAhead: 2, keepDays: 30 });
    const leases = await store.acquireShards(OWNER, Array.from({ length: SHARDS }, (_, i) => i), 10 * 60_000);
    console.log(
      `store bench: ${JOBS} jobs, batches of up to ${BATCH_MAX}, ${KEYED_FRACTION * 100}% with idempotency keys, ` +
        `${SHARDS} shards, 1 producer (${PRODUCER_IN_FLIGHT} batches in flight) + ${CONSUMERS} consumers, ` +
        `${database.embedded ? 'embedded' : 'DATABASE_URL'} PostgreSQL`,
    );
    await lifecycle(store, leases);
    await phases(store, leases);
  } finally {
    await store.close();
    await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
    await admin.end();
    await database.stop();
    await rm(tempDir, { recursive: true, force: true });
  }
}

function makeJobs(count: number, round: string): Job[] {
  const now = Date.now();
  const payload = randomBytes(64);
  return Array.from({ length: count }, (_, i) =>
    newJob({
      shard: i % SHARDS,
      scheduledAtMs: now,
      tenant: `tenant-${i % 10}`,
      queue: 'bench',
      payload,
      idempotencyKey: (i % 1000) / 1000 < KEYED_FRACTION ? `${round}-${i}` : null,
    }),
  );
}

async function timedCommit(store: Store, shards: ShardLease[], writes: JobWrite[], stats: Stats): Promise<void> {
  const started = performance.now();
  const result = await store.commit({ shards, writes });
  stats.latenciesMs.push(performance.now() - started);
  if (result.status !== 'committed' || !result.outcomes.every((o) => o.ok)) {
    throw new Error(`bench commit failed: ${JSON.stringify(result).slice(0, 200)}`);
  }
  stats.transactions++;
  stats.rows += writes.length;
}

/** The concurrent run: producer and consumers at once, every job through its whole life. */
async function lifecycle(store: Store, leases: ShardLease[]): Promise<void> {
  const epochOf = new Map(leases.map((l) => [l.shard, l.epoch]));
  const jobs = makeJobs(JOBS, 'life');
  // Per consumer: jobs to lease, and jobs already leased at insert that wait for completion.
  const ready = Array.from({ length: CONSUMERS }, () => new Fifo<Job>());
  const leasedAtInsert = Array.from({ length: CONSUMERS }, () => new Fifo<Job>());
  const stats = newStats();
  let produced = 0;
  let completed = 0;
  const waiting: (() => void)[] = [];
  const notify = (): void => waiting.splice(0).forEach((resolve) => resolve());

  const producer = async (): Promise<void> => {
    while (produced < jobs.length) {
      const batch = jobs.slice(produced, produced + BATCH_MAX);
      produced += batch.length;
      const inserted = LEASE_ON_INSERT ? batch.map((job) => lease(job, epochOf.get(job.shard)!).next) : batch;
      await timedCommit(store, leases, inserted.map(insertOf), stats);
      for (const job of inserted) (LEASE_ON_INSERT ? leasedAtInsert : ready)[job.shard % CONSUMERS]!.push(job);
      notify();
    }
  };
  const consumer = async (index: number): Promise<void> => {
    const mine = leases.filter((l) => l.shard % CONSUMERS === index);
    const share = jobs.filter((job) => job.shard % CONSUMERS === index).length;
    let running: Job[] = [];
    let done = 0;
    while (done < share) {
      running.push(...leasedAtInsert[index]!.take(BATCH_MAX));
      if (running.length === 0 && ready[index]!.size === 0) {
        await new Promise<void>((resolve) => waiting.push(resolve));
        continue;
      }
      const leasing = ready[index]!.take(BATCH_MAX).map((job) => lease(job, epochOf.get(job.shard)!));
      const completing = running.map((job) => complete(job).write);
      await timedCommit(store, mine, [...completing, ...leasing.map((l) => l.write)], stats);
      done += completing.length;
      completed += completing.length;
      running = leasing.map((l) => l.next);
    }
  };

  const cpu = startCpuMeter();
  const started = performance.now();
  await Promise.all([
    ...Array.from({ length: PRODUCER_IN_FLIGHT }, producer),
    ...Array.from({ length: CONSUMERS }, (_, i) => consumer(i)),
  ]);
  const seconds = (performance.now() - started) / 1000;
  const kinds = LEASE_ON_INSERT ? 'insert leased → complete' : 'insert → lease → complete';
  console.log(`\nlifecycle (${kinds}, concurrently)`);
  console.log(`  ${Math.round(completed / seconds)} jobs/s  (${completed} jobs in ${seconds.toFixed(2)} s)`);
  console.log(
    `  ${stats.transactions} transactions, ${(stats.rows / stats.transactions).toFixed(0)} rows per transaction, ` +
      `${Math.round(stats.rows / seconds)} rows/s, commit latency ${percentiles(stats.latenciesMs)}`,
  );
  console.log(`  ${cpu.stop(completed, 'job')}`);
}

/** Each transition kind alone: four pipelines of full batches. */
async function phases(store: Store, leases: ShardLease[]): Promise<void> {
  const jobs = makeJobs(JOBS, 'phase');
  const leased = jobs.map((job) => lease(job, leases[job.shard]!.epoch));
  const completions = leased.map((l) => complete(l.next).write);
  console.log('\nphases (each transition kind alone, four pipelines of full batches)');
  await phase(store, leases, 'insert', jobs.map(insertOf));
  await phase(store, leases, 'lease', leased.map((l) => l.write));
  await phase(store, leases, 'complete', completions);
}

async function phase(store: Store, leases: ShardLease[], label: string, writes: JobWrite[]): Promise<void> {
  const stats = newStats();
  let next = 0;
  const pipeline = async (): Promise<void> => {
    while (next < writes.length) {
      const batch = writes.slice(next, next + BATCH_MAX);
      next += batch.length;
      await timedCommit(store, leases, batch, stats);
    }
  };
  const cpu = startCpuMeter();
  const started = performance.now();
  await Promise.all(Array.from({ length: CONSUMERS }, pipeline));
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `  ${label.padEnd(8)} ${Math.round(stats.rows / seconds)} rows/s, ${(stats.rows / stats.transactions).toFixed(0)} rows per transaction, ` +
      `commit latency ${percentiles(stats.latenciesMs)}`,
  );
  console.log(`           ${cpu.stop(stats.rows, 'row')}`);
}

/** A queue whose take() does not shift the whole backlog (Array.splice(0, n) does). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  take(max: number): T[] {
    const taken = this.items.slice(this.head, this.head + max);
    this.head += taken.length;
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return taken;
  }
}

function percentiles(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): string => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
  return `p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`;
}

await main();
