// Membership on virtual time: the ring grows only with peers heard steadily, keeps a suspect,
// drops the dead and the leaving, and tells an old incarnation from a new one.

import { describe, expect, it } from 'vitest';
import type { MemberHeartbeat } from '../../protocol/peer-messages.ts';
import { ActorSystem } from '../../node/core/actor/runtime.ts';
import { Membership, type MembershipConfig } from '../../node/core/membership/membership.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { EventQueue } from '../../sim/event-queue.ts';
import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';

const CONFIG: MembershipConfig = { heartbeatEveryMs: 100, suspectAfterMs: 400, deadAfterMs: 1_000, forgetAfterMs: 3_000, stableForMs: 500, joinTimeoutMs: 2_000 };

function setup(joining = false) {
  const queue = new EventQueue(0);
  const published: MemberHeartbeat[] = [];
  const rings: string[][] = [];
  const deaths: string[][] = [];
  const env = simEnv({
    nodeId: 'a',
    queue,
    random: new SeededRandom(1),
    store: new MemoryStore(new MemoryBacking(1, () => queue.nowMs)),
    network: { send() {}, publish: (_topic, message) => void published.push(message as MemberHeartbeat) },
  });
  const system = new ActorSystem(env);
  const actor = new Membership({ config: CONFIG, incarnation: 1, clientUrl: 'ws://a', addrs: ['/ip4/127.0.0.1/tcp/1'], joining, load: () => ({ shards: 0, backlog: [] }), ringChanged: (m, dead) => void (rings.push(m), deaths.push(dead)) });
  const ref = system.spawn('membership', actor);
  const heartbeat = (node: string, incarnation = 1, state: 'alive' | 'leaving' = 'alive', dead?: string[]): void =>
    ref.tell({ kind: 'heartbeat', heartbeat: { t: 'member_heartbeat', node, incarnation, state, addrs: [], clientUrl: `ws://${node}`, load: { shards: 0, backlog: [] }, ...(dead && { dead }) } });
  /** Runs `ms` of virtual time, with `node` heartbeating every 100 ms while it is in `beating`. */
  const run = async (ms: number, beating: string[] = []) => {
    const end = queue.nowMs + ms;
    while (queue.nowMs < end) {
      for (const node of beating) heartbeat(node);
      await runUntil(queue, () => false, Math.min(end, queue.nowMs + 100));
    }
  };
  ref.tell({ kind: 'start' });
  return { actor, ref, published, rings, deaths, run, heartbeat, now: () => queue.nowMs };
}

describe('membership', () => {
  it('gossips heartbeats and publishes a ring of itself once warmed up', async () => {
    const m = setup();
    await m.run(300);
    expect(m.published.length).toBeGreaterThanOrEqual(3);
    expect(m.published[0]).toMatchObject({ t: 'member_heartbeat', node: 'a', incarnation: 1, state: 'alive', clientUrl: 'ws://a' });
    expect(m.rings).toEqual([]);
    await m.run(400);
    expect(m.rings).toEqual([['a']]);
  });

  it('when joining, places nothing until it hears a peer, or until the join timeout', async () => {
    const joined = setup(true);
    await joined.run(400);
    await joined.run(700, ['b']);
    expect(joined.rings).toEqual([['a', 'b']]);
    const alone = setup(true);
    await alone.run(1_900);
    expect(alone.rings).toEqual([]);
    await alone.run(300);
    expect(alone.rings).toEqual([['a']]);
  });

  it('lets a peer into the ring only after it has been heard steadily, keeps it while suspect, drops it when dead', async () => {
    const m = setup();
    await m.run(600, ['b']);
    expect(m.actor.ringMembers).toEqual(['a', 'b']);
    await m.run(600); // silent past suspect, not yet dead
    expect(m.actor.view(m.now()).find((p) => p.node === 'b')?.status).toBe('suspect');
    expect(m.actor.ringMembers).toEqual(['a', 'b']);
    await m.run(600);
    expect(m.actor.ringMembers).toEqual(['a']);
    // Back again: it must be steady for stableForMs before it returns (no churn on flapping).
    await m.run(200, ['b']);
    expect(m.actor.ringMembers).toEqual(['a']);
    await m.run(500, ['b']);
    expect(m.actor.ringMembers).toEqual(['a', 'b']);
  });

  it('forgets a peer silent for forgetAfterMs, and lists it again when it returns', async () => {
    const m = setup();
    await m.run(600, ['b']);
    await m.run(2_000);
    expect(m.actor.view(m.now()).map((p) => [p.node, p.status])).toEqual([['b', 'dead']]);
    await m.run(1_200);
    expect(m.actor.view(m.now())).toEqual([]);
    await m.run(200, ['b']);
    expect(m.actor.view(m.now()).map((p) => [p.node, p.status])).toEqual([['b', 'alive']]);
  });

  it('drops a leaving peer at once, and ignores an old incarnation', async () => {
    const m = setup();
    await m.run(700, ['b', 'c']);
    expect(m.actor.ringMembers).toEqual(['a', 'b', 'c']);
    m.heartbeat('c', 1, 'leaving');
    await m.run(50);
    expect(m.actor.ringMembers).toEqual(['a', 'b']);
    m.heartbeat('b', 2);
    m.heartbeat('b', 1, 'leaving'); // late news from the previous incarnation
    await m.run(50);
    expect(m.actor.view(m.now()).find((p) => p.node === 'b')).toMatchObject({ incarnation: 2, status: 'alive' });
  });

  it('leaves the ring itself on leave and says so', async () => {
    const m = setup();
    await m.run(700, ['b']);
    m.ref.tell({ kind: 'leave' });
    await m.run(50);
    expect(m.actor.ringMembers).toEqual(['b']);
    expect(m.published.at(-1)?.state).toBe('leaving');
  });

  it('declares a silent peer dead when the nodes it hears outnumber the silent, a rejoining one too', async () => {
    const m = setup();
    await m.run(700, ['b', 'c']);
    expect(m.rings.at(-1)).toEqual(['a', 'b', 'c']);
    await m.run(1_100, ['c']); // b dies: a and c hear each other
    expect([m.rings.at(-1), m.deaths.at(-1)]).toEqual([['a', 'c'], ['b']]);
    expect(m.published.at(-1)!.dead).toEqual(['b']);
    await m.run(700); // c falls silent, and b comes back...
    await m.run(400, ['b']); // ...heard, not yet in the ring, when c is dead
    expect([m.rings.at(-1), m.deaths.at(-1)]).toEqual([['a'], ['c']]);
  });

  it('declares nobody dead when it hears none of the others, until it hears one again', async () => {
    const m = setup();
    await m.run(700, ['b', 'c']);
    await m.run(1_100);
    expect([m.rings.at(-1), m.deaths.at(-1)]).toEqual([['a'], []]);
    // b restarts: heard, not yet in the ring; with it a and b outnumber the silent c.
    await m.run(300, ['b']);
    expect([m.rings.at(-1), m.deaths.at(-1)]).toEqual([['a'], ['c']]);
  });

  it('takes a peer\'s word that a node it never heard is dead, and passes on only the dead it saw die itself', async () => {
    const m = setup(true);
    await m.run(700, ['b']);
    expect(m.rings.at(-1)).toEqual(['a', 'b']);
    // b declared c dead before a joined: a never heard c.
    for (let i = 0; i < 3; i++) {
      m.heartbeat('b', 1, 'alive', ['c']);
      await m.run(100);
    }
    expect([m.rings.at(-1), m.deaths.at(-1)]).toEqual([['a', 'b'], ['c']]);
    await m.run(200, ['b']);
    expect(m.published.at(-1)!.dead).toBeUndefined();
    // c is heard again: b's word no longer counts once it stops saying so.
    await m.run(2_100, ['b', 'c']);
    expect(m.deaths.at(-1)).toEqual([]);
  });
});
