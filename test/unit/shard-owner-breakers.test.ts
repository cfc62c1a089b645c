// The owner's circuit breakers (node/core/owner/breakers.ts) on virtual time and the in-memory
// store: a default breaker that cannot get a row is said once and left alone; a breaker without
// settings of its own gives its row back once no node can remember it; a probe given back starts
// the next round at once; clearing what has no settings is answered as `get` answers.

import { describe, expect, it } from 'vitest';
import { BREAKER_DEFAULTS, type BreakerConfig } from '../../protocol/breaker-view.ts';
import { breakerShard, FORGOTTEN_AFTER_MS } from '../../node/core/breaker/breaker.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import type { BreakerOp, BreakerOutcome } from '../../node/core/owner/breakers.ts';
import { MemoryStore } from '../../sim/memory-store.ts';
import { virtualNode } from '../support/virtual-node.ts';

const SHARDS = 4;
const FAST: BreakerConfig = { ...BREAKER_DEFAULTS, minAttempts: 2, failureRatePct: 50, cooldownMs: 100, cooldownMaxMs: 400 };

function setup(breakerDefault: BreakerConfig | null = null) {
  const logged: string[] = [];
  const ctx = virtualNode(SHARDS, {}, (backing) => new MemoryStore(backing), { breakerDefault, logger: { log: (_level, event) => void logged.push(event) } });
  const ownerOf = (queue: string) => ctx.node.routes.ownerOf(breakerShard('t1', queue, SHARDS))!;
  const op = async (o: BreakerOp): Promise<BreakerOutcome> => {
    let outcome: BreakerOutcome | undefined;
    ownerOf(o.queue).tell({ kind: 'breaker', tenant: 't1', op: o, reply: (r) => (outcome = r) });
    await ctx.run(() => outcome !== undefined);
    return outcome!;
  };
  const report = (queue: string, successes: number, failures: number, abandoned = 0) =>
    ownerOf(queue).tell({ kind: 'breakers', msg: { kind: 'report', counts: [[laneOf('t1', queue), successes, failures, abandoned]] } });
  return { ...ctx, logged, op, report, started: () => ctx.run(() => ctx.node.routes.served === SHARDS) };
}

describe('the owner’s circuit breakers', () => {
  it('leave a default breaker that cannot get a row (the tenant at its limit) closed, say so once, and do not write it again', async () => {
    const t = setup(FAST);
    t.backing.breakersPerTenantMax = 0;
    await t.started();
    for (let i = 0; i < 20; i++) {
      t.report('pay', 0, 5);
      await t.run(() => false, 100);
    }
    expect(t.logged.filter((e) => e === 'owner.breaker_limit')).toHaveLength(1);
    expect(await t.op({ kind: 'get', queue: 'pay' })).toMatchObject({ ok: true, reading: { breaker: { state: 'closed', version: 0 } } });
    expect(await t.store.getBreaker('t1', 'pay')).toBeNull();
  });

  it('give a row back once its breaker follows no settings of its own and is long closed, which frees a place of the tenant', async () => {
    const t = setup();
    t.backing.breakersPerTenantMax = 1;
    await t.started();
    expect(await t.op({ kind: 'set', queue: 'a', config: FAST })).toMatchObject({ ok: true });
    expect(await t.op({ kind: 'set', queue: 'b', config: FAST })).toMatchObject({ ok: false, error: { code: 'illegal_state' } });
    // Cleared, on a node without a default, it has no breaker; clearing again says so.
    expect(await t.op({ kind: 'clear', queue: 'a' })).toMatchObject({ ok: true });
    expect(await t.op({ kind: 'clear', queue: 'a' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await t.op({ kind: 'get', queue: 'a' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await t.store.getBreaker('t1', 'a')).not.toBeNull();
    await t.run(() => false, FORGOTTEN_AFTER_MS + 2_000);
    expect(await t.store.getBreaker('t1', 'a')).toBeNull();
    expect(await t.op({ kind: 'set', queue: 'b', config: FAST })).toMatchObject({ ok: true });
  });

  it('start the next probe round at once when a probe is given back', async () => {
    const t = setup();
    await t.started();
    await t.op({ kind: 'set', queue: 'pay', config: FAST });
    t.report('pay', 0, 2);
    await t.run(() => false, 1_500);
    expect(await t.store.getBreaker('t1', 'pay')).toMatchObject({ state: 'half_open', round: 1 });
    t.report('pay', 0, 0, 1);
    await t.run(() => false, 200);
    expect(await t.store.getBreaker('t1', 'pay')).toMatchObject({ state: 'half_open', round: 2 });
  });
});
