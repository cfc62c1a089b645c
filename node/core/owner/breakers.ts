// A shard owner's circuit breakers (breaker/breaker.ts): the breakers of the lanes that hash to
// this shard, each with its rolling window of attempt outcomes, which every node reports
// (breaker/breaker-board.ts). The owner is where a breaker's state is decided
// (breaker-machine.ts) and persisted: every change is a fenced, versioned write, and only once
// it has committed does memory move and the cluster hear of it. So a crash or a hand-off hands
// the next owner the state as committed: an open breaker stays open.
//
// A lane without settings of its own follows the node's default breaker, if the node has one;
// such a breaker gets a row only when its state first changes.
//
// Writes of one breaker go one at a time, like a schedule's; outcomes that come while one is in
// flight are counted, and decided on once it is back.

import type { ErrorBody } from '../../../protocol/errors.ts';
import type { BreakerSignal } from '../../../protocol/peer-messages.ts';
import type { ActorContext } from '../actor/runtime.ts';
import { BREAKER_DEFAULTS, type BreakerConfig } from '../../../protocol/breaker-view.ts';
import { BREAKERS_PER_TENANT_MAX, closedBreaker, FORGOTTEN_AFTER_MS, type Breaker, type BreakerWrite, type BreakerWriteOutcome } from '../breaker/breaker.ts';
import { afterOutcomes, afterTime, nextTimeMs, OutcomeWindow, withConfig, withinBounds, type Reported } from '../breaker/breaker-machine.ts';
import { laneOf, splitLane } from '../job/lane.ts';
import { refusal } from '../refusal.ts';
import { planted } from '../test-hooks.ts';
import type { OwnerMsg } from './owner-messages.ts';

/** A closed breaker is still told to the cluster this long after it closed, so that a node that
 * missed the change (a lost heartbeat, a node that held it open across a hand-off) hears of it. */
const SIGNAL_CLOSED_MS = 60_000;
/** The owner tells its node's board its signals at least this often, so that they stay fresh in
 * every node's heartbeats while a breaker is not closed. */
const SIGNAL_EVERY_MS = 1_000;
/** Lanes with a default breaker but no row yet, counted per owner at most: reports of more are
 * not counted. */
const ENTRIES_MAX = 10_000;

export type BreakerOp = { kind: 'set'; queue: string; config: BreakerConfig } | { kind: 'clear'; queue: string } | { kind: 'get'; queue: string };

export interface BreakerReading {
  breaker: Breaker;
  config: BreakerConfig;
  source: 'queue' | 'default';
  window: { attempts: number; failures: number };
}
export type BreakerOutcome = { ok: true; reading: BreakerReading } | { ok: false; error: ErrorBody };

export type BreakersMsg =
  /** Attempt outcomes of lanes whose breakers live here, from the boards of every node. */
  | { kind: 'report'; counts: Array<[lane: string, successes: number, failures: number, abandoned: number]> }
  | { kind: 'tick' }
  | { kind: 'written'; lane: string; outcome: BreakerWriteOutcome | 'unknown' };

/** What the breakers need of their owner. */
export interface BreakerHost {
  readonly shard: number;
  readonly epoch: number;
  /** The node's default breaker for lanes without settings of their own, or null. */
  readonly defaultConfig: BreakerConfig | null;
  serving(): boolean;
  /** The store said the epoch moved on, or holds something memory does not: stop and reload. */
  fail(reason: 'deposed' | 'failed', ctx: ActorContext<OwnerMsg>): void;
  unavailable(): ErrorBody;
  /** The shard's breakers the cluster should hear of (all of them, replacing the last list). */
  signal(signals: BreakerSignal[]): void;
}

interface Entry {
  /** version 0: no row yet. */
  breaker: Breaker;
  window: OutcomeWindow;
  /** A write of it is in flight; what comes next waits in `waiting`. */
  busy: ((outcome: BreakerWriteOutcome | 'unknown') => void) | null;
  waiting: Array<() => void>;
  /** When the current half-open round began, or this owner saw the breaker open (monotonic
   * time of this owner: rounds and cool-downs restart with a new owner). */
  roundStartedMs: number;
  /** Outcomes that came while a write was in flight. */
  since: Reported;
}

export class ShardBreakers {
  private readonly entries = new Map<string, Entry>();
  /** Lanes under the node's default whose breaker could not get a row (the tenant has
   * BREAKERS_PER_TENANT_MAX): not counted, nor logged again, until a row is freed here. */
  private readonly refused = new Set<string>();

  constructor(private readonly host: BreakerHost) {}

  get idle(): boolean {
    for (const entry of this.entries.values()) if (entry.busy !== null) return false;
    return true;
  }

  loaded(breakers: Breaker[], ctx: ActorContext<OwnerMsg>): void {
    const monoMs = ctx.env.clock.monotonicMs();
    for (const stored of breakers) {
      const config = this.configOf(stored);
      const breaker = config === null ? stored : withinBounds(stored, config);
      this.entries.set(laneOf(breaker.tenant, breaker.queue), this.entryOf(breaker, monoMs));
    }
    this.signal(ctx);
    this.arm(ctx);
  }

  /** The owner stops: the cluster hears of these breakers from the shard's next owner. */
  stopped(): void {
    this.host.signal([]);
  }

  handle(msg: BreakersMsg, ctx: ActorContext<OwnerMsg>): void {
    // A write's answer is taken even once the owner stops serving: it waits for its writes to
    // come back before it stops (ShardOwner.finishDrainIfIdle), as it does for schedules'.
    if (!this.host.serving() && msg.kind !== 'written') return;
    switch (msg.kind) {
      case 'report':
        for (const [lane, successes, failures, abandoned] of msg.counts) this.outcomes(lane, successes, failures, abandoned, ctx);
        return this.arm(ctx);
      case 'tick':
        this.timePassed(ctx);
        this.signal(ctx);
        return this.arm(ctx);
      case 'written': {
        const entry = this.entries.get(msg.lane);
        const done = entry?.busy;
        if (entry === undefined || done === null || done === undefined) return;
        entry.busy = null;
        done(msg.outcome);
        while (entry.busy === null && entry.waiting.length > 0) entry.waiting.shift()!();
        if (entry.busy === null && this.host.serving()) this.decide(msg.lane, entry, entry.since, ctx);
        return this.arm(ctx);
      }
    }
  }

  /** A client's change or read. Changes are answered once committed. */
  change(tenant: string, op: BreakerOp, reply: (outcome: BreakerOutcome) => void, ctx: ActorContext<OwnerMsg>): void {
    if (!this.host.serving()) return reply({ ok: false, error: this.host.unavailable() });
    const lane = laneOf(tenant, op.queue);
    const nowMs = ctx.env.clock.wallMs();
    let entry = this.entries.get(lane);
    if (entry?.busy !== null && entry !== undefined) return void entry.waiting.push(() => this.change(tenant, op, reply, ctx));
    const current = entry?.breaker ?? null;
    const notFound = () => reply({ ok: false, error: refusal('not_found', `queue ${op.queue} has no circuit breaker`) });
    if (op.kind === 'get') {
      if (entry === undefined) {
        if (this.host.defaultConfig === null) return notFound();
        entry = this.entryOf(closedBreaker(tenant, op.queue, this.host.shard, null, this.host.defaultConfig.cooldownMs, nowMs), 0);
      }
      const reading = this.reading(entry, nowMs);
      return reading === null ? notFound() : reply({ ok: true, reading });
    }
    if (op.kind === 'clear' && (current === null || current.version === 0 || current.config === null)) {
      // No settings of its own to clear: as `get` says, it follows the default, or has none.
      if (this.host.defaultConfig === null) return notFound();
      if (current !== null && entry !== undefined) return reply({ ok: true, reading: this.reading(entry, nowMs)! });
      const fresh = closedBreaker(tenant, op.queue, this.host.shard, null, this.host.defaultConfig.cooldownMs, nowMs);
      return reply({ ok: true, reading: this.reading(this.entryOf(fresh, 0), nowMs)! });
    }
    const config = op.kind === 'set' ? op.config : null;
    const effective = config ?? this.host.defaultConfig;
    const base = current ?? closedBreaker(tenant, op.queue, this.host.shard, config, (effective ?? BREAKER_DEFAULTS).cooldownMs, nowMs);
    const next = withConfig(base, config, effective, nowMs);
    if (entry === undefined) {
      entry = this.entryOf(base, 0);
      this.entries.set(lane, entry);
    }
    const target = entry;
    if (op.kind === 'set') this.refused.delete(lane);
    this.write(lane, target, next, ctx, (outcome) => {
      if (outcome !== 'ok') {
        if (target.breaker.version === 0 && target.busy === null) this.entries.delete(lane);
        return reply({ ok: false, error: this.refusalOf(outcome) });
      }
      // New settings start a new window: counts made under the old ones no longer apply.
      if (op.kind === 'set') target.window = new OutcomeWindow(op.config.windowMs);
      const afterMs = ctx.env.clock.wallMs();
      // Cleared on a node without a default breaker, the queue has none: shown switched off.
      const none: BreakerReading = { breaker: target.breaker, config: { ...BREAKER_DEFAULTS, enabled: false }, source: 'default', window: target.window.totals(afterMs) };
      reply({ ok: true, reading: this.reading(target, afterMs) ?? none });
    });
  }

  // ---- Decisions ---------------------------------------------------------------------------

  private outcomes(lane: string, successes: number, failures: number, abandoned: number, ctx: ActorContext<OwnerMsg>): void {
    let entry = this.entries.get(lane);
    const nowMs = ctx.env.clock.wallMs();
    if (entry === undefined) {
      const config = this.host.defaultConfig;
      if (config === null || !config.enabled || this.entries.size >= ENTRIES_MAX || this.refused.has(lane)) return;
      const [tenant, queue] = splitLane(lane);
      entry = this.entryOf(closedBreaker(tenant, queue, this.host.shard, null, config.cooldownMs, nowMs), 0);
      this.entries.set(lane, entry);
    }
    const config = this.configOf(entry.breaker);
    if (config === null || !config.enabled) return;
    if (entry.breaker.state === 'closed') entry.window.add(nowMs, successes, failures);
    const reported: Reported = { failed: failures > 0, succeeded: successes > 0, abandoned: abandoned > 0 };
    if (entry.busy !== null) {
      entry.since = { failed: entry.since.failed || reported.failed, succeeded: entry.since.succeeded || reported.succeeded, abandoned: entry.since.abandoned || reported.abandoned };
      return;
    }
    this.decide(lane, entry, reported, ctx);
  }

  private decide(lane: string, entry: Entry, reported: Reported, ctx: ActorContext<OwnerMsg>): void {
    entry.since = NOTHING_REPORTED;
    const config = this.configOf(entry.breaker);
    if (config === null || !config.enabled) return;
    const next = afterOutcomes(entry.breaker, config, entry.window, reported, ctx.env.clock.wallMs());
    if (next?.state === 'open' && planted(ctx.env.testHooks, 'breaker_never_probe')) next.nextProbeAtMs = null;
    if (next !== null) this.write(lane, entry, next, ctx, () => {});
  }

  private timePassed(ctx: ActorContext<OwnerMsg>): void {
    const nowMs = ctx.env.clock.wallMs();
    const monoMs = ctx.env.clock.monotonicMs();
    for (const [lane, entry] of this.entries) {
      if (entry.busy !== null) continue;
      // Rounds are timed on the monotonic clock; afterTime compares them in its own terms.
      const startedMs = nowMs - (monoMs - entry.roundStartedMs);
      const next = afterTime(coolingHere(entry.breaker, startedMs), startedMs, nowMs);
      if (next !== null) this.write(lane, entry, next, ctx, () => {});
      else if (forgotten(entry.breaker, nowMs)) this.forget(lane, entry, ctx);
    }
  }

  /** Deletes the row of a breaker that no longer needs one (forgotten()): it frees a place of
   * the tenant's, and the memory here. */
  private forget(lane: string, entry: Entry, ctx: ActorContext<OwnerMsg>): void {
    this.write(lane, entry, entry.breaker, ctx, (outcome) => {
      if (outcome !== 'ok') return;
      this.entries.delete(lane);
      // A place is free: lanes refused one may try again.
      this.refused.clear();
    }, true);
  }

  /** One timer: the earliest breaker due to move on, and the signals' refresh. */
  private arm(ctx: ActorContext<OwnerMsg>): void {
    if (!this.host.serving()) return ctx.cancelTimer('breaker_tick');
    const nowMs = ctx.env.clock.wallMs();
    const monoMs = ctx.env.clock.monotonicMs();
    let earliest = Infinity;
    for (const entry of this.entries.values()) {
      if (entry.busy !== null) continue;
      const startedMs = nowMs - (monoMs - entry.roundStartedMs);
      const due = nextTimeMs(coolingHere(entry.breaker, startedMs), startedMs);
      if (due !== null) earliest = Math.min(earliest, due);
      if (entry.breaker.version > 0 && entry.breaker.config === null && entry.breaker.state === 'closed') earliest = Math.min(earliest, entry.breaker.sinceMs + FORGOTTEN_AFTER_MS);
      if (entry.breaker.version > 0 && (entry.breaker.state !== 'closed' || nowMs - entry.breaker.sinceMs < SIGNAL_CLOSED_MS)) earliest = Math.min(earliest, nowMs + SIGNAL_EVERY_MS);
    }
    if (earliest === Infinity) return ctx.cancelTimer('breaker_tick');
    // The wall clock is looked at every second at least, as schedules do: a timer runs on
    // monotonic time.
    ctx.startTimer('breaker_tick', Math.max(0, Math.min(SIGNAL_EVERY_MS, earliest - nowMs)), { kind: 'breakers', msg: { kind: 'tick' } });
  }

  // ---- Writes ------------------------------------------------------------------------------

  /** Writes `next`, or with `del` deletes the breaker's row. */
  private write(lane: string, entry: Entry, next: Breaker, ctx: ActorContext<OwnerMsg>, done: (outcome: BreakerWriteOutcome | 'unknown') => void, del = false): void {
    const expectedVersion = entry.breaker.version === 0 ? null : entry.breaker.version;
    const write: BreakerWrite = del ? { breaker: next, expectedVersion, delete: true } : { breaker: next, expectedVersion };
    entry.busy = (outcome) => {
      if (outcome === 'stale_epoch') this.host.fail('deposed', ctx);
      if (outcome === 'unknown' || outcome === 'conflict') {
        // Memory may disagree with the store now: only a reload can tell.
        if (outcome === 'conflict') ctx.env.logger.log('error', 'owner.breaker_conflict', { shard: this.host.shard, tenant: next.tenant, queue: next.queue });
        this.host.fail('failed', ctx);
      }
      if (outcome === 'limit' && next.config === null) {
        // A default breaker that cannot have a row: said once, and left closed, uncounted.
        ctx.env.logger.log('warn', 'owner.breaker_limit', { shard: this.host.shard, tenant: next.tenant, queue: next.queue, perTenant: BREAKERS_PER_TENANT_MAX });
        if (this.entries.get(lane) === entry && entry.breaker.version === 0) this.entries.delete(lane);
        if (this.refused.size < ENTRIES_MAX) this.refused.add(lane);
      }
      if (outcome === 'ok' && !del) this.committed(entry, { ...next, version: (write.expectedVersion ?? 0) + 1 }, ctx);
      done(outcome);
    };
    const lease = { shard: this.host.shard, epoch: this.host.epoch };
    ctx.pipe(
      () => ctx.env.store.writeBreaker(lease, write),
      (outcome): OwnerMsg => ({ kind: 'breakers', msg: { kind: 'written', lane, outcome } }),
      (): OwnerMsg => ({ kind: 'breakers', msg: { kind: 'written', lane, outcome: 'unknown' } }),
    );
  }

  private committed(entry: Entry, breaker: Breaker, ctx: ActorContext<OwnerMsg>): void {
    const before = entry.breaker;
    entry.breaker = breaker;
    if (breaker.state === before.state && breaker.round === before.round) return this.signal(ctx);
    if (breaker.state !== 'closed' || before.state !== 'closed') entry.window.clear();
    if (breaker.state !== 'closed') entry.roundStartedMs = ctx.env.clock.monotonicMs();
    ctx.env.metrics.inc('breaker_transitions_total', { to: breaker.state });
    ctx.env.logger.log('info', 'breaker.state', {
      shard: this.host.shard,
      tenant: breaker.tenant,
      queue: breaker.queue,
      state: breaker.state,
      round: breaker.round,
      version: breaker.version,
      cooldownMs: breaker.cooldownMs,
      attempts: breaker.openedAttempts,
      failures: breaker.openedFailures,
    });
    this.signal(ctx);
  }

  private signal(ctx: ActorContext<OwnerMsg>): void {
    const nowMs = ctx.env.clock.wallMs();
    const signals: BreakerSignal[] = [];
    for (const { breaker: b } of this.entries.values()) {
      if (b.version === 0 || (b.state === 'closed' && nowMs - b.sinceMs >= SIGNAL_CLOSED_MS)) continue;
      const config = this.configOf(b);
      signals.push({
        tenant: b.tenant,
        queue: b.queue,
        state: b.state,
        version: b.version,
        round: b.round,
        probes: config?.probes ?? 0,
        since: b.sinceMs,
        nextProbeAt: b.nextProbeAtMs,
        refuse: config?.refuseWhenOpen ?? false,
      });
    }
    this.host.signal(signals);
  }

  // ---- Bookkeeping -------------------------------------------------------------------------

  /** `roundStartedMs`: a breaker loaded half-open starts its round with this owner. */
  private entryOf(breaker: Breaker, roundStartedMs: number): Entry {
    const config = this.configOf(breaker);
    return {
      breaker,
      window: new OutcomeWindow(config?.windowMs ?? 30_000),
      busy: null,
      waiting: [],
      roundStartedMs,
      since: NOTHING_REPORTED,
    };
  }

  private configOf(b: Breaker): BreakerConfig | null {
    return b.config ?? this.host.defaultConfig;
  }

  private reading(entry: Entry, nowMs: number): BreakerReading | null {
    const config = this.configOf(entry.breaker);
    if (config === null) return null;
    return { breaker: entry.breaker, config, source: entry.breaker.config === null ? 'default' : 'queue', window: entry.window.totals(nowMs) };
  }

  private refusalOf(outcome: Exclude<BreakerWriteOutcome, 'ok'> | 'unknown'): ErrorBody {
    switch (outcome) {
      case 'limit':
        return refusal('illegal_state', `this tenant has ${BREAKERS_PER_TENANT_MAX} circuit breakers, as many as it may have`);
      case 'unknown':
        return refusal('internal', `the store did not confirm the change on shard ${this.host.shard}: it may or may not have happened; send it again`);
      case 'conflict':
      case 'stale_epoch':
        return this.host.unavailable();
    }
  }
}

/** An open breaker probes by its stored instant, or once its cool-down has passed on this
 * owner's monotonic clock since it saw it open (`openedMs`, in wall terms now), whichever comes
 * first: a wall clock that was ahead when it opened (or is behind here) must not hold it open
 * for the cool-down and the clock's error besides. */
function coolingHere(b: Breaker, openedMs: number): Breaker {
  if (b.state !== 'open' || b.nextProbeAtMs === null) return b;
  return { ...b, nextProbeAtMs: Math.min(b.nextProbeAtMs, openedMs + b.cooldownMs) };
}

const NOTHING_REPORTED: Reported = { failed: false, succeeded: false, abandoned: false };

/** Whether a breaker's row may go: it has no settings of its own (it follows the node's default,
 * or its settings were cleared) and has been closed long enough that no node remembers a state
 * of it (FORGOTTEN_AFTER_MS). */
function forgotten(b: Breaker, nowMs: number): boolean {
  return b.version > 0 && b.config === null && b.state === 'closed' && nowMs - b.sinceMs >= FORGOTTEN_AFTER_MS;
}
