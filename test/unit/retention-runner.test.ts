// Retention in a running node, on virtual time: partitions are made ahead at start, and an
// expired day is dropped on a later round, but only once none of its jobs is live.

import { describe, expect, it } from 'vitest';
import { ActorSystem } from '../../node/core/actor/runtime.ts';
import { SeededRandom } from '../../node/core/random.ts';
import { partitionName, partitionDay, DAY_MS } from '../../node/core/retention-days.ts';
import { RetentionRunner } from '../../node/core/retention/retention-runner.ts';
import { EventQueue } from '../../sim/event-queue.ts';
import { MemoryBacking, MemoryStore } from '../../sim/memory-store.ts';
import { runUntil, simEnv } from '../../sim/sim-env.ts';
import { insertOf, newJob } from '../support/jobs.ts';

describe('retention runner', () => {
  it('creates partitions ahead on start and drops an expired day once it holds nothing live', async () => {
    const start = Date.UTC(2026, 10, 1, 12);
    const queue = new EventQueue(start);
    const backing = new MemoryBacking(4, () => queue.nowMs);
    const store = new MemoryStore(backing);
    const system = new ActorSystem(simEnv({ nodeId: 'n1', queue, random: new SeededRandom(1), store }));
    const runner = system.spawn('retention', new RetentionRunner({ everyMs: DAY_MS, daysAhead: 2, keepDays: 1 }));
    const today = partitionDay(start);
    const [lease] = await store.acquireShards('n1', [0], 10 * DAY_MS);
    const live = newJob({ shard: 0, scheduledAtMs: start });
    const done = { ...newJob({ shard: 0, scheduledAtMs: start + 1 }), state: 'succeeded' as const };
    await store.commit({ shards: [lease!], writes: [insertOf(live), insertOf(done)] });

    runner.tell({ kind: 'run' });
    await runUntil(queue, () => backing.partitions.size === 2, queue.nowMs + 1_000);
    expect([...backing.partitions].map(partitionName)).toEqual([partitionName(today), partitionName(today + 1)]);

    // Three days on, the first day has expired but still holds a pending job: kept.
    await runUntil(queue, () => false, start + 3 * DAY_MS + 1_000);
    expect(backing.partitions.has(today)).toBe(true);
    expect(backing.jobs.size).toBe(2);

    // Once that job is finished, the next round drops the day with both jobs.
    backing.jobs.set(live.id, { ...live, state: 'cancelled', version: live.version + 1 });
    await runUntil(queue, () => !backing.partitions.has(today), start + 5 * DAY_MS);
    expect(backing.jobs.size).toBe(0);
  });
});
