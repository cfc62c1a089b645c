// Row locks of the simulated PostgreSQL, in virtual time: what the real store's statements
// take on rows of `shards` and `shard_leases` (sim/locking-store.ts says which). Two modes are
// enough for those statements: FOR SHARE is `share`; FOR UPDATE, FOR NO KEY UPDATE and the
// implicit lock of an UPDATE are `exclusive` (the statements never mix the last three on one
// table in a way where their difference matters).
//
// As in PostgreSQL:
// - a request compatible with the current holders is granted at once, even with others
//   waiting (a FOR SHARE locker joins the row's lockers without queueing), so a stream of
//   overlapping share lockers can keep an exclusive one waiting;
// - a waiter that has waited `deadlock_timeout` checks the wait-for graph and, when it is part
//   of a cycle, fails itself with 40P01;
// - a waiter fails with 55P03 once it has waited its session's `lock_timeout`;
// - locks are held until the transaction ends.

import type { EventQueue } from './event-queue.ts';

export type LockMode = 'share' | 'exclusive';

/** PostgreSQL's default deadlock_timeout. */
const DEADLOCK_TIMEOUT_MS = 1_000;

/** One transaction as the lock table sees it. */
export interface LockOwner {
  /** For reports: the operation and its node. */
  readonly label: string;
  readonly held: Map<string, LockMode>;
  waiting: Waiter | null;
}

interface Waiter {
  owner: LockOwner;
  key: string;
  mode: LockMode;
  granted: () => void;
  failed: (why: 'deadlock' | 'lock_timeout', detail: string) => void;
  timers: number[];
}

interface Row {
  holders: Map<LockOwner, LockMode>;
  waiters: Waiter[];
}

export class RowLocks {
  private readonly rows = new Map<string, Row>();

  constructor(
    private readonly queue: EventQueue,
    /** Told of every wait, with the holders it waits for (for the checkers). */
    private readonly onWait: (waiter: LockOwner, key: string, mode: LockMode, holders: LockOwner[]) => void,
  ) {}

  /** Takes `key` in `mode` for `owner`: `granted` runs at once or when the holders that
   * conflict have gone; `failed` when the wait ends in a deadlock or a lock timeout (the
   * caller then ends the transaction). */
  lock(
    owner: LockOwner,
    key: string,
    mode: LockMode,
    lockTimeoutMs: number | null,
    granted: () => void,
    failed: (why: 'deadlock' | 'lock_timeout', detail: string) => void,
  ): void {
    const row = this.row(key);
    const mine = row.holders.get(owner);
    if (mine === 'exclusive' || mine === mode) return granted();
    const blockers = this.conflicting(row, owner, mode);
    if (blockers.length === 0) {
      row.holders.set(owner, mode);
      owner.held.set(key, mode);
      return granted();
    }
    const waiter: Waiter = { owner, key, mode, granted, failed, timers: [] };
    row.waiters.push(waiter);
    owner.waiting = waiter;
    this.onWait(owner, key, mode, blockers);
    waiter.timers.push(
      this.queue.schedule(DEADLOCK_TIMEOUT_MS, () => {
        const cycle = this.cycleThrough(owner);
        if (cycle !== null) this.fail(waiter, 'deadlock', `deadlock detected: ${cycle.map((o) => o.label).join(' → ')}`);
      }),
    );
    if (lockTimeoutMs !== null) {
      waiter.timers.push(this.queue.schedule(lockTimeoutMs, () => this.fail(waiter, 'lock_timeout', `canceling statement due to lock timeout on ${key}`)));
    }
  }

  /** The transaction ended (commit, rollback, or its session went): its locks go, and the
   * waiters they held up are granted in the order they came. */
  releaseAll(owner: LockOwner): void {
    if (owner.waiting !== null) this.dequeue(owner.waiting);
    for (const key of owner.held.keys()) {
      const row = this.rows.get(key)!;
      row.holders.delete(owner);
      this.grantWaiters(key, row);
    }
    owner.held.clear();
  }

  private fail(waiter: Waiter, why: 'deadlock' | 'lock_timeout', detail: string): void {
    if (waiter.owner.waiting !== waiter) return;
    this.dequeue(waiter);
    waiter.failed(why, detail);
  }

  private dequeue(waiter: Waiter): void {
    for (const timer of waiter.timers) this.queue.cancel(timer);
    const row = this.rows.get(waiter.key)!;
    row.waiters.splice(row.waiters.indexOf(waiter), 1);
    waiter.owner.waiting = null;
    if (row.holders.size === 0 && row.waiters.length === 0) this.rows.delete(waiter.key);
  }

  private grantWaiters(key: string, row: Row): void {
    for (let i = 0; i < row.waiters.length; ) {
      const waiter = row.waiters[i]!;
      if (this.conflicting(row, waiter.owner, waiter.mode).length > 0) {
        i++;
        continue;
      }
      row.waiters.splice(i, 1);
      for (const timer of waiter.timers) this.queue.cancel(timer);
      waiter.owner.waiting = null;
      row.holders.set(waiter.owner, waiter.mode);
      waiter.owner.held.set(key, waiter.mode);
      waiter.granted();
    }
    if (row.holders.size === 0 && row.waiters.length === 0) this.rows.delete(key);
  }

  private conflicting(row: Row, owner: LockOwner, mode: LockMode): LockOwner[] {
    const out: LockOwner[] = [];
    for (const [holder, held] of row.holders) if (holder !== owner && (mode === 'exclusive' || held === 'exclusive')) out.push(holder);
    return out;
  }

  /** A cycle of waits that leads from `start` back to it, or null. */
  private cycleThrough(start: LockOwner): LockOwner[] | null {
    const path: LockOwner[] = [];
    const seen = new Set<LockOwner>();
    const visit = (owner: LockOwner): boolean => {
      const waiter = owner.waiting;
      if (waiter === null) return false;
      path.push(owner);
      for (const next of this.conflicting(this.rows.get(waiter.key)!, owner, waiter.mode)) {
        if (next === start) return true;
        if (seen.has(next)) continue;
        seen.add(next);
        if (visit(next)) return true;
      }
      path.pop();
      return false;
    };
    return visit(start) ? [...path, start] : null;
  }

  private row(key: string): Row {
    let row = this.rows.get(key);
    if (row === undefined) {
      row = { holders: new Map(), waiters: [] };
      this.rows.set(key, row);
    }
    return row;
  }
}
