// The simulated PostgreSQL as one node process reaches it: its own connection pools (as
// node/store/pg-store.ts opens them), transactions that run statement by statement in virtual
// time and take the row locks the real SQL takes, and the sessions' server-side timeouts. The
// data and its semantics stay the memory store's (sim/memory-store.ts, held to the conformance
// suite): each operation applies there in one instant, at its COMMIT, while it still holds
// every lock it took, so the locks decide only when it may apply, or that it fails.
//
// Locks per operation, mirroring pg-store.ts and pg-commit.ts (ids ascending unless said):
// - acquireShards: BEGIN; FOR UPDATE on the `shard_leases` rows it may take (free, its own,
//   lapsed, or of a dead owner; re-checked once locked); FOR NO KEY UPDATE on those `shards`
//   rows; COMMIT.
// - renewShards, releaseShards: one statement, FOR NO KEY UPDATE on the `shard_leases` rows it
//   still holds (the epoch is read without a lock).
// - commit: BEGIN; FOR SHARE on the batch's `shards` rows; one statement per kind of write per
//   round; COMMIT. Job rows are not modelled: commits of one job come from its one owner.
// - writeSchedule (pg-schedules.ts): BEGIN; FOR SHARE on the shard's `shards` row; for a
//   creation, the tenant's advisory lock (exclusive); the write; COMMIT. Schedule rows are not
//   modelled, for the same reason as job rows.
// - writeBreaker (pg-breakers.ts): as writeSchedule, with the tenant's breaker-creation lock, a
//   lock apart from the schedule one.
// - reads (listShards, loads, getJob, ...): one statement, no row locks.
//
// What goes wrong, as on the real server: a wait that closes a cycle fails with 40P01 after
// deadlock_timeout, and the transaction runs again up to three times as pg-tx.ts runs it; waits
// end at lock_timeout and statements at statement_timeout; a session idle in a transaction
// (its node paused between two statements) ends after idle_in_transaction_session_timeout and
// its locks go; a session may be terminated between statements (57P01), and when that hits a
// COMMIT in flight its outcome is unknown; a process that died leaves its sessions, which the
// server ends when it next talks to them. Every failure reaches the caller as the pg store
// would throw it (pg-errors.ts maps the same SQLSTATEs).
//
// The faults of the seed's plan (simulation.ts) on top: statement latency, slow periods
// (latency ×20), a connection that fails before anything was applied, and a write whose
// answer is lost after it was applied (the caller cannot tell whether it happened).

import pg from 'pg';
import type { SeededRandom } from '../node/core/random.ts';
import type { BreakerWrite } from '../node/core/breaker/breaker.ts';
import type { ScheduleWrite } from '../node/core/schedule/schedule.ts';
import type { CommitBatch, ShardLease, Store } from '../node/core/store.ts';
import { isTransientConflict, rethrowMapped } from '../node/store/pg-errors.ts';
import type { EventQueue } from './event-queue.ts';
import type { MemoryBacking, MemoryStore } from './memory-store.ts';
import { RowLocks, type LockMode, type LockOwner } from './row-locks.ts';
import { SimPool } from './sim-pool.ts';

/** Bugs planted in the store model (the checker-efficacy test proves they are caught). */
export type ModelBug =
  /** Renewal updates the `shards` rows (exclusive locks, not in id order), as the SQL did
   * before migration 0003 moved leases to `shard_leases`: it deadlocks with commits and
   * stalls them. */
  'renewal_locks_shards';

export const MODEL_BUGS: readonly ModelBug[] = ['renewal_locks_shards'];

/** The real sessions' settings (pg-store.ts TIMEOUTS): the simulator's shard lease is shorter
 * than production's 15 s, which makes these relatively harsher, the safe direction. */
export const SESSIONS = {
  writes: { statementMs: 10_000, idleInTransactionMs: 5_000, lockMs: null },
  leases: { statementMs: 5_000, idleInTransactionMs: 5_000, lockMs: 2_000 },
  reads: { statementMs: 30_000, idleInTransactionMs: 5_000, lockMs: null },
} as const;
type PoolName = keyof typeof SESSIONS;

/** pg.Pool's connectionTimeoutMillis in pg-store.ts. */
const CHECKOUT_TIMEOUT_MS = 10_000;
/** pg-tx.ts: a deadlocked transaction runs again, up to this many times in all. */
const TRANSIENT_ATTEMPTS_MAX = 3;

export interface PoolSizes {
  writes: number;
  leases: number;
  reads: number;
}

/** node-process.ts: the committer's four transaction slots plus four; pg-store.ts: two lease
 * connections, four for reads. */
export const REAL_POOL_SIZES: PoolSizes = { writes: 8, leases: 2, reads: 4 };

export interface DatabaseFaults {
  /** Probability an operation fails before anything of it is applied. */
  errorRate: number;
  /** Probability a write (commit, acquire, renew, release) is applied but its answer lost. */
  unknownRate: number;
  /** Probability that the server ends a session between two statements of a transaction. */
  terminateRate: number;
  /** One way of a statement's round trip, in ms: uniform in [min, max], times the factor. */
  latencyMinMs: number;
  latencyMaxMs: number;
  /** 20 in a slow store period, else 1. */
  slowFactor: () => number;
}

const WRITES = new Set(['acquireShards', 'renewShards', 'releaseShards', 'commit', 'writeSchedule', 'writeBreaker']);

/** What the checkers hear from the lock model. */
export interface LockReports {
  deadlock(detail: string): void;
  /** A transaction of `op` waits for a row lock held by transactions of `holders`. */
  waited(op: string, key: string, holders: string[]): void;
}

/** The node process a client belongs to: whether it still runs, and when it wakes from a
 * pause (nothing it would send goes out before). */
export interface ClientProcess {
  readonly node: string;
  gone(): boolean;
  pausedUntilMs(): number;
  /** Freeze the process now for `forMs` (the holder-pause fault). */
  pause(forMs: number): void;
}

/** The shared database: one lock table, one data set, many clients. */
export class LockingDatabase {
  readonly locks: RowLocks;
  /** Node → how long to freeze it at the next boundary of one of its transactions. */
  private readonly holderPauses = new Map<string, number>();

  constructor(
    readonly queue: EventQueue,
    readonly backing: MemoryBacking,
    readonly inner: MemoryStore,
    readonly random: SeededRandom,
    readonly faults: () => DatabaseFaults,
    readonly planted: (bug: ModelBug) => boolean,
    readonly reports: LockReports,
    /** Each operation applied, for the run's trace. */
    readonly onApplied: (op: string) => void,
  ) {
    this.locks = new RowLocks(queue, (waiter, key, _mode, holders) =>
      reports.waited((waiter as Tx).op, key, holders.map((h) => (h as Tx).op)),
    );
  }

  /** The holder-pause fault: `node` freezes, for `forMs`, with a transaction open. */
  pauseHolder(node: string, forMs: number): void {
    this.holderPauses.set(node, forMs);
  }

  /** A statement's one-way latency now. */
  statementMs(): number {
    const f = this.faults();
    return (f.latencyMinMs + this.random.next() * (f.latencyMaxMs - f.latencyMinMs)) * f.slowFactor();
  }

  takeHolderPause(node: string): number | null {
    const forMs = this.holderPauses.get(node);
    if (forMs === undefined) return null;
    this.holderPauses.delete(node);
    return forMs;
  }

  /** A new process's store: pools of its own. */
  connect(process: ClientProcess, sizes: PoolSizes): Store {
    return new LockingClient(this, process, {
      writes: new SimPool(this.queue, sizes.writes, CHECKOUT_TIMEOUT_MS),
      leases: new SimPool(this.queue, sizes.leases, CHECKOUT_TIMEOUT_MS),
      reads: new SimPool(this.queue, sizes.reads, CHECKOUT_TIMEOUT_MS),
    });
  }
}

type Lock = [key: string, mode: LockMode];
const shardRow = (shard: number) => `shards:${shard}`;
const leaseRow = (shard: number) => `shard_leases:${shard}`;
/** pg-schedules.ts keys it by the tenant's hash; distinct tenants stand for distinct keys. */
const tenantCreationsLock = (tenant: string) => `advisory:schedule_creations:${tenant}`;
/** The same in pg-breakers.ts, of another lock class. */
const tenantBreakerCreationsLock = (tenant: string) => `advisory:breaker_creations:${tenant}`;

/** One operation: the statements between BEGIN and COMMIT (or the one statement of an
 * implicit transaction), each planned when the server starts it (null: it takes no locks). */
interface Operation<T> {
  op: string;
  pool: PoolName;
  /** BEGIN ... COMMIT, with a boundary (where the client may stall) after each statement. */
  explicit: boolean;
  statements: Array<(() => Lock[]) | null>;
  /** The memory store's operation, at COMMIT. */
  apply: () => Promise<T>;
}

class Tx implements LockOwner {
  readonly held = new Map<string, LockMode>();
  waiting: LockOwner['waiting'] = null;
  constructor(
    readonly op: string,
    readonly label: string,
  ) {}
}

function sqlError(code: string, message: string): pg.DatabaseError {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = code;
  return error;
}

class LockingClient implements Store {
  constructor(
    private readonly db: LockingDatabase,
    private readonly process: ClientProcess,
    private readonly pools: Record<PoolName, SimPool>,
  ) {}

  acquireShards(owner: string, shards: number[], leaseMs: number, deadOwners: readonly string[] = []): Promise<ShardLease[]> {
    const rows = this.db.backing.shards;
    const takeable = (shard: number) => {
      const row = rows[shard];
      if (row === undefined) return false;
      return row.owner === null || row.owner === owner || row.leaseUntilMs === null || row.leaseUntilMs < this.db.queue.nowMs || deadOwners.includes(row.owner);
    };
    let candidates: number[] = [];
    return this.run({
      op: 'acquireShards',
      pool: 'leases',
      explicit: true,
      statements: [
        () => {
          candidates = [...new Set(shards)].filter(takeable).sort((a, b) => a - b);
          return candidates.map((s) => [leaseRow(s), 'exclusive']);
        },
        () => {
          // FOR UPDATE re-checks the condition on each row once it is locked.
          candidates = candidates.filter(takeable);
          return candidates.map((s) => [shardRow(s), 'exclusive']);
        },
      ],
      apply: () => this.db.inner.acquireShards(owner, candidates, leaseMs, deadOwners),
    });
  }

  renewShards(owner: string, leases: ShardLease[], leaseMs: number): Promise<number[]> {
    return this.run({
      op: 'renewShards',
      pool: 'leases',
      explicit: false,
      statements: [
        () => {
          const held = this.held(owner, leases);
          // The SQL before migration 0003: an UPDATE of `shards` in heap order, not id order.
          if (this.db.planted('renewal_locks_shards')) return held.reverse().map((s) => [shardRow(s), 'exclusive']);
          return held.map((s) => [leaseRow(s), 'exclusive']);
        },
      ],
      apply: () => this.db.inner.renewShards(owner, leases, leaseMs),
    });
  }

  releaseShards(owner: string, leases: ShardLease[]): Promise<void> {
    return this.run({
      op: 'releaseShards',
      pool: 'leases',
      explicit: false,
      statements: [() => this.held(owner, leases).map((s) => [leaseRow(s), 'exclusive'])],
      apply: () => this.db.inner.releaseShards(owner, leases),
    });
  }

  listShards = () => this.read('listShards', 'leases', () => this.db.inner.listShards());

  commit(batch: CommitBatch) {
    const lockShards = (): Lock[] => [...new Set(batch.shards.map((s) => s.shard))].sort((a, b) => a - b).map((s) => [shardRow(s), 'share']);
    return this.run({
      op: 'commit',
      pool: 'writes',
      explicit: true,
      statements: [lockShards, ...Array.from({ length: writeStatements(batch) }, () => null)],
      apply: () => this.db.inner.commit(batch),
    });
  }

  writeSchedule(lease: ShardLease, write: ScheduleWrite) {
    const creation = write.kind === 'put' && write.expectedVersion === null;
    return this.run({
      op: 'writeSchedule',
      pool: 'writes',
      explicit: true,
      statements: [
        () => [[shardRow(lease.shard), 'share']],
        ...(creation ? [(): Lock[] => [[tenantCreationsLock(write.schedule.tenant), 'exclusive']]] : []),
        null,
      ],
      apply: () => this.db.inner.writeSchedule(lease, write),
    });
  }

  writeBreaker(lease: ShardLease, write: BreakerWrite) {
    const creation = write.expectedVersion === null;
    return this.run({
      op: 'writeBreaker',
      pool: 'writes',
      explicit: true,
      statements: [
        () => [[shardRow(lease.shard), 'share']],
        ...(creation ? [(): Lock[] => [[tenantBreakerCreationsLock(write.breaker.tenant), 'exclusive']]] : []),
        null,
      ],
      apply: () => this.db.inner.writeBreaker(lease, write),
    });
  }

  loadShardJobs = (shard: number, state: 'pending' | 'running', after: Parameters<Store['loadShardJobs']>[2], limit: number) =>
    this.read('loadShardJobs', 'writes', () => this.db.inner.loadShardJobs(shard, state, after, limit));
  getJob = (id: string) => this.read('getJob', 'reads', () => this.db.inner.getJob(id));
  findByIdempotencyKey = (tenant: string, key: string) => this.read('findByIdempotencyKey', 'writes', () => this.db.inner.findByIdempotencyKey(tenant, key));
  listJobs = (tenant: string, filter: Parameters<Store['listJobs']>[1]) => this.read('listJobs', 'reads', () => this.db.inner.listJobs(tenant, filter));
  loadShardSchedules = (shard: number) => this.read('loadShardSchedules', 'writes', () => this.db.inner.loadShardSchedules(shard));
  getSchedule = (tenant: string, name: string) => this.read('getSchedule', 'reads', () => this.db.inner.getSchedule(tenant, name));
  listSchedules = (tenant: string, limit: number, after: string | null) =>
    this.read('listSchedules', 'reads', () => this.db.inner.listSchedules(tenant, limit, after));
  loadShardBreakers = (shard: number) => this.read('loadShardBreakers', 'writes', () => this.db.inner.loadShardBreakers(shard));
  getBreaker = (tenant: string, queue: string) => this.read('getBreaker', 'reads', () => this.db.inner.getBreaker(tenant, queue));
  listBreakers = (tenant: string, limit: number, after: string | null) =>
    this.read('listBreakers', 'reads', () => this.db.inner.listBreakers(tenant, limit, after));
  retention = (...args: Parameters<Store['retention']>) => this.read('retention', 'writes', () => this.db.inner.retention(...args));

  async close(): Promise<void> {}

  /** The shards of `leases` the owner still holds at those epochs, in id order. */
  private held(owner: string, leases: ShardLease[]): number[] {
    return leases
      .filter(({ shard, epoch }) => this.db.backing.shards[shard]?.owner === owner && this.db.backing.shards[shard]?.epoch === epoch)
      .map((l) => l.shard)
      .sort((a, b) => a - b);
  }

  private read<T>(op: string, pool: PoolName, apply: () => Promise<T>): Promise<T> {
    return this.run({ op, pool, explicit: false, statements: [null], apply });
  }

  private run<T>(operation: Operation<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (error: unknown) => {
        try {
          rethrowMapped(error, operation.op);
        } catch (mapped) {
          reject(mapped);
        }
      };
      const attempt = (n: number) =>
        this.attempt(operation, resolve, (error) => (isTransientConflict(error) && n < TRANSIENT_ATTEMPTS_MAX ? attempt(n + 1) : fail(error)));
      attempt(1);
    });
  }

  /** One try of an operation: checkout, statements, COMMIT. `failed` gets the error as pg
   * would throw it, after the connection went back to the pool. */
  private attempt<T>(operation: Operation<T>, done: (value: T) => void, failed: (error: unknown) => void): void {
    const { queue, locks, random } = this.db;
    const pool = this.pools[operation.pool];
    const session = SESSIONS[operation.pool];
    const tx = new Tx(operation.op, `${this.process.node}:${operation.op}`);
    let ended = false;
    /** Ends the transaction on the server: its locks go. */
    const end = () => {
      ended = true;
      locks.releaseAll(tx);
    };
    /** The client gets `error` (once it runs again) and gives the connection back. */
    const clientFails = (error: unknown) => {
      if (!ended) end();
      this.whenRunning(() => {
        pool.release();
        failed(error);
      });
    };

    /** Statement `i` goes out; once the server has run it, `executed` (at the server's time). */
    const statement = (i: number) => {
      const plan = operation.statements[i]!;
      // A statement that takes no locks: only its round trip matters, in one event.
      if (plan === null) return void queue.schedule(2 * this.db.statementMs(), () => !ended && executed(i, false));
      queue.schedule(this.db.statementMs(), () => {
        if (ended) return;
        const rows = plan();
        const startedMs = queue.nowMs;
        let statementTimer: number | null = null;
        const lockNext = (k: number) => {
          if (k === rows.length) {
            if (statementTimer !== null) queue.cancel(statementTimer);
            return executed(i, true);
          }
          const [key, mode] = rows[k]!;
          locks.lock(tx, key, mode, session.lockMs, () => lockNext(k + 1), (why, detail) => {
            if (statementTimer !== null) queue.cancel(statementTimer);
            if (why === 'deadlock') this.db.reports.deadlock(`${tx.label}: ${detail}`);
            clientFails(sqlError(why === 'deadlock' ? '40P01' : '55P03', detail));
          });
          if (tx.waiting !== null && statementTimer === null) {
            statementTimer = queue.schedule(startedMs + session.statementMs - queue.nowMs, () => {
              if (ended || tx.waiting === null) return;
              clientFails(sqlError('57014', 'canceling statement due to statement timeout'));
            });
          }
        };
        lockNext(0);
      });
    };

    /** Statement `i` ran; its reply is on its way unless `replied` already. */
    const executed = (i: number, replyDue: boolean) => {
      const last = i === operation.statements.length - 1;
      if (!operation.explicit && last) return commitNow(replyDue);
      const next = () => boundary(() => (last ? sendCommit() : statement(i + 1)));
      if (replyDue) queue.schedule(this.db.statementMs(), next);
      else next();
    };

    /** The client between two statements of its open transaction. */
    const boundary = (next: () => void) => {
      if (ended) return;
      if (this.process.gone()) return end();
      if (random.next() < this.db.faults().terminateRate) {
        return clientFails(sqlError('57P01', 'terminating connection due to administrator command'));
      }
      const freeze = this.db.takeHolderPause(this.process.node);
      if (freeze !== null) this.process.pause(freeze);
      const idleFromMs = queue.nowMs;
      const resume = () => {
        if (ended) return;
        if (this.process.gone()) return end();
        const wakeMs = this.process.pausedUntilMs();
        if (wakeMs <= queue.nowMs) return next();
        // Paused: the server ends the session once it has been idle in the transaction for
        // the timeout; the node learns of it when it wakes.
        if (wakeMs - idleFromMs >= session.idleInTransactionMs) {
          queue.schedule(idleFromMs + session.idleInTransactionMs - queue.nowMs, () => {
            if (!ended) clientFails(sqlError('25P03', 'terminating connection due to idle-in-transaction timeout'));
          });
          return;
        }
        queue.schedule(wakeMs - queue.nowMs, resume);
      };
      resume();
    };

    const sendCommit = () => {
      // A session ended while its COMMIT is on the way: whether the server ran it, the client
      // cannot tell.
      if (random.next() < this.db.faults().terminateRate) {
        if (random.next() < 0.5) {
          void operation.apply();
          this.db.onApplied(operation.op);
        }
        return clientFails(sqlError('57P01', 'terminating connection due to administrator command'));
      }
      queue.schedule(this.db.statementMs(), () => !ended && commitNow(true));
    };

    /** The server commits: the operation applies, in one instant, with every lock held. */
    const commitNow = (replyDue: boolean) => {
      const applied = operation.apply();
      this.db.onApplied(operation.op);
      end();
      const lost = WRITES.has(operation.op) && random.next() < this.db.faults().unknownRate;
      const reply = () =>
        this.whenRunning(() => {
          pool.release();
          if (lost) failed(sqlError('08006', `simulated: ${operation.op} applied, answer lost`));
          else applied.then(done, failed);
        });
      if (replyDue) queue.schedule(this.db.statementMs(), reply);
      else reply();
    };

    pool.checkout(() => {
      if (random.next() < this.db.faults().errorRate) {
        return void queue.schedule(this.db.statementMs(), () => clientFails(sqlError('08006', `simulated: ${operation.op} failed before it was applied`)));
      }
      // BEGIN is a round trip of its own.
      if (operation.explicit) queue.schedule(2 * this.db.statementMs(), () => boundary(() => statement(0)));
      else statement(0);
    }, failed);
  }

  /** Runs `fn` once the process runs (now, or when its pause ends); never once it is gone. */
  private whenRunning(fn: () => void): void {
    if (this.process.gone()) return;
    const wakeMs = this.process.pausedUntilMs();
    if (wakeMs > this.db.queue.nowMs) return void this.db.queue.schedule(wakeMs - this.db.queue.nowMs, () => this.whenRunning(fn));
    fn();
  }
}

/** Statements of a commit after its lock (pg-commit.ts): per round, one for inserts and one
 * for updates; the k-th write of one job goes to round k. */
function writeStatements(batch: CommitBatch): number {
  const seen = new Map<string, number>();
  const rounds: Array<{ inserts: boolean; updates: boolean }> = [];
  for (const write of batch.writes) {
    const id = write.kind === 'insert' ? write.job.id : write.next.id;
    const round = seen.get(id) ?? 0;
    seen.set(id, round + 1);
    rounds[round] ??= { inserts: false, updates: false };
    if (write.kind === 'insert') rounds[round]!.inserts = true;
    else rounds[round]!.updates = true;
  }
  return rounds.reduce((n, r) => n + (r.inserts ? 1 : 0) + (r.updates ? 1 : 0), 0);
}
