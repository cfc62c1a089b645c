// The simulator's store: the Store contract in memory, with the same semantics as the Postgres
// store (fenced commits, schedule and breaker writes, conditional writes, idempotency, daily
// partitions for retention). It passes the same conformance suite (test/conformance), so it
// cannot drift from Postgres.
// Its clock is injected: virtual time in the simulator. Every operation completes in one
// synchronous step, so a commit is trivially atomic; row locks, latency and faults are added
// around it by sim/locking-store.ts.

import { BREAKERS_PER_TENANT_MAX, type Breaker, type BreakerWrite, type BreakerWriteOutcome } from '../node/core/breaker/breaker.ts';
import type { Job } from '../node/core/job/job.ts';
import type { JobState } from '../protocol/job-rules.ts';
import { LIVE_STATES } from '../protocol/job-rules.ts';
import { SCHEDULES_PER_TENANT_MAX, type Schedule, type ScheduleWrite, type ScheduleWriteOutcome } from '../node/core/schedule/schedule.ts';
import type {
  CommitBatch,
  CommitResult,
  JobCursor,
  ListFilter,
  Page,
  RetentionOptions,
  RetentionReport,
  ShardLease,
  ShardRow,
  Store,
  WriteOutcome,
} from '../node/core/store.ts';
import { partitionDay, partitionName, DAY_MS } from '../node/core/retention-days.ts';
import { decodeListCursor, encodeListCursor } from '../node/store/list-cursor.ts';
import { decodeBreakerCursor, decodeScheduleCursor, encodeBreakerCursor, encodeScheduleCursor } from '../node/store/list-cursor.ts';
import type { PlantedBug } from '../node/core/test-hooks.ts';

/** Sees every change the store applies, for the simulator's checkers. */
export interface StoreObserver {
  acquired(owner: string, leases: ShardLease[]): void;
  /** A commit that was applied; `before[i]` is the stored job `writes[i]` found (undefined for
   * an insert or a missing job). */
  committed(batch: CommitBatch, outcomes: WriteOutcome[], before: Array<Job | undefined>): void;
  /** A breaker write that was applied: the row as stored (sim/breaker-checker.ts). */
  breakerWritten?(breaker: Breaker): void;
}

interface ShardState {
  owner: string | null;
  epoch: number;
  leaseUntilMs: number | null;
}

/** The data, shared by every client opened on it (like one Postgres database). */
export class MemoryBacking {
  readonly shards: ShardState[];
  readonly jobs = new Map<string, Job>();
  readonly keys = new Map<string, string>();
  /** By recordKey(tenant, name). */
  readonly schedules = new Map<string, Schedule>();
  /** By recordKey(tenant, queue). */
  readonly breakers = new Map<string, Breaker>();
  /** Days (UTC, as days since the epoch) that have a partition of their own. */
  readonly partitions = new Set<number>();
  /** Commits applied, for the simulator's checkers and statistics. */
  commits = 0;
  /** The most schedules a tenant may have; tests lower it (PgStoreOptions.schedulesPerTenantMax). */
  schedulesPerTenantMax = SCHEDULES_PER_TENANT_MAX;
  /** The most breakers a tenant may have; tests lower it (PgStoreOptions.breakersPerTenantMax). */
  breakersPerTenantMax = BREAKERS_PER_TENANT_MAX;
  observer: StoreObserver | null = null;

  constructor(
    readonly shardCount: number,
    readonly nowMs: () => number,
    /** Planted bugs of the store itself (the simulator's checker-efficacy tests). */
    readonly planted: (bug: PlantedBug) => boolean = () => false,
  ) {
    this.shards = Array.from({ length: shardCount }, () => ({ owner: null, epoch: 0, leaseUntilMs: null }));
  }
}

export class MemoryStore implements Store {
  private closed = false;

  constructor(private readonly data: MemoryBacking) {}

  async acquireShards(owner: string, shards: number[], leaseMs: number, deadOwners: readonly string[] = []): Promise<ShardLease[]> {
    this.open();
    const now = this.data.nowMs();
    const won: ShardLease[] = [];
    for (const shard of new Set(shards)) {
      const row = this.data.shards[shard];
      if (row === undefined) continue;
      if (row.owner === null || row.owner === owner || row.leaseUntilMs === null || row.leaseUntilMs < now || deadOwners.includes(row.owner)) {
        row.owner = owner;
        row.epoch++;
        row.leaseUntilMs = now + leaseMs;
        won.push({ shard, epoch: row.epoch });
      }
    }
    won.sort((a, b) => a.shard - b.shard);
    this.data.observer?.acquired(owner, won);
    return won;
  }

  async renewShards(owner: string, leases: ShardLease[], leaseMs: number): Promise<number[]> {
    this.open();
    const now = this.data.nowMs();
    const renewed: number[] = [];
    for (const { shard, epoch } of leases) {
      const row = this.data.shards[shard];
      if (row === undefined || row.owner !== owner || row.epoch !== epoch) continue;
      row.leaseUntilMs = now + leaseMs;
      renewed.push(shard);
    }
    return renewed.sort((a, b) => a - b);
  }

  async releaseShards(owner: string, leases: ShardLease[]): Promise<void> {
    this.open();
    for (const { shard, epoch } of leases) {
      const row = this.data.shards[shard];
      if (row === undefined || row.owner !== owner || row.epoch !== epoch) continue;
      row.owner = null;
      row.leaseUntilMs = null;
    }
  }

  async listShards(): Promise<ShardRow[]> {
    this.open();
    return this.data.shards.map((row, shard) => ({ shard, ...row }));
  }

  async commit(batch: CommitBatch): Promise<CommitResult> {
    this.open();
    const stale = batch.shards.filter(({ shard, epoch }) => this.data.shards[shard]?.epoch !== epoch).map((s) => s.shard);
    const fenced = new Set(batch.shards.map((s) => s.shard));
    for (const write of batch.writes) {
      const shard = write.kind === 'insert' ? write.job.shard : write.next.shard;
      if (!fenced.has(shard)) throw new Error(`commit writes shard ${shard} without naming its epoch`);
    }
    if (stale.length > 0 && !this.data.planted('skip_epoch_check')) {
      return { status: 'stale_epoch', staleShards: [...new Set(stale)].sort((a, b) => a - b) };
    }
    const before: Array<Job | undefined> = [];
    const outcomes: WriteOutcome[] = batch.writes.map((write) => {
      if (write.kind === 'insert') {
        before.push(undefined);
        return this.insert(write.job);
      }
      const current = this.data.jobs.get(write.next.id);
      before.push(current);
      if (current === undefined || current.version !== write.expectedVersion) return { ok: false, reason: 'conflict' };
      // A token stands for a running attempt: a job given back (pending, same attempt and
      // lease epoch) no longer runs under it.
      if (
        write.token !== null &&
        (current.state !== 'running' || current.attempts !== write.token.attempt || current.leaseEpoch !== write.token.epoch)
      ) {
        return { ok: false, reason: 'conflict' };
      }
      if (write.next.version !== write.expectedVersion + 1) throw new Error(`update of ${write.next.id} must bump the version by one`);
      this.data.jobs.set(write.next.id, copy(write.next));
      return { ok: true };
    });
    this.data.commits++;
    this.data.observer?.committed(batch, outcomes, before);
    return { status: 'committed', outcomes };
  }

  private insert(job: Job): WriteOutcome {
    if (job.idempotencyKey !== null) {
      const key = `${job.tenant}\u0000${job.idempotencyKey}`;
      const existing = this.data.keys.get(key);
      if (existing !== undefined) return { ok: false, reason: 'duplicate', existingJobId: existing };
      this.data.keys.set(key, job.id);
    }
    if (this.data.jobs.has(job.id)) return { ok: false, reason: 'conflict' };
    this.data.jobs.set(job.id, copy(job));
    return { ok: true };
  }

  async loadShardJobs(shard: number, state: 'pending' | 'running', after: JobCursor | null, limit: number): Promise<Job[]> {
    this.open();
    return [...this.data.jobs.values()]
      .filter((job) => job.shard === shard && job.state === state)
      .filter((job) => after === null || job.runAtMs > after.runAtMs || (job.runAtMs === after.runAtMs && job.id > after.id))
      .sort((a, b) => a.runAtMs - b.runAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, limit)
      .map(copy);
  }

  async getJob(id: string): Promise<Job | null> {
    this.open();
    const job = this.data.jobs.get(id);
    return job === undefined ? null : copy(job);
  }

  async findByIdempotencyKey(tenant: string, key: string): Promise<string | null> {
    this.open();
    return this.data.keys.get(`${tenant}\u0000${key}`) ?? null;
  }

  async listJobs(tenant: string, filter: ListFilter): Promise<Page<Job>> {
    this.open();
    const after = filter.after == null ? null : decodeListCursor(filter.after);
    if (filter.after != null && after === null) throw new RangeError('listJobs: malformed cursor');
    const limit = Math.max(1, Math.min(filter.limit, 1000));
    const matching = [...this.data.jobs.values()]
      .filter((job) => job.tenant === tenant)
      .filter((job) => filter.state === undefined || job.state === filter.state)
      .filter((job) => filter.queue === undefined || job.queue === filter.queue)
      .sort((a, b) => b.createdAtMs - a.createdAtMs || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .filter((job) => after === null || job.createdAtMs < after.createdAtMs || (job.createdAtMs === after.createdAtMs && job.id < after.id));
    const items = matching.slice(0, limit).map(copy);
    const last = items.at(-1);
    const next = matching.length > limit && last !== undefined ? encodeListCursor({ createdAtMs: last.createdAtMs, id: last.id }) : null;
    return { items, next };
  }

  async writeSchedule(lease: ShardLease, write: ScheduleWrite): Promise<ScheduleWriteOutcome> {
    this.open();
    if (write.kind === 'put' && write.schedule.shard !== lease.shard) {
      throw new Error(`writeSchedule: schedule ${write.schedule.name} is in shard ${write.schedule.shard}, written under the lease of shard ${lease.shard}`);
    }
    if (this.data.shards[lease.shard]?.epoch !== lease.epoch) return 'stale_epoch';
    const { tenant, name } = write.kind === 'put' ? write.schedule : write;
    const key = recordKey(tenant, name);
    const current = this.data.schedules.get(key);
    if (write.kind === 'put' && write.expectedVersion === null) {
      if (current !== undefined) return 'conflict';
      const count = [...this.data.schedules.values()].filter((s) => s.tenant === tenant).length;
      if (count >= this.data.schedulesPerTenantMax) return 'limit';
      this.data.schedules.set(key, { ...copySchedule(write.schedule), version: 1 });
      return 'ok';
    }
    // As in Postgres, a write reaches only a schedule of the shard it is fenced by.
    if (current === undefined || current.shard !== lease.shard || current.version !== write.expectedVersion) return 'conflict';
    if (write.kind === 'delete') this.data.schedules.delete(key);
    else if (write.kind === 'advance') this.data.schedules.set(key, { ...current, nextTickMs: write.nextTickMs, updatedAtMs: write.updatedAtMs, version: write.expectedVersion + 1 });
    else this.data.schedules.set(key, { ...copySchedule(write.schedule), version: write.expectedVersion + 1 });
    return 'ok';
  }

  async loadShardSchedules(shard: number): Promise<Schedule[]> {
    this.open();
    return [...this.data.schedules.values()]
      .filter((s) => s.shard === shard)
      .sort((a, b) => compareUtf8(a.tenant, b.tenant) || compareUtf8(a.name, b.name))
      .map(copySchedule);
  }

  async getSchedule(tenant: string, name: string): Promise<Schedule | null> {
    this.open();
    const schedule = this.data.schedules.get(recordKey(tenant, name));
    return schedule === undefined ? null : copySchedule(schedule);
  }

  async listSchedules(tenant: string, limit: number, after: string | null): Promise<Page<Schedule>> {
    this.open();
    const lastName = after === null ? null : decodeScheduleCursor(after);
    if (after !== null && lastName === null) throw new RangeError('listSchedules: malformed cursor');
    const matching = [...this.data.schedules.values()]
      .filter((s) => s.tenant === tenant && (lastName === null || compareUtf8(s.name, lastName) > 0))
      .sort((a, b) => compareUtf8(a.name, b.name));
    const items = matching.slice(0, Math.max(1, limit)).map(copySchedule);
    const last = items.at(-1);
    return { items, next: matching.length > items.length && last !== undefined ? encodeScheduleCursor(last.name) : null };
  }

  async writeBreaker(lease: ShardLease, write: BreakerWrite): Promise<BreakerWriteOutcome> {
    this.open();
    const { breaker, expectedVersion } = write;
    if (breaker.shard !== lease.shard) {
      throw new Error(`writeBreaker: breaker of queue ${breaker.queue} is in shard ${breaker.shard}, written under the lease of shard ${lease.shard}`);
    }
    if (this.data.shards[lease.shard]?.epoch !== lease.epoch) return 'stale_epoch';
    const key = recordKey(breaker.tenant, breaker.queue);
    const current = this.data.breakers.get(key);
    if (expectedVersion === null) {
      if (current !== undefined) return 'conflict';
      const count = [...this.data.breakers.values()].filter((b) => b.tenant === breaker.tenant).length;
      if (count >= this.data.breakersPerTenantMax) return 'limit';
      this.data.breakers.set(key, { ...copyBreaker(breaker), version: 1 });
      this.data.observer?.breakerWritten?.(copyBreaker(this.data.breakers.get(key)!));
      return 'ok';
    }
    // As in Postgres, a write reaches only a breaker of the shard it is fenced by.
    if (current === undefined || current.shard !== lease.shard || current.version !== expectedVersion) return 'conflict';
    if (write.delete === true) {
      this.data.breakers.delete(key);
      return 'ok';
    }
    this.data.breakers.set(key, { ...copyBreaker(breaker), version: expectedVersion + 1 });
    this.data.observer?.breakerWritten?.(copyBreaker(this.data.breakers.get(key)!));
    return 'ok';
  }

  async loadShardBreakers(shard: number): Promise<Breaker[]> {
    this.open();
    return [...this.data.breakers.values()]
      .filter((b) => b.shard === shard)
      .sort((a, b) => compareUtf8(a.tenant, b.tenant) || compareUtf8(a.queue, b.queue))
      .map(copyBreaker);
  }

  async getBreaker(tenant: string, queue: string): Promise<Breaker | null> {
    this.open();
    const breaker = this.data.breakers.get(recordKey(tenant, queue));
    return breaker === undefined ? null : copyBreaker(breaker);
  }

  async listBreakers(tenant: string, limit: number, after: string | null): Promise<Page<Breaker>> {
    this.open();
    const lastQueue = after === null ? null : decodeBreakerCursor(after);
    if (after !== null && lastQueue === null) throw new RangeError('listBreakers: malformed cursor');
    const matching = [...this.data.breakers.values()]
      .filter((b) => b.tenant === tenant && (lastQueue === null || compareUtf8(b.queue, lastQueue) > 0))
      .sort((a, b) => compareUtf8(a.queue, b.queue));
    const items = matching.slice(0, Math.max(1, limit)).map(copyBreaker);
    const last = items.at(-1);
    return { items, next: matching.length > items.length && last !== undefined ? encodeBreakerCursor(last.queue) : null };
  }

  async retention(options: RetentionOptions, asOfMs?: number): Promise<RetentionReport> {
    this.open();
    const nowMs = asOfMs ?? this.data.nowMs();
    const today = partitionDay(nowMs);
    const created: string[] = [];
    for (let day = today; day < today + options.daysAhead; day++) {
      if (this.data.partitions.has(day)) continue;
      this.data.partitions.add(day);
      created.push(partitionName(day));
      // Rows that sat in the default partition move into their own, as in Postgres.
    }
    const dropped: string[] = [];
    const keptLive: string[] = [];
    for (const day of [...this.data.partitions].sort((a, b) => a - b)) {
      const endMs = (day + 1) * DAY_MS;
      if (nowMs - endMs <= options.keepDays * DAY_MS) continue;
      const inDay = [...this.data.jobs.values()].filter((job) => partitionDay(job.scheduledAtMs) === day);
      if (inDay.some((job) => (LIVE_STATES as readonly JobState[]).includes(job.state))) {
        keptLive.push(partitionName(day));
        continue;
      }
      for (const job of inDay) {
        this.data.jobs.delete(job.id);
        if (job.idempotencyKey !== null) this.data.keys.delete(`${job.tenant}\u0000${job.idempotencyKey}`);
      }
      this.data.partitions.delete(day);
      dropped.push(partitionName(day));
    }
    return { created, dropped, keptLive, ran: true };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private open(): void {
    if (this.closed) throw new Error('store is closed');
  }
}

function copy(job: Job): Job {
  return { ...job, retry: { ...job.retry } };
}

function copySchedule(schedule: Schedule): Schedule {
  return { ...schedule, timing: { ...schedule.timing }, retry: { ...schedule.retry } };
}

/** A schedule's or a breaker's key: a name (a queue) is unique per tenant. */
function recordKey(tenant: string, name: string): string {
  return `${tenant}\u0000${name}`;
}

function copyBreaker(breaker: Breaker): Breaker {
  return { ...breaker, config: breaker.config === null ? null : { ...breaker.config } };
}

/** The order of PostgreSQL's "C" collation, which the schedules' names and the breakers' queues
 * use: UTF-8 bytes, which is not JavaScript's (UTF-16 code units) past the Basic Multilingual
 * Plane. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
