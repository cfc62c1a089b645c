// How long a node keeps jobs: 30 days unless --retention-days (KAIROS_RETENTION_DAYS) says
// otherwise, on a real node process against PostgreSQL. The node runs its retention pass at
// start; the days are the database's (test/conformance/pg-retention-clock.test.ts).

import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../node/core/store.ts';
import { DAY_MS, partitionDay, partitionName } from '../../node/core/retention-days.ts';
import { createPgStore } from '../../node/store/pg-store.ts';
import { adminQuery, createTestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { spawnNode } from '../support/spawn-node.ts';
import { runKairos } from '../support/run-kairos.ts';

const SHARDS = 4;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('retention days of a node', () => {
  it('keeps a day 25 days old by default, drops one 40 days old, and keeps 3 days when told', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const store: Store = await createPgStore({ connectionString: db.url, shardCount: SHARDS });
    cleanups.push(() => store.close());
    const [row] = await adminQuery<{ ms: number }>('SELECT extract(epoch FROM now()) * 1000 AS ms', [], db.name);
    const today = partitionDay(Number(row!.ms));
    for (const age of [40, 25]) await store.retention({ daysAhead: 1, keepDays: 100_000 }, (today - age) * DAY_MS);
    const partitions = async () =>
      (await adminQuery<{ name: string }>("SELECT relname AS name FROM pg_class WHERE relname ~ '^jobs_p[0-9]{8}$' ORDER BY relname", [], db.name)).map((r) => r.name);
    // The start pass creates today's partition and the next two, and drops in the same transaction.
    const passed = async () => (await partitions()).includes(partitionName(today + 2));

    const byDefault = await spawnNode({ databaseUrl: db.url, shards: SHARDS });
    cleanups.push(() => byDefault.kill('SIGKILL'));
    await pollUntil('the first node\'s retention pass', passed, 30_000);
    expect(await partitions()).toEqual([today - 25, today, today + 1, today + 2].map(partitionName));
    await byDefault.kill();

    const threeDays = await spawnNode({ databaseUrl: db.url, shards: SHARDS, dataDir: byDefault.dataDir, env: { KAIROS_RETENTION_DAYS: '3' } });
    cleanups.push(() => threeDays.kill('SIGKILL'));
    await pollUntil('the 25-day-old partition to go', async () => !(await partitions()).includes(partitionName(today - 25)), 30_000);
    expect(await partitions()).toEqual([today, today + 1, today + 2].map(partitionName));
  });

  it('refuses a retention that is not a whole number of days from 1 to 366, before it starts anything', async () => {
    for (const days of ['0', '367', '2.5', 'month']) {
      const { code, stderr } = await runKairos(['start', '--retention-days', days]);
      expect(code).toBe(2);
      expect(stderr).toBe(`kairos: --retention-days must be an integer in [1, 366], got '${days}'\n`);
    }
  });
});
