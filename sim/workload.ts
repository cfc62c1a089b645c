// The simulated clients and workers. They speak the protocol's messages to the gateways over
// simulated links, with the habits of the real SDK: every submission is retried after a
// retryable refusal or a dropped connection, under its idempotency key when it has one;
// workers take leases by credit, heartbeat long jobs, and obey revocations.
//
// A job's payload says how its handler behaves, so behaviour survives retries and restarts:
// byte 0 is the behaviour, bytes 1..4 the submission's number.

import { errorReply, type SubmitSpec } from '../protocol/client-messages.ts';
import type { ErrorBody } from '../protocol/errors.ts';
import type { LeaseToken } from '../protocol/job-rules.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { Checkers } from './checkers.ts';
import type { EventQueue } from './event-queue.ts';
import type { FromNode, SimLink, ToNode } from './sim-link.ts';

/** succeed; fail (retryable); fail_fatal (non-retryable); hang (never answers, first attempt);
 * long (runs past its lease, heartbeating); zombie (runs past its lease without heartbeats,
 * first attempt, then answers anyway: the answer must be refused). */
export const BEHAVIOURS = ['succeed', 'fail', 'fail_fatal', 'hang', 'long', 'zombie'] as const;
export type Behaviour = (typeof BEHAVIOURS)[number];

/** The service one lane's handlers call (its tenant's queue `queue`; sim/breaker-checker.ts
 * gives that lane a circuit breaker): down in the seed's outage windows, up otherwise. Its
 * handlers fail as a DownstreamError does (`fail`, retryable, `downstream: true`) while it is
 * down and succeed while it is up, whatever the payload says. */
export class Downstream {
  constructor(
    readonly tenant: string,
    readonly queue: string,
    /** [from, to) in virtual ms since the run's start. */
    readonly outages: ReadonlyArray<readonly [number, number]>,
    private readonly nowMs: () => number,
  ) {}

  get down(): boolean {
    const nowMs = this.nowMs();
    return this.outages.some(([from, to]) => nowMs >= from && nowMs < to);
  }

  /** When the last outage ends (0 without any). */
  get healedAtMs(): number {
    return Math.max(0, ...this.outages.map(([, to]) => to));
  }

  /** The outages a seed picks for a fault phase of `durationMs`: in most runs one or two, of
   * 2-8 s each, in the first 80 % of it (so that the breaker opens while the faults still run,
   * and has the healing to close in). */
  static outagesFor(random: SeededRandom, durationMs: number): Array<[number, number]> {
    if (random.next() < 0.15) return [];
    return Array.from({ length: 1 + random.int(2) }, (): [number, number] => {
      const from = 1_000 + random.int(Math.max(1, Math.floor(durationMs * 0.8) - 1_000));
      return [from, Math.min(durationMs, from + 2_000 + random.int(6_000))];
    }).sort((a, b) => a[0] - b[0]);
  }
}

/** Connects to some node for a client; null while no node can be reached. */
export type Dialer = (ends: { onMessage(m: FromNode): void; onClose(): void }) => SimLink | null;

const RETRYABLE = new Set(['overloaded', 'rate_limited', 'unavailable', 'internal']);
const REDIAL_MS = 200;
/** Share of submissions sent as `submit_batch`. */
const BATCHED = 0.3;

interface Submission {
  n: number;
  spec: SubmitSpec;
  state: 'waiting' | 'sent' | 'acked' | 'refused' | 'unknown';
  rid: number;
  /** Tries so far: retries back off exponentially, as the SDK's do. */
  tries: number;
}

/** One connection of a producer, to one node. */
interface ProducerLink {
  link: SimLink | null;
  greeted: boolean;
}

export class SimProducer {
  /** One connection per node, opened on demand: a refused submission tries the next node (as
   * the SDK tries its URLs); in contention mode a node serves only the shards it won. */
  private readonly links: ProducerLink[];
  private readonly byRid = new Map<number, { submission: Submission; via: ProducerLink }>();
  /** Cancellations in flight: rid → job id and tries left. */
  private readonly cancels = new Map<number, { jobId: string; triesLeft: number }>();
  private readonly all: Submission[] = [];
  private nextRid = 0;

  constructor(
    readonly tenant: string,
    private readonly queue: EventQueue,
    private readonly random: SeededRandom,
    private readonly dialers: Dialer[],
    private readonly checkers: Checkers,
  ) {
    this.links = dialers.map(() => ({ link: null, greeted: false }));
  }

  /** Schedules `count` submissions spread over `overMs`, some in bursts; some keyed ones are
   * sent twice, as two clients racing with one key would. */
  plan(count: number, overMs: number, mix: { keyed: number; delayed: number; burst: number; behaviours: readonly Behaviour[]; queue?: string }): void {
    for (let n = 0; n < count; n++) {
      const behaviour = mix.behaviours[this.random.int(mix.behaviours.length)]!;
      const payload = new Uint8Array(5);
      payload[0] = BEHAVIOURS.indexOf(behaviour);
      new DataView(payload.buffer).setUint32(1, n);
      const spec: SubmitSpec = {
        queue: mix.queue ?? `q${this.random.int(2)}`,
        payload,
        priority: this.random.int(5) - 2,
        retry: { attemptsMax: 1 + this.random.int(4), backoffBaseMs: 50, backoffMaxMs: 2_000, jitter: 0.5 },
      };
      if (this.random.next() < mix.keyed) {
        spec.idempotencyKey = `${this.tenant}-k${n}`;
        // Half of the keys are placed where they arrive, as the SDK's generated keys are, so
        // that a retry through another node lands on another shard and only the store's
        // uniqueness of keys keeps it one job. (By n, not a draw, so seeds replay as before.)
        if (n % 2 === 0) spec.anyShard = true;
      }
      if (this.random.next() < mix.delayed) spec.delayMs = this.random.int(3_000);
      const submission: Submission = { n, spec, state: 'waiting', rid: 0, tries: 0 };
      this.all.push(submission);
      const atMs = this.random.next() < mix.burst ? overMs / 2 : this.random.next() * overMs;
      this.queue.schedule(atMs, () => this.send(submission));
      if (spec.idempotencyKey !== undefined && this.random.next() < 0.1) {
        const twin: Submission = { n, spec, state: 'waiting', rid: 0, tries: 0 };
        this.all.push(twin);
        this.queue.schedule(atMs + this.random.int(50), () => this.send(twin));
      }
    }
  }

  /** Idempotency keys whose every answer was a refusal: they must name no job. */
  refusedKeys(): string[] {
    return this.all.filter((s) => s.state === 'refused' && s.spec.idempotencyKey !== undefined).map((s) => `${this.tenant}/${s.spec.idempotencyKey}`);
  }

  get outstanding(): number {
    return this.all.filter((s) => s.state === 'waiting' || s.state === 'sent').length;
  }

  counts(): Record<Submission['state'], number> {
    const counts = { waiting: 0, sent: 0, acked: 0, refused: 0, unknown: 0 };
    for (const s of this.all) counts[s.state]++;
    return counts;
  }

  /** Sends `submission` again after a backoff that doubles with every try (jittered). */
  private retryLater(submission: Submission, atLeastMs = 0): void {
    submission.state = 'waiting';
    const backoffMs = Math.min(5_000, 50 * 2 ** Math.min(submission.tries, 10)) * (0.5 + this.random.next());
    this.queue.schedule(Math.max(atLeastMs, backoffMs), () => this.send(submission));
  }

  /** Each try of a submission goes to the next node, from a start of its own. */
  private send(submission: Submission): void {
    if (submission.state !== 'waiting') return;
    const via = this.links[(submission.n + submission.tries) % this.links.length]!;
    submission.tries++;
    const link = this.connected(via);
    if (link === null) return this.retryLater(submission);
    submission.state = 'sent';
    submission.rid = ++this.nextRid;
    this.byRid.set(submission.rid, { submission, via });
    // Some go as a batch of one, which a gateway forwards to the owner's node as a batch.
    if (this.random.next() < BATCHED) link.send({ t: 'submit_batch', rid: submission.rid, jobs: [submission.spec] });
    else link.send({ t: 'submit', rid: submission.rid, job: submission.spec });
  }

  private connected(via: ProducerLink): SimLink | null {
    if (via.link?.open) return via.greeted ? via.link : null;
    via.greeted = false;
    const index = this.links.indexOf(via);
    // Events of a link that is no longer the current one (a late close) are ignored.
    const link: SimLink | null = this.dialers[index]!({
      onMessage: (m) => {
        if (via.link === link) this.onMessage(via, m);
      },
      onClose: () => {
        if (via.link === link) this.onClose(via);
      },
    });
    via.link = link;
    link?.send({ t: 'hello', versions: [1] });
    return null;
  }

  private onMessage(via: ProducerLink, message: FromNode): void {
    if (message.t === 'welcome') {
      via.greeted = true;
      return;
    }
    if (!('rid' in message) || message.rid === null) return;
    const cancel = this.cancels.get(message.rid);
    if (cancel !== undefined) return this.cancelAnswered(message.rid, cancel, message);
    const sent = this.byRid.get(message.rid);
    if (sent === undefined || sent.submission.state !== 'sent') return;
    this.byRid.delete(message.rid);
    const { submission } = sent;
    const answer = singleAnswer(message);
    if (answer.t === 'submitted') {
      submission.state = 'acked';
      this.checkers.submissionAcked(answer.jobId, this.tenant, submission.spec.idempotencyKey ?? null);
      // Some jobs are cancelled a little later: pending, running or already finished.
      if (this.random.next() < 0.05) this.queue.schedule(this.random.int(2_000), () => this.cancel(answer.jobId, 5));
    } else if (answer.t === 'error') {
      this.refused(submission, answer);
    }
  }

  private cancel(jobId: string, triesLeft: number): void {
    const link = this.connected(this.links[triesLeft % this.links.length]!);
    if (link === null) return void this.queue.schedule(REDIAL_MS, () => this.cancel(jobId, triesLeft));
    const rid = ++this.nextRid;
    this.cancels.set(rid, { jobId, triesLeft });
    link.send({ t: 'cancel', rid, jobId });
  }

  private cancelAnswered(rid: number, cancel: { jobId: string; triesLeft: number }, message: FromNode): void {
    this.cancels.delete(rid);
    if (message.t === 'cancelled') return this.checkers.cancelAcked(cancel.jobId);
    if (message.t !== 'error' || message.code === 'illegal_state') return; // finished first: fine
    if (message.code === 'not_found') return this.checkers.ackedJobNotFound(cancel.jobId);
    if (cancel.triesLeft > 1) this.queue.schedule(message.retryAfterMs ?? 100, () => this.cancel(cancel.jobId, cancel.triesLeft - 1));
  }

  private refused(submission: Submission, error: ErrorBody): void {
    const keyed = submission.spec.idempotencyKey !== undefined;
    if (error.code === 'internal' && !keyed) {
      // The outcome is unknown and, without a key, a retry could make a second job.
      submission.state = 'unknown';
      return;
    }
    if (RETRYABLE.has(error.code)) return this.retryLater(submission, error.retryAfterMs ?? 0);
    submission.state = 'refused';
  }

  private onClose(via: ProducerLink): void {
    via.greeted = false;
    // What was in flight may or may not have been applied: keyed submissions go again under
    // the same key (the SDK's behaviour); others cannot be retried safely. A cancellation in
    // flight is simply not retried: it may or may not have happened.
    for (const [rid, sent] of this.byRid) {
      if (sent.via !== via) continue;
      this.byRid.delete(rid);
      if (sent.submission.spec.idempotencyKey !== undefined) this.retryLater(sent.submission, REDIAL_MS);
      else sent.submission.state = 'unknown';
    }
  }
}

/** The answer to a batch of one, as the answer to a single `submit`. */
function singleAnswer(message: FromNode): FromNode {
  if (message.t !== 'submitted_batch' || message.results[0] === undefined) return message;
  const result = message.results[0];
  return 'error' in result ? errorReply(message.rid, result.error) : { t: 'submitted', rid: message.rid, ...result };
}

interface Running {
  token: LeaseToken;
  queue: string;
  behaviour: Behaviour;
  verdict: 'complete' | 'fail' | null;
  revoked: boolean;
}

export class SimWorker {
  private link: SimLink | null = null;
  private greeted = false;
  private readonly running = new Map<string, Running>();
  private readonly byRid = new Map<number, Running>();
  private nextRid = 0;
  completed = 0;

  constructor(
    readonly name: string,
    readonly tenant: string,
    private readonly slots: number,
    private readonly queue: EventQueue,
    private readonly random: SeededRandom,
    private readonly dial: Dialer,
    private readonly checkers: Checkers,
    /** The downstream its tenant's jobs of one queue call, if it is this worker's tenant's. */
    private readonly downstream: Downstream | null = null,
  ) {}

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.link?.open) return;
    this.greeted = false;
    // Events of a link that is no longer the current one (a late close) are ignored.
    const link: SimLink | null = this.dial({
      onMessage: (m) => {
        if (this.link === link) this.onMessage(m);
      },
      onClose: () => {
        if (this.link === link) this.onClose();
      },
    });
    this.link = link;
    if (this.link === null) return void this.queue.schedule(REDIAL_MS, () => this.connect());
    this.link.send({ t: 'hello', versions: [1] });
  }

  private send(message: ToNode): void {
    if (this.link?.open && this.greeted) this.link.send(message);
  }

  /** The node it is connected to and greeted by, if any. */
  get node(): string | null {
    return this.link?.open && this.greeted ? this.link.host.id : null;
  }

  /** Slots of `queue` it has given credit for and no attempt holds (the ready-jobs checker). */
  freeSlots(queue: string): number {
    if (this.node === null) return 0;
    let busy = 0;
    for (const run of this.running.values()) if (run.queue === queue) busy++;
    return this.slots - busy;
  }

  private onMessage(message: FromNode): void {
    switch (message.t) {
      case 'welcome':
        this.greeted = true;
        this.send({ t: 'credit', queue: 'q0', slots: this.slots });
        this.send({ t: 'credit', queue: 'q1', slots: this.slots });
        if (this.downstream !== null) this.send({ t: 'credit', queue: this.downstream.queue, slots: this.slots });
        return;
      case 'lease':
        return this.leased(message.token, message.queue, message.payload, message.leaseMs);
      case 'revoke': {
        // The handler sees its abort signal and stops; the slot is free again.
        const run = this.running.get(key(message.token));
        if (run === undefined) return;
        // A zombie does not hear it (as if the revocation were lost) and answers late anyway.
        if (run.behaviour === 'zombie' && run.token.attempt === 1) return;
        run.revoked = true;
        this.running.delete(key(message.token));
        return this.credit(run);
      }
      case 'ack':
      case 'error':
      case 'lease_extended': {
        if (message.rid === null) return;
        const run = this.byRid.get(message.rid);
        this.byRid.delete(message.rid);
        if (run === undefined || run.verdict === null) return;
        if (message.t === 'ack') {
          this.checkers.verdictAcked(run.token.jobId, run.token.attempt, run.verdict);
          this.completed++;
        }
        if (this.running.delete(key(run.token))) this.credit(run);
        return;
      }
    }
  }

  private leased(token: LeaseToken, queue: string, payload: Uint8Array, leaseMs: number): void {
    const behaviour = BEHAVIOURS[payload[0]!] ?? 'succeed';
    const run: Running = { token, queue, behaviour, verdict: null, revoked: false };
    this.running.set(key(token), run);
    this.checkers.handlerStarted(token.jobId);
    const incarnation = this.link;
    if (this.downstream !== null && queue === this.downstream.queue) return this.callDownstream(run, this.downstream, incarnation);
    // A hang hangs on the first attempt only, so the job can still finish on a retry. It
    // neither heartbeats nor answers until it is revoked or, like any stuck handler in the end,
    // returns after a long while (its answer is then refused as stale).
    if (behaviour === 'hang' && token.attempt === 1) {
      this.queue.schedule(leaseMs * 4, () => {
        if (this.link !== incarnation || !this.running.has(key(token))) return;
        run.verdict = 'complete';
        const rid = ++this.nextRid;
        this.byRid.set(rid, run);
        this.send({ t: 'complete', rid, token });
      });
      return;
    }
    const outlives = behaviour === 'long' || (behaviour === 'zombie' && token.attempt === 1);
    const durationMs = outlives ? leaseMs * 2 : 1 + this.random.int(20);
    if (behaviour === 'long') this.heartbeat(run, leaseMs, incarnation);
    this.queue.schedule(durationMs, () => {
      if (this.link !== incarnation || !this.running.has(key(token))) return;
      const rid = ++this.nextRid;
      this.byRid.set(rid, run);
      if (behaviour === 'fail' || behaviour === 'fail_fatal') {
        run.verdict = 'fail';
        this.send({ t: 'fail', rid, token, error: `${behaviour} on attempt ${token.attempt}`, retryable: behaviour === 'fail' });
      } else {
        run.verdict = 'complete';
        this.send({ t: 'complete', rid, token });
      }
    });
  }

  /** A job of the downstream's queue: one call, answered as the downstream is when it returns. */
  private callDownstream(run: Running, downstream: Downstream, incarnation: SimLink | null): void {
    this.queue.schedule(1 + this.random.int(20), () => {
      if (this.link !== incarnation || !this.running.has(key(run.token))) return;
      const rid = ++this.nextRid;
      this.byRid.set(rid, run);
      if (downstream.down) {
        run.verdict = 'fail';
        this.send({ t: 'fail', rid, token: run.token, error: 'downstream unavailable', retryable: true, downstream: true });
      } else {
        run.verdict = 'complete';
        this.send({ t: 'complete', rid, token: run.token });
      }
    });
  }

  private heartbeat(run: Running, leaseMs: number, incarnation: SimLink | null): void {
    this.queue.schedule(leaseMs / 3, () => {
      if (this.link !== incarnation || run.verdict !== null || !this.running.has(key(run.token))) return;
      this.send({ t: 'heartbeat', rid: ++this.nextRid, token: run.token });
      this.heartbeat(run, leaseMs, incarnation);
    });
  }

  /** The slot of a finished attempt is free again, for the same queue. */
  private credit(run: Running): void {
    this.send({ t: 'credit', queue: run.queue, slots: 1 });
  }

  private onClose(): void {
    // The worker process goes on, but its attempts belong to a dead connection: their leases
    // run out on the node and the jobs are retried. It reconnects with fresh credit.
    this.running.clear();
    this.byRid.clear();
    this.greeted = false;
    this.queue.schedule(REDIAL_MS, () => this.connect());
  }
}

function key(token: LeaseToken): string {
  return `${token.jobId}/${token.attempt}/${token.epoch}`;
}
