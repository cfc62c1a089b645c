// Retention counts days by the database's clock, not the node's (Store.retention): a node whose
// clock runs weeks ahead must neither drop a day that is still within the kept days nor make
// partitions for days that have not come. Runs the node's own retention actor, on the real
// event loop, against PostgreSQL.

import { describe, expect, it } from 'vitest';
import { systemEnv } from '../../node/adapters/system-env.ts';
import { ActorSystem } from '../../node/core/actor/runtime.ts';
import { DAY_MS, partitionDay, partitionName } from '../../node/core/retention-days.ts';
import { RetentionRunner, type RetentionMsg } from '../../node/core/retention/retention-runner.ts';
import { usePgStore } from '../support/pg-store-fixture.ts';
import { pollUntil } from '../support/poll.ts';

const SKEW_DAYS = 20;

describe('PostgreSQL retention: the database clock', () => {
  const setUp = usePgStore();

  it(`a node whose clock is ${SKEW_DAYS} days ahead keeps a day that is ${SKEW_DAYS} days old and makes partitions for the database's today`, async () => {
    const { s, admin, onCleanup } = await setUp();
    const dbNowMs = Number((await admin.query<{ ms: number }>('SELECT extract(epoch FROM now()) * 1000 AS ms')).rows[0]!.ms);
    const today = partitionDay(dbNowMs);
    const oldDay = today - SKEW_DAYS;
    expect((await s.retention({ daysAhead: 1, keepDays: 100_000 }, oldDay * DAY_MS)).created).toEqual([partitionName(oldDay)]);

    const events: { event: string; fields?: Record<string, unknown> }[] = [];
    const env = systemEnv('node-ahead', s, { log: (_level, event, fields) => events.push({ event, fields }) }, { send() {}, publish() {} });
    const system = new ActorSystem({ ...env, clock: { monotonicMs: env.clock.monotonicMs, wallMs: () => Date.now() + SKEW_DAYS * DAY_MS } });
    onCleanup(async () => system.stopAll());
    // Keep 30 days: by the node's clock the old day ended 39 days ago, by the database's 19.
    const runner = system.spawn<RetentionMsg>('retention', new RetentionRunner({ everyMs: 3_600_000, daysAhead: 3, keepDays: 30 }));
    runner.tell({ kind: 'run' });
    await pollUntil('the retention pass', async () => events.some((e) => e.event === 'retention.ran' || e.event === 'retention.failed'), 10_000);

    const partitions = (await admin.query<{ name: string }>("SELECT relname AS name FROM pg_class WHERE relname ~ '^jobs_p[0-9]{8}$' ORDER BY relname")).rows.map((r) => r.name);
    expect(partitions).toEqual([oldDay, today, today + 1, today + 2].map(partitionName));
    expect(events.find((e) => e.event === 'retention.ran')?.fields).toEqual({ created: [today, today + 1, today + 2].map(partitionName), dropped: [], keptLive: [] });
  });
});
