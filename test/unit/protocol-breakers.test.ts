// The breaker parts of the protocol: what a BreakerSpec may say (ranges from BREAKER_LIMITS, and
// cooldownMaxMs against cooldownMs once defaults are filled in), the config a spec stands for,
// the view of a breaker, and the bounds of the peer messages that carry breakers.

import { describe, expect, it } from 'vitest';
import { BREAKER_DEFAULTS, BREAKER_LIMITS } from '../../protocol/breaker-view.ts';
import { closedBreaker, type Breaker } from '../../node/core/breaker/breaker.ts';
import { breakerConfigOf, breakerSpecSchema } from '../../protocol/breaker-view.ts';
import { toBreakerView } from '../../node/core/gateway/views.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import { BREAKER_REPORT_LANES_MAX, BREAKER_SIGNALS_MAX } from '../../protocol/limits.ts';
import { Invalid } from '../../protocol/schema.ts';
import { decodeFromClient, decodeFromNode, decodeFromPeer } from '../../protocol/validate.ts';

const JOB_ID = '03f-mjuohs00-5-16';

function setBreaker(breaker: Record<string, unknown>) {
  return decodeFromClient(encodeMessage({ t: 'breaker_set', rid: 7, breaker }));
}

describe('breaker_set', () => {
  it('takes a queue alone, every setting, or the queue switched off', () => {
    expect(setBreaker({ queue: 'q' })).toEqual({ ok: true, msg: { t: 'breaker_set', rid: 7, breaker: { queue: 'q' } } });
    const all = { queue: 'q', enabled: true, failureRatePct: 100, minAttempts: 1, windowMs: 1_000, cooldownMs: 100, cooldownMaxMs: 100, probes: 100, refuseWhenOpen: true };
    expect(setBreaker(all)).toEqual({ ok: true, msg: { t: 'breaker_set', rid: 7, breaker: all } });
    expect(setBreaker({ queue: 'q', enabled: false }).ok).toBe(true);
  });

  it('refuses each setting out of its range, naming it', () => {
    for (const [name, [min, max]] of Object.entries(BREAKER_LIMITS)) {
      for (const bad of [min - 1, max + 1, min + 0.5]) {
        expect(setBreaker({ queue: 'q', [name]: bad }), `${name}=${bad}`).toMatchObject({
          ok: false,
          rid: 7,
          error: { code: 'bad_request', field: `breaker.${name}` },
        });
      }
    }
    expect(setBreaker({ queue: '' })).toMatchObject({ ok: false, error: { field: 'breaker.queue' } });
    expect(setBreaker({ queue: 'q', refuse: true })).toMatchObject({ ok: false, error: { field: 'breaker.refuse', message: 'breaker.refuse: unknown field' } });
  });

  it('refuses a cool-down cap below the cool-down, defaults filled in', () => {
    expect(setBreaker({ queue: 'q', cooldownMs: 10_000, cooldownMaxMs: 9_999 })).toMatchObject({
      ok: false,
      error: { code: 'bad_request', field: 'breaker.cooldownMaxMs', message: 'breaker.cooldownMaxMs: cooldownMaxMs (9999) must be at least cooldownMs (10000)' },
    });
    // The default cap (300 s) is below a cool-down of an hour: the cool-down is to blame.
    expect(setBreaker({ queue: 'q', cooldownMs: 3_600_000 })).toMatchObject({ ok: false, error: { field: 'breaker.cooldownMs' } });
    // And a cap below the default cool-down (5 s).
    expect(setBreaker({ queue: 'q', cooldownMaxMs: 1_000 })).toMatchObject({ ok: false, error: { field: 'breaker.cooldownMaxMs' } });
    expect(setBreaker({ queue: 'q', cooldownMs: 3_600_000, cooldownMaxMs: 3_600_000 }).ok).toBe(true);
  });

  it('the schema is what the node flag uses too', () => {
    expect(breakerSpecSchema.check({ queue: 'default', minAttempts: 0 })).toBeInstanceOf(Invalid);
  });
});

describe('breakerConfigOf', () => {
  it('fills in BREAKER_DEFAULTS for what the spec leaves out', () => {
    expect(breakerConfigOf({ queue: 'q' })).toEqual(BREAKER_DEFAULTS);
    expect(breakerConfigOf({ queue: 'q', enabled: false, minAttempts: 5, refuseWhenOpen: true })).toEqual({
      ...BREAKER_DEFAULTS,
      enabled: false,
      minAttempts: 5,
      refuseWhenOpen: true,
    });
  });
});

describe('toBreakerView', () => {
  it('shows the settings in force, the state and the window, instants as …At', () => {
    const breaker: Breaker = {
      ...closedBreaker('acme', 'payments', 12, null, 5_000, 1_000),
      state: 'open',
      sinceMs: 2_000,
      nextProbeAtMs: 12_000,
      cooldownMs: 10_000,
      round: 3,
      openedAttempts: 40,
      openedFailures: 30,
      version: 9,
      updatedAtMs: 2_000,
    };
    const config = { ...BREAKER_DEFAULTS, probes: 2 };
    expect(toBreakerView(breaker, config, 'default', { attempts: 4, failures: 1 })).toEqual({
      queue: 'payments',
      source: 'default',
      ...config,
      state: 'open',
      since: 2_000,
      nextProbeAt: 12_000,
      currentCooldownMs: 10_000,
      openedAttempts: 40,
      openedFailures: 30,
      window: { attempts: 4, failures: 1 },
      updatedAt: 2_000,
    });
    const view = toBreakerView(breaker, config, 'queue', null);
    expect(view.window).toBeNull();
    expect(decodeFromNode(encodeMessage({ t: 'breaker', rid: 1, breaker: view }))).toEqual({ ok: true, msg: { t: 'breaker', rid: 1, breaker: view } });
  });
});

describe('fail.downstream', () => {
  const token = { jobId: JOB_ID, attempt: 1, epoch: 1 };

  it('is optional and a boolean', () => {
    for (const downstream of [true, false, undefined]) {
      const fail = { t: 'fail', rid: 1, token, error: 'x', retryable: true, downstream };
      expect(decodeFromClient(encodeMessage(fail)).ok).toBe(true);
    }
    expect(decodeFromClient(encodeMessage({ t: 'fail', rid: 1, token, error: 'x', retryable: true, downstream: 1 }))).toMatchObject({
      ok: false,
      error: { code: 'bad_request', field: 'downstream' },
    });
  });
});

describe('peer messages with breakers', () => {
  const signal = { tenant: 'acme', queue: 'q', state: 'open', version: 1, round: 0, probes: 1, since: 1, nextProbeAt: 2, refuse: false };
  const heartbeat = (breakers: unknown[]) => ({
    t: 'member_heartbeat',
    node: 'n1',
    incarnation: 1,
    state: 'alive',
    addrs: [],
    clientUrl: 'ws://127.0.0.1:7070',
    load: { shards: 1, backlog: [], breakers },
  });

  it('a heartbeat carries at most BREAKER_SIGNALS_MAX signals', () => {
    expect(decodeFromPeer(encodeMessage(heartbeat(Array.from({ length: BREAKER_SIGNALS_MAX }, () => signal)))).ok).toBe(true);
    expect(decodeFromPeer(encodeMessage(heartbeat(Array.from({ length: BREAKER_SIGNALS_MAX + 1 }, () => signal))))).toMatchObject({
      ok: false,
      error: { field: 'load.breakers' },
    });
    expect(decodeFromPeer(encodeMessage(heartbeat([{ ...signal, state: 'ajar' }])))).toMatchObject({ ok: false, error: { field: 'load.breakers[0].state' } });
  });

  it('a breaker_report counts at most BREAKER_REPORT_LANES_MAX lanes', () => {
    const count = { tenant: 'acme', queue: 'q', successes: 1, failures: 2 };
    const report = (n: number) => encodeMessage({ t: 'breaker_report', counts: Array.from({ length: n }, () => count) });
    expect(decodeFromPeer(report(BREAKER_REPORT_LANES_MAX)).ok).toBe(true);
    expect(decodeFromPeer(report(BREAKER_REPORT_LANES_MAX + 1))).toMatchObject({ ok: false, error: { field: 'counts' } });
    expect(decodeFromPeer(encodeMessage({ t: 'breaker_report', counts: [{ ...count, failures: -1 }] }))).toMatchObject({ ok: false, error: { field: 'counts[0].failures' } });
  });
});
