// What PostgreSQL did for the jobs of a measured phase, read around it (never during it):
// - statements per job and database time per job, from pg_stat_statements, top-level
//   statements of the benchmark's database only (BEGIN, SET and COMMIT count as statements);
// - round trips per job, counted in the client processes (round-trips.mjs), since one round
//   trip may carry several statements;
// - commits: transactions that wrote, from the transaction-id counter (a transaction takes an
//   id at its first write; read-only ones take none), whoever wrote them: on a shared server
//   other databases' writes count too;
// - job writes per job and per commit (the mean batch): the rows of the statements that write
//   job rows (each system names them), from pg_stat_statements;
// - WAL bytes per job, from the WAL position (also server-wide).
// pg_stat_statements must be in shared_preload_libraries (bench-database.ts loads it on the
// servers it starts); without it the statement figures are null and the rest still stand.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parentPid } from './cpu-usage.ts';
import { onInterrupt } from './on-interrupt.ts';

const STATEMENTS_SHOWN = 8;

export interface PgFigures {
  statementsPerJob: number | null;
  roundTripsPerJob: number;
  pgExecUsPerJob: number | null;
  commitsPerSec: number;
  jobWritesPerJob: number | null;
  jobWritesPerCommit: number | null;
  walBytesPerJob: number;
}

export interface PgWindow {
  /** Ends the window: reads the figures for `jobs` jobs over `seconds`, and logs the
   * statements that took the most database time. `jobWrites` matches the statements that write
   * job rows, each row it reports being one write of one job. */
  read(jobs: number, seconds: number, jobWrites: RegExp, log: (line: string) => void): Promise<PgFigures>;
}

/** A connection to the benchmark's database whose own statements pg_stat_statements ignores. */
export async function statsConnection(url: string): Promise<pg.Client> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  await db.query("SET pg_stat_statements.track = 'none'").catch(() => {});
  return db;
}

/** Creates the extension's view in the benchmark's database; false when the server did not
 * preload the library (a DATABASE_URL server, as configured by someone else). */
export async function enableStatements(db: pg.Client): Promise<boolean> {
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await db.query('SELECT 1 FROM pg_stat_statements LIMIT 1');
    return true;
  } catch {
    return false;
  }
}

/** Starts a window: resets pg_stat_statements, notes the transaction-id counter and the WAL
 * position, and the round trips each of `clientPids` has made so far. */
export async function openPgWindow(db: pg.Client, statements: boolean, roundTrips: RoundTripCounter, clientPids: number[]): Promise<PgWindow> {
  if (statements) await db.query('SELECT pg_stat_statements_reset()');
  const before = await counters(db);
  const tripsBefore = await roundTrips.read(clientPids);
  return {
    async read(jobs, seconds, jobWrites, log) {
      const after = await counters(db);
      const trips = (await roundTrips.read(clientPids)) - tripsBefore;
      const commits = Number(after.xid - before.xid);
      let statementsPerJob: number | null = null;
      let pgExecUsPerJob: number | null = null;
      let jobWritesTotal: number | null = null;
      if (statements) {
        const { rows } = await db.query<{ calls: string; rows: string; ms: number; query: string }>(
          `SELECT calls, rows, total_exec_time AS ms, query FROM pg_stat_statements
           WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           ORDER BY total_exec_time DESC`,
        );
        statementsPerJob = rows.reduce((sum, r) => sum + Number(r.calls), 0) / jobs;
        pgExecUsPerJob = (rows.reduce((sum, r) => sum + r.ms, 0) * 1000) / jobs;
        jobWritesTotal = rows.filter((r) => jobWrites.test(r.query)).reduce((sum, r) => sum + Number(r.rows), 0);
        log('statements by database time (per job: calls, µs; rows per call; the statement):');
        for (const r of rows.slice(0, STATEMENTS_SHOWN)) {
          const perCall = Number(r.rows) / Number(r.calls);
          log(`  ${(Number(r.calls) / jobs).toFixed(4)}  ${((r.ms * 1000) / jobs).toFixed(1)} µs  ${perCall.toFixed(1)} rows  ${r.query.replace(/\s+/g, ' ').slice(0, 110)}`);
        }
      }
      return {
        statementsPerJob: round(statementsPerJob, 3),
        roundTripsPerJob: round(trips / jobs, 3)!,
        pgExecUsPerJob: round(pgExecUsPerJob, 1),
        commitsPerSec: Math.round(commits / seconds),
        jobWritesPerJob: round(jobWritesTotal === null ? null : jobWritesTotal / jobs, 2),
        jobWritesPerCommit: round(jobWritesTotal === null ? null : jobWritesTotal / Math.max(1, commits), 1),
        walBytesPerJob: Math.round(Number(after.walBytes - before.walBytes) / jobs),
      };
    },
  };
}

async function counters(db: pg.Client): Promise<{ xid: bigint; walBytes: bigint }> {
  const { rows } = await db.query<{ xid: string; wal: string }>(
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS wal",
  );
  return { xid: BigInt(rows[0]!.xid), walBytes: BigInt(rows[0]!.wal.split('.')[0]!) };
}

/** The server's postmaster, when it runs on this machine (its CPU time is read from /proc);
 * null for a server elsewhere. */
export async function postmasterPid(db: pg.Client): Promise<number | null> {
  const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = rows[0]!.pid;
  // A local backend's title starts with "postgres:"; a same-numbered process here that is not
  // one means the server is elsewhere.
  const cmdline = existsSync(`/proc/${backend}/cmdline`) ? readFileSync(`/proc/${backend}/cmdline`, 'utf8') : '';
  return cmdline.startsWith('postgres:') ? parentPid(backend) : null;
}

export interface RoundTripCounter {
  /** Environment that makes a process count its round trips (with round-trips.mjs preloaded). */
  readonly env: Record<string, string>;
  /** Round trips made so far by these processes, together. */
  read(pids: number[]): Promise<number>;
  /** Removes the answers' directory. */
  close(): void;
}

const ANSWER_WAIT_MS = 10_000;

export function roundTripCounter(): RoundTripCounter {
  const dir = mkdtempSync(join(tmpdir(), 'kairos-round-trips-'));
  const remove = async () => rmSync(dir, { recursive: true, force: true });
  const forget = onInterrupt(remove);
  const asked = new Map<number, number>();
  const readOne = async (pid: number): Promise<number> => {
    const reports = (asked.get(pid) ?? 0) + 1;
    asked.set(pid, reports);
    process.kill(pid, 'SIGUSR2');
    const deadline = Date.now() + ANSWER_WAIT_MS;
    for (;;) {
      const text = existsSync(join(dir, String(pid))) ? readFileSync(join(dir, String(pid)), 'utf8') : '';
      const [answered, count] = text.split(' ').map(Number);
      if (answered === reports) return count!;
      if (Date.now() > deadline) throw new Error(`process ${pid} did not report its round trips (is round-trips.mjs preloaded?)`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  return {
    env: { KAIROS_BENCH_ROUND_TRIPS_DIR: dir },
    read: async (pids) => (await Promise.all(pids.map(readOne))).reduce((sum, n) => sum + n, 0),
    close: () => {
      forget();
      void remove();
    },
  };
}

function round(n: number | null, digits: number): number | null {
  return n === null ? null : Math.round(n * 10 ** digits) / 10 ** digits;
}
