// The dispatcher's cluster side on virtual time: a worker's slots offered to a node with ready
// work, given back, recovered when lost; another node's offer granted to owners here and the
// rest given back; slots lent only where another node's own workers fall short.

import { describe, expect, it } from 'vitest';
import type { ActorRef } from '../../node/core/actor/runtime.ts';
import { ActorSystem } from '../../node/core/actor/runtime.ts';
import type { DispatcherMsg } from '../../node/core/dispatch/dispatcher-messages.ts';
import { Dispatcher, type RemoteCredit } from '../../node/core/dispatch/dispatcher.ts';
import { laneOf } from '../../node/core/job/lane.ts';
import type { OwnerMsg, WorkerLink } from '../../node/core/owner/owner-messages.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { EventQueue } from '../../sim/event-queue.ts';
import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';

const LANE = laneOf('acme', 'emails');

function setup() {
  const queue = new EventQueue(0);
  const env = simEnv({ nodeId: 'a', queue, random: new SeededRandom(1), store: new MemoryStore(new MemoryBacking(1, () => queue.nowMs)) });
  const system = new ActorSystem(env);
  const offers: Array<[node: string, worker: string, slots: number]> = [];
  const givenBack: Array<[worker: string, slots: number]> = [];
  const remote: RemoteCredit = {
    offer: (node, worker, _lane, slots) => void offers.push([node, worker, slots]),
    giveBack: (worker, _lane, slots) => void givenBack.push([worker, slots]),
    backlogAppeared: () => {},
  };
  const owners: ActorRef<OwnerMsg>[] = [];
  const actor = new Dispatcher(remote, () => owners);
  const dispatcher = system.spawn<DispatcherMsg>('dispatcher', actor);
  const grants: Array<[worker: string, slots: number]> = [];
  /** What the owner heard, in order: grants and lost workers. */
  const heard: string[] = [];
  const owner = system.spawn<OwnerMsg>('owner-0', {
    receive: (msg) => {
      if (msg.kind === 'grant') {
        grants.push([msg.worker.id, msg.slots]);
        heard.push(`grant ${msg.worker.id}`);
      }
      if (msg.kind === 'worker_gone') heard.push(`gone ${msg.workerId}`);
    },
  }) as ActorRef<OwnerMsg>;
  owners.push(owner);
  const worker = (id: string): WorkerLink => ({ id, lease() {}, revoke() {} });
  const run = (ms: number) => runUntil(queue, () => false, queue.nowMs + ms);
  return { actor, dispatcher, owner, offers, givenBack, grants, heard, worker, run };
}

describe('dispatcher across nodes', () => {
  it('offers a worker to a node with ready work, and credits it again when the node gives slots back', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'ring', members: ['a', 'b'] });
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    t.dispatcher.tell({ kind: 'remote_backlog', node: 'b', counts: [[LANE, 5, 0, 1, 0]] });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 8 });
    await t.run(10);
    expect(t.offers).toEqual([['b', 'a/c1', 5]]);
    // b had only 2: 3 come back, and b counts as empty until its next heartbeat.
    t.dispatcher.tell({ kind: 'remote_credit_returned', node: 'b', workerId: 'a/c1', lane: LANE, slots: 3 });
    t.dispatcher.tell({ kind: 'remote_leased', node: 'b', workerId: 'a/c1', lane: LANE });
    t.dispatcher.tell({ kind: 'remote_leased', node: 'b', workerId: 'a/c1', lane: LANE });
    await t.run(10);
    expect(t.offers).toHaveLength(1);
    // Work here goes to the worker's remaining 3 + 3 slots.
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 10, 0]] });
    await t.run(10);
    expect(t.grants).toEqual([['a/c1', 6]]);
  });

  it('credits the worker again with offers that never come back, and with those to a node that left the ring', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'ring', members: ['a', 'b', 'c'] });
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    t.dispatcher.tell({ kind: 'remote_backlog', node: 'b', counts: [[LANE, 4, 0, 1, 0]] });
    t.dispatcher.tell({ kind: 'remote_backlog', node: 'c', counts: [[LANE, 4, 0, 1, 0]] });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 8 });
    await t.run(10);
    expect(t.offers.map(([node, , slots]) => [node, slots])).toEqual([['b', 4], ['c', 4]]);
    t.dispatcher.tell({ kind: 'ring', members: ['a', 'b'] }); // c is gone: its 4 come back now
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 100, 0]] });
    await t.run(10);
    expect(t.grants).toEqual([['a/c1', 4]]);
    await t.run(6_000); // b never answers: its 4 come back once taken as lost
    expect(t.grants).toEqual([['a/c1', 4], ['a/c1', 4]]);
  });

  it('grants another node\'s worker to owners here and gives back what they cannot use', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 3, 0]] });
    t.dispatcher.tell({ kind: 'remote_credit', worker: t.worker('b/c9'), lane: LANE, slots: 10 });
    await t.run(10);
    expect(t.grants).toEqual([['b/c9', 3]]);
    expect(t.givenBack).toEqual([['b/c9', 7]]);
    // An owner that cannot fill a grant for a worker of another node sends it home too.
    t.dispatcher.tell({ kind: 'credit_returned', workerId: 'b/c9', lane: LANE, slots: 2 });
    await t.run(10);
    expect(t.givenBack).toEqual([['b/c9', 7], ['b/c9', 2]]);
  });

  it('tells every owner here that a worker left, after the grants to it already made', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 3, 0]] });
    // Another node's worker is granted here, then its connection closes there.
    t.dispatcher.tell({ kind: 'remote_credit', worker: t.worker('b/c9'), lane: LANE, slots: 2 });
    t.dispatcher.tell({ kind: 'worker_left', workerId: 'b/c9' });
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    t.dispatcher.tell({ kind: 'worker_left', workerId: 'a/c1' });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 5 });
    await t.run(10);
    expect(t.heard).toEqual(['grant b/c9', 'gone b/c9', 'gone a/c1']);
  });

  it('gives another node a turn for each of its shards with ready jobs, as each shard here gets one', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'ring', members: ['a', 'b'] });
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    for (let shard = 0; shard < 4; shard++) t.dispatcher.tell({ kind: 'backlog', shard, owner: t.owner, counts: [[LANE, 100, 0]] });
    t.dispatcher.tell({ kind: 'remote_backlog', node: 'b', counts: [[LANE, 400, 0, 4, 0]] });
    // Under load a worker's slots free up one at a time.
    for (let i = 0; i < 80; i++) t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 1 });
    await t.run(10);
    const offered = t.offers.reduce((n, [, , slots]) => n + slots, 0);
    const granted = t.grants.reduce((n, [, slots]) => n + slots, 0);
    // b's four shards get as many slots as the four here; counted as one source it got 16.
    expect([offered, granted]).toEqual([40, 40]);
  });

  /** A worker's slots free up one at a time, as under load; what each node got of them. */
  async function shareOut(t: ReturnType<typeof setup>, others: Array<[node: string, ready: number, topPriority: number, shards: number, slots: number]>) {
    t.dispatcher.tell({ kind: 'ring', members: ['a', ...others.map(([node]) => node)] });
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    for (let shard = 0; shard < 4; shard++) t.dispatcher.tell({ kind: 'backlog', shard, owner: t.owner, counts: [[LANE, 100, 0]] });
    for (const [node, ready, topPriority, shards, slots] of others) t.dispatcher.tell({ kind: 'remote_backlog', node, counts: [[LANE, ready, topPriority, shards, slots]] });
    for (let i = 0; i < 80; i++) t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 1 });
    await t.run(10);
    const got: Record<string, number> = { a: t.grants.reduce((n, [, slots]) => n + slots, 0) };
    for (const [node, , slots] of t.offers) got[node] = (got[node] ?? 0) + slots;
    return got;
  }

  it('lends nothing to a node whose own workers cover its shards', async () => {
    // b has as many shards with ready jobs as a, and as many slots: each serves its own.
    expect(await shareOut(setup(), [['b', 400, 0, 4, 1]])).toEqual({ a: 80 });
  });

  it('lends a node without workers the share its shards lack, and none to a node whose workers cover it', async () => {
    // 12 shards share a's slot and b's: a's four need two thirds of a's, c's four lack as much
    // as a has over, so c gets a third of a's slots (2 turns a round against a's 4).
    expect(await shareOut(setup(), [['b', 400, 0, 4, 1], ['c', 400, 0, 4, 0]])).toEqual({ a: 54, c: 26 });
  });

  it('serves another node\'s better priority first even when its own workers cover it', async () => {
    expect(await shareOut(setup(), [['b', 400, 5, 4, 1]])).toEqual({ a: 0, b: 80 });
  });

  it('reports the slots of its workers, credit unused and leases held, for its heartbeat', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 100, 0]] });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 8 });
    // Three attempts end and their slots are credited again, and granted again.
    for (let i = 0; i < 3; i++) t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 1 });
    await t.run(10);
    expect(t.grants.reduce((n, [, slots]) => n + slots, 0)).toBe(11);
    expect(t.actor.localBacklog(10)).toEqual([[LANE, 89, 0, 1, 8]]);
    t.dispatcher.tell({ kind: 'drain', workerId: 'a/c1', lane: LANE });
    await t.run(10);
    expect(t.actor.localBacklog(10)).toEqual([[LANE, 89, 0, 1, 0]]);
  });
});

describe('dispatcher and circuit breakers', () => {
  it('grants nothing of a lane whose breaker is open, nor announces it; half-open, its probes; closed, the rest', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'worker_joined', worker: t.worker('a/c1') });
    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: { state: 'open' } });
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 10, 0]] });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 8 });
    await t.run(10);
    expect(t.grants).toEqual([]);
    expect(t.actor.localBacklog(10)).toEqual([]);
    expect(t.actor.takeIdleWorker(LANE)).toBeNull();

    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: { state: 'half_open', round: 1, probes: 2 } });
    await t.run(10);
    expect(t.grants).toEqual([['a/c1', 2]]);
    // The same round heard again (every heartbeat repeats it) gives no more probes; a new one does.
    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: { state: 'half_open', round: 1, probes: 2 } });
    t.dispatcher.tell({ kind: 'credit', workerId: 'a/c1', lane: LANE, slots: 1 });
    await t.run(10);
    expect(t.grants).toHaveLength(1);
    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: { state: 'half_open', round: 2, probes: 2 } });
    await t.run(10);
    expect(t.grants).toEqual([['a/c1', 2], ['a/c1', 2]]);

    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: null });
    await t.run(10);
    // The worker's 9 slots less the 4 probes it holds.
    expect(t.grants).toEqual([['a/c1', 2], ['a/c1', 2], ['a/c1', 5]]);
  });

  it('gives another node’s offer back whole while the breaker is open', async () => {
    const t = setup();
    t.dispatcher.tell({ kind: 'breaker_gate', lane: LANE, gate: { state: 'open' } });
    t.dispatcher.tell({ kind: 'backlog', shard: 0, owner: t.owner, counts: [[LANE, 10, 0]] });
    t.dispatcher.tell({ kind: 'remote_credit', worker: t.worker('b/c9'), lane: LANE, slots: 4 });
    await t.run(10);
    expect(t.grants).toEqual([]);
    expect(t.givenBack).toEqual([['b/c9', 4]]);
  });
});
