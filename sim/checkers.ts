// The simulator's invariant checkers. They keep their own model of what the store accepted (by
// observing it, never by trusting its checks) and of what clients were told, and report the
// first violation of:
// - an acknowledged submission is never lost (it exists when acknowledged, and ends terminal);
// - a refused submission leaves no job;
// - one idempotency key maps to one job;
// - no job is committed terminal twice, and every committed change is a legal transition;
// - no write under a stale shard epoch or a stale lease token is accepted;
// - shard epochs and lease attempts only increase;
// - attempts never exceed the maximum;
// - store transactions never deadlock, and commits never wait for lease renewal or release.
// Duplicate executions (at-least-once) are counted, not failed. What connections may do to
// jobs (lease holders, tenants, closed workers, silent connections) and whether healthy nodes
// keep their shards is checked in hostile-checkers.ts, which reports here.

import { isTerminal } from '../protocol/job-rules.ts';
import { type Job } from '../node/core/job/job.ts';
import { nextState, JOB_EVENT_KINDS } from '../node/core/job/transition.ts';
import type { CommitBatch, ShardLease, WriteOutcome } from '../node/core/store.ts';
import type { StoreObserver } from './memory-store.ts';

export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}

export class Checkers implements StoreObserver {
  /** The first violation seen; the run stops at it. */
  violation: InvariantViolation | null = null;
  private readonly epochs = new Map<number, number>();
  private readonly jobs = new Map<string, Job>();
  private readonly keys = new Map<string, string>();
  /** `jobId/attempt` → the state a write under that lease token committed. */
  private readonly verdicts = new Map<string, string>();
  readonly acked = new Map<string, number>();
  /** `tenant/key` → the job the first acknowledgement named. */
  private readonly ackedKeys = new Map<string, string>();
  /** Told of every lease that commits (a job going to running), for the ready-jobs checker. */
  onLeased: ((job: Job) => void) | null = null;
  /** Handler starts per job, to report duplicate executions. */
  readonly executions = new Map<string, number>();

  private fail(invariant: string, detail: string): void {
    this.violation ??= new InvariantViolation(invariant, detail);
  }

  /** A violation found by another checker (hostile-checkers.ts). */
  report(invariant: string, detail: string): void {
    this.fail(invariant, detail);
  }

  // ---- What the store accepted ---------------------------------------------------------

  acquired(owner: string, leases: ShardLease[]): void {
    for (const { shard, epoch } of leases) {
      const before = this.epochs.get(shard) ?? 0;
      if (epoch <= before) this.fail('epochs only increase', `shard ${shard} acquired by ${owner} at epoch ${epoch} after ${before}`);
      this.epochs.set(shard, epoch);
    }
  }

  committed(batch: CommitBatch, outcomes: WriteOutcome[], before: Array<Job | undefined>): void {
    for (const { shard, epoch } of batch.shards) {
      const current = this.epochs.get(shard) ?? 0;
      if (epoch !== current) this.fail('no write under a stale epoch', `commit on shard ${shard} at epoch ${epoch} accepted while the epoch is ${current}`);
    }
    batch.writes.forEach((write, i) => {
      if (!outcomes[i]!.ok) return;
      if (write.kind === 'insert') return this.inserted(write.job);
      this.updated(write.next, before[i], write.token === null ? null : `${write.next.id}/${write.token.attempt}`, write.token?.epoch ?? null, write.viaLease === true);
    });
  }

  private inserted(job: Job): void {
    if (this.jobs.has(job.id)) this.fail('job ids are unique', `${job.id} inserted twice`);
    this.jobs.set(job.id, job);
    if (job.idempotencyKey !== null) {
      const key = `${job.tenant}/${job.idempotencyKey}`;
      const other = this.keys.get(key);
      if (other !== undefined) this.fail('one idempotency key maps to one job', `${key} names ${other} and ${job.id}`);
      this.keys.set(key, job.id);
    }
    this.checkAttempts(job);
  }

  /** `viaLease`: the write carries a lease never written before it (JobWrite.viaLease), so the
   * stored job goes through running: leased, then one transition on, at the next attempt. */
  private updated(next: Job, stored: Job | undefined, tokenKey: string | null, tokenEpoch: number | null, viaLease: boolean): void {
    const prev = this.jobs.get(next.id);
    if (prev === undefined || stored === undefined) return this.fail('updates follow inserts', `${next.id} updated before it was inserted`);
    if (next.version !== prev.version + 1) this.fail('versions advance by one', `${next.id} went from v${prev.version} to v${next.version}`);
    if (isTerminal(prev.state) && isTerminal(next.state)) this.fail('no job is committed terminal twice', `${next.id} ${prev.state} → ${next.state}`);
    const from = viaLease ? nextState(prev.state, 'lease') : prev.state;
    const legal = from !== null && JOB_EVENT_KINDS.some((kind) => nextState(from, kind) === next.state);
    if (!legal) this.fail('only legal transitions commit', `${next.id} ${prev.state}${viaLease ? ' → (lease)' : ''} → ${next.state}`);
    if (viaLease) {
      if (next.attempts !== prev.attempts + 1) this.fail('lease attempts only increase', `${next.id} leased at attempt ${next.attempts} after ${prev.attempts}`);
      this.onLeased?.(next);
      this.verdicts.set(`${next.id}/${next.attempts}`, next.state);
    }
    if (tokenKey !== null) {
      if (prev.state !== 'running' || `${prev.id}/${prev.attempts}` !== tokenKey || prev.leaseEpoch !== tokenEpoch) {
        this.fail('no write under a stale lease token', `${tokenKey} (epoch ${tokenEpoch}) wrote ${next.id} whose lease is ${prev.id}/${prev.attempts} (epoch ${prev.leaseEpoch})`);
      }
      this.verdicts.set(tokenKey, next.state);
    }
    if (next.state === 'running' && prev.state !== 'running') {
      if (next.attempts <= prev.attempts) this.fail('lease attempts only increase', `${next.id} leased at attempt ${next.attempts} after ${prev.attempts}`);
      this.onLeased?.(next);
    }
    this.checkAttempts(next);
    this.jobs.set(next.id, next);
  }

  private checkAttempts(job: Job): void {
    if (job.attempts > job.retry.attemptsMax) this.fail('attempts never exceed the maximum', `${job.id} at attempt ${job.attempts} of ${job.retry.attemptsMax}`);
  }

  // ---- Row locks (sim/locking-store.ts) ---------------------------------------------------

  /** The store's statements lock rows in one order (docs/DESIGN.md, "Lock order"), so no two
   * of its transactions can deadlock. */
  deadlocked(detail: string): void {
    this.fail('no deadlocks between store transactions', detail);
  }

  /** Commits lock only `shards` rows, renewal and release only `shard_leases` rows, so a
   * commit never waits for them: when it did, a renewal stalled the whole commit pipeline. */
  lockWaited(op: string, key: string, holders: string[]): void {
    const lease = holders.find((h) => h === 'renewShards' || h === 'releaseShards');
    if (op === 'commit' && lease !== undefined) this.fail('commits never wait for shard lease renewal', `a commit waited for ${lease} on ${key}`);
  }

  // ---- What clients and workers were told ----------------------------------------------

  /** A client got `submitted` for `jobId`, with `key` if it sent one. */
  submissionAcked(jobId: string, tenant: string, key: string | null): void {
    if (!this.jobs.has(jobId)) this.fail('acknowledged only after commit', `${jobId} acknowledged before the store had it`);
    if (key !== null) {
      const named = this.keys.get(`${tenant}/${key}`) ?? this.ackedKeys.get(`${tenant}/${key}`);
      if (named !== undefined && named !== jobId) this.fail('one idempotency key maps to one job', `${tenant}/${key} answered ${jobId} but names ${named}`);
      this.ackedKeys.set(`${tenant}/${key}`, jobId);
    }
    this.acked.set(jobId, (this.acked.get(jobId) ?? 0) + 1);
  }

  /** A worker was told its verdict under `jobId/attempt` committed. */
  verdictAcked(jobId: string, attempt: number, verdict: 'complete' | 'fail'): void {
    const committed = this.verdicts.get(`${jobId}/${attempt}`);
    const expected = verdict === 'complete' ? committed === 'succeeded' : committed === 'pending' || committed === 'dead';
    if (!expected) this.fail('a stale lease holder cannot commit', `${verdict} of ${jobId}/${attempt} acknowledged, but that lease committed ${committed ?? 'nothing'}`);
  }

  /** A client was told the job is cancelled: the store must say so. */
  cancelAcked(jobId: string): void {
    const state = this.jobs.get(jobId)?.state;
    if (state !== 'cancelled') this.fail('acknowledged only after commit', `cancel of ${jobId} acknowledged while the store has it ${state ?? 'missing'}`);
  }

  /** The node said it has no job the client was told it had. */
  ackedJobNotFound(jobId: string): void {
    this.fail('no acknowledged submission is lost', `${jobId} was acknowledged, then reported not found`);
  }

  handlerStarted(jobId: string): void {
    this.executions.set(jobId, (this.executions.get(jobId) ?? 0) + 1);
  }

  // ---- At the end of a run -------------------------------------------------------------

  /** Refused submissions (by key or by payload marker) left nothing. */
  refusedLeftNothing(refusedKeys: Iterable<string>): void {
    for (const key of refusedKeys) {
      if (this.keys.has(key)) this.fail('a refused submission leaves no job', `${key} was refused but names ${this.keys.get(key)}`);
    }
  }

  /** Acknowledged jobs that are not terminal yet. */
  unfinished(): string[] {
    return [...this.acked.keys()].filter((id) => {
      const job = this.jobs.get(id);
      return job === undefined || !isTerminal(job.state);
    });
  }

  lost(): string[] {
    return [...this.acked.keys()].filter((id) => !this.jobs.has(id));
  }

  duplicateExecutions(): number {
    let n = 0;
    for (const count of this.executions.values()) if (count > 1) n += count - 1;
    return n;
  }

  /** Jobs pending (as committed) and due by `nowMs`. */
  pendingDue(nowMs: number): Job[] {
    return [...this.jobs.values()].filter((job) => job.state === 'pending' && job.runAtMs <= nowMs);
  }

  job(id: string): Job | undefined {
    return this.jobs.get(id);
  }
}
