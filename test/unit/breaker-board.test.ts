// A node's board of circuit breakers (node/core/breaker/breaker-board.ts): which state of a
// breaker wins (the highest version, whoever signals it, in any order), what the dispatcher and
// watching clients are told, a state forgotten once nobody signals it, the refusal of a queue
// set to refuse while open, and outcomes reported to the owner of each lane's breaker, here or
// on the node the ring names.

import { describe, expect, it } from 'vitest';
import { ActorSystem, type ActorRef } from '../../node/core/actor/runtime.ts';
import { BreakerBoard, type BoardMsg, type BreakerChange } from '../../node/core/breaker/breaker-board.ts';
import { BreakerTally } from '../../node/core/breaker/breaker-tally.ts';
import { breakerShard } from '../../node/core/breaker/breaker.ts';
import type { DispatcherMsg } from '../../node/core/dispatch/dispatcher-messages.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import type { OwnerMsg } from '../../node/core/owner/owner-messages.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { RoutingTable } from '../../node/core/shards/routing-table.ts';
import type { BreakerSignal } from '../../protocol/peer-messages.ts';
import { EventQueue } from '../../sim/event-queue.ts';
import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';

const SHARDS = 8;
const LANE = laneOf('acme', 'pay');

function signal(version: number, state: BreakerSignal['state'], extra: Partial<BreakerSignal> = {}): BreakerSignal {
  return { tenant: 'acme', queue: 'pay', state, version, round: state === 'half_open' ? 1 : 0, probes: 1, since: version * 1_000, nextProbeAt: state === 'open' ? version * 1_000 + 5_000 : null, refuse: false, ...extra };
}

function setup() {
  const queue = new EventQueue(0);
  const sent: Array<[node: string, message: unknown]> = [];
  const env = simEnv({
    nodeId: 'a',
    queue,
    random: new SeededRandom(1),
    store: new MemoryStore(new MemoryBacking(SHARDS, () => queue.nowMs)),
    network: { send: (node, message) => void sent.push([node, message]), publish: () => {} },
  });
  const system = new ActorSystem(env);
  const gates: Array<DispatcherMsg & { kind: 'breaker_gate' }> = [];
  const dispatcher = system.spawn<DispatcherMsg>('dispatcher', { receive: (msg) => void (msg.kind === 'breaker_gate' && gates.push(msg)) });
  const routes = new RoutingTable(SHARDS);
  let announced = 0;
  let board: ActorRef<BoardMsg> | null = null;
  const tally = new BreakerTally(() => board!.tell({ kind: 'report_soon' }));
  const actor = new BreakerBoard({ routes, dispatcher, tally, signalsChanged: () => void announced++ });
  board = system.spawn<BoardMsg>('breakers', actor);
  const changes: BreakerChange[] = [];
  board.tell({ kind: 'watch', conn: 'c1', tenant: 'acme', push: (change) => void changes.push(change) });
  const run = (ms: number) => runUntil(queue, () => false, queue.nowMs + ms);
  return { actor, board: board!, routes, tally, gates, changes, sent, system, run, announced: () => announced };
}

describe('the breaker board', () => {
  it('takes the highest version, wherever and in whatever order it comes, and tells the dispatcher and the watchers of changes', async () => {
    const t = setup();
    t.board.tell({ kind: 'remote_signals', signals: [signal(2, 'open')] });
    t.board.tell({ kind: 'remote_signals', signals: [signal(1, 'closed')] }); // late: ignored
    t.board.tell({ kind: 'remote_signals', signals: [signal(2, 'open')] }); // repeated: no change
    await t.run(10);
    expect(t.gates.map((g) => g.gate)).toEqual([{ state: 'open' }]);
    expect(t.changes).toEqual([{ queue: 'pay', state: 'open', since: 2_000, nextProbeAt: 7_000 }]);

    t.board.tell({ kind: 'local_signals', shard: 3, signals: [signal(3, 'half_open')] });
    t.board.tell({ kind: 'remote_signals', signals: [signal(4, 'closed')] });
    await t.run(10);
    expect(t.gates.map((g) => g.gate)).toEqual([{ state: 'open' }, { state: 'half_open', round: 1, probes: 1 }, null]);
    expect(t.changes.map((c) => c.state)).toEqual(['open', 'half_open', 'closed']);
    // A change among the signals decided here is announced to the cluster at once.
    expect(t.announced()).toBe(1);
    expect(t.actor.localSignals(10)).toEqual([signal(3, 'half_open')]);
  });

  it('forgets a state nobody signals any more, as closed', async () => {
    const t = setup();
    t.board.tell({ kind: 'remote_signals', signals: [signal(5, 'open')] });
    await t.run(60_000);
    expect(t.gates.map((g) => g.gate)).toEqual([{ state: 'open' }]);
    await t.run(80_000);
    expect(t.gates.map((g) => g.gate)).toEqual([{ state: 'open' }, null]);
    expect(t.changes.map((c) => c.state)).toEqual(['open', 'closed']);
  });

  it('refuses submissions only of a queue set to refuse while its breaker is not closed, until the next probe', async () => {
    const t = setup();
    t.board.tell({ kind: 'remote_signals', signals: [signal(1, 'open', { refuse: false })] });
    await t.run(10);
    expect(t.actor.refusal('acme', 'pay', 1_000)).toBeNull();
    t.board.tell({ kind: 'remote_signals', signals: [signal(2, 'open', { refuse: true, nextProbeAt: 9_000 })] });
    await t.run(10);
    expect(t.actor.refusal('acme', 'pay', 1_000)).toEqual({ state: 'open', waitMs: 8_000 });
    expect(t.actor.refusal('acme', 'other', 1_000)).toBeNull();
    expect(t.actor.refusal('umbrella', 'pay', 1_000)).toBeNull();
    t.board.tell({ kind: 'remote_signals', signals: [signal(3, 'closed', { refuse: true })] });
    await t.run(10);
    expect(t.actor.refusal('acme', 'pay', 1_000)).toBeNull();
  });

  it('reports the outcomes counted here to the owner of each lane’s breaker: an owner here, or the node the ring names', async () => {
    const t = setup();
    const shard = breakerShard('acme', 'pay', SHARDS);
    const other = laneOf('acme', 'mail');
    const otherShard = breakerShard('acme', 'mail', SHARDS);
    expect(otherShard).not.toBe(shard);
    const reports: unknown[] = [];
    t.routes.set(shard, t.system.spawn<OwnerMsg>('owner', { receive: (msg) => void (msg.kind === 'breakers' && reports.push(msg.msg)) }) as ActorRef<OwnerMsg>);
    t.routes.setPlacement(Array.from({ length: SHARDS }, (_, s) => (s === shard ? 'a' : 'b')));
    t.tally.record(LANE, 'failed');
    t.tally.record(LANE, 'succeeded');
    t.tally.record(LANE, 'failed');
    t.tally.record(LANE, 'abandoned');
    t.tally.record(other, 'failed');
    await t.run(300);
    expect(reports).toEqual([{ kind: 'report', counts: [[LANE, 1, 2, 1]] }]);
    expect(t.sent).toEqual([['b', { t: 'breaker_report', counts: [{ tenant: 'acme', queue: 'mail', successes: 0, failures: 1 }] }]]);
  });
});
