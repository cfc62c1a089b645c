// Backpressure: a burst beyond the limits is refused with `overloaded` or `rate_limited` and a
// retry-after, and the store holds exactly the jobs that were accepted.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { RawClient, type Reply } from '../support/raw-client.ts';
import { TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';

let db: TestDatabase;
let node: SpawnedNode;

beforeAll(async () => {
  db = await createTestDatabase();
  // This client ignores retry-after on purpose, so it is allowed more refusals than the default
  // before the node closes it (hostile-clients.test.ts covers that close).
  node = await spawnNode({ databaseUrl: db.url, env: { KAIROS_RATE_LIMIT: '100:100', KAIROS_INFLIGHT_MAX: '50', KAIROS_REFUSAL_LIMIT: '1000:10000' } });
});

afterAll(async () => {
  await node?.kill();
  await db?.drop();
});

describe('backpressure', () => {
  it('refuses a burst beyond the limits with a retry-after and stores exactly what it accepted', async () => {
    const client = await RawClient.connect(node.url, TEST_TOKEN);
    const answers = new Map<number, Reply>();
    let rid = 0;
    const send = async (count: number) => {
      const until = rid + count;
      while (rid < until) {
        rid++;
        client.send({ t: 'submit', rid, job: { queue: 'burst', payload: new Uint8Array([1]), idempotencyKey: `b-${rid}` } });
      }
      while (answers.size < rid) {
        if ((await client.until(() => client.replies.length > 0)) === 'closed') throw new Error('the node closed the connection');
        for (const reply of client.replies.splice(0)) if ('rid' in reply && reply.rid !== null) answers.set(reply.rid, reply);
      }
    };
    // All at once, the connection passes its in-flight bound (50) and is refused.
    await send(1_000);
    // Paced in small groups, the tenant then passes its rate (100/s, burst 100) and is refused.
    for (let group = 0; group < 10; group++) await send(50);
    const burst = rid;
    const by = (code: string) => [...answers.values()].filter((r) => r.t === 'error' && r.code === code) as Array<Reply & { retryAfterMs?: number }>;
    const accepted = [...answers.entries()].filter(([, r]) => r.t === 'submitted');
    expect(by('overloaded').length).toBeGreaterThan(0);
    expect(by('rate_limited').length).toBeGreaterThan(0);
    for (const refusal of [...by('overloaded'), ...by('rate_limited')]) expect(refusal.retryAfterMs).toBeGreaterThan(0);
    expect(accepted.length + by('overloaded').length + by('rate_limited').length).toBe(burst);
    const stored = await adminQuery<{ idempotency_key: string }>("SELECT idempotency_key FROM jobs WHERE queue = 'burst'", [], db.name);
    expect(new Set(stored.map((r) => r.idempotency_key))).toEqual(new Set(accepted.map(([rid]) => `b-${rid}`)));
    client.close();
  }, 60_000);
});
