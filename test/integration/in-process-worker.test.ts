// A worker embedded in the node's process (no socket between them) takes jobs that a remote
// client submitted over WebSocket, and a tenant stays a tenant: the embedded worker of one
// tenant never sees another's jobs.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inProcessDial } from '../../node/adapters/in-process-link.ts';
import { startNodeProcess, type NodeProcess } from '../../node/adapters/node-process.ts';
import { TokenTable } from '../../node/adapters/tokens.ts';
import { connect, type KairosClient } from '../../protocol/sdk/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { TEST_TOKEN } from '../support/spawn-node.ts';

let db: TestDatabase;
let node: NodeProcess;
const clients: KairosClient[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  node = await startNodeProcess({
    dataDir: `${process.env.TMPDIR ?? '/tmp'}/kairos-inproc-${process.pid}`,
    host: '127.0.0.1',
    port: 0,
    pgPort: 1,
    tokens: new TokenTable({ [TEST_TOKEN]: 'tenant-a' }, false),
    logLevel: 'error',
    config: { shardCount: 8 },
    env: { DATABASE_URL: db.url },
  });
  await node.ready();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await node?.stop();
  await db?.drop();
});

describe('in-process worker', () => {
  it('runs jobs submitted over WebSocket, and only its own tenant\'s', async () => {
    const remote = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
    const embedded = await connect({ url: 'inprocess:', token: '', transport: inProcessDial(node.node, 'tenant-a'), onWarning: () => {} });
    const stranger = await connect({ url: 'inprocess:', token: '', transport: inProcessDial(node.node, 'tenant-b'), onWarning: () => {} });
    clients.push(remote, embedded, stranger);
    const seen: string[] = [];
    const foreign: string[] = [];
    embedded.worker('embedded', (ctx) => void seen.push(new TextDecoder().decode(ctx.payload)), { concurrency: 4 });
    stranger.worker('embedded', (ctx) => void foreign.push(ctx.jobId), { concurrency: 4 });
    const results = await remote.submitMany(Array.from({ length: 50 }, (_, i) => ({ queue: 'embedded', payload: new TextEncoder().encode(`job ${i}`) })));
    const ids = results.map((r) => {
      if (r instanceof Error) throw r;
      return r.jobId;
    });
    const deadline = Date.now() + 30_000;
    while ((await Promise.all(ids.map((id) => remote.get(id)))).some((job) => job.state !== 'succeeded')) {
      if (Date.now() > deadline) throw new Error('jobs did not finish');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `job ${i}`).sort());
    expect(foreign).toEqual([]);
  }, 60_000);
});
