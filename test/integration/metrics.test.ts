// The operators' HTTP listener of a real node on a real PostgreSQL: /metrics moves as jobs run,
// /healthz answers while the process lives, /readyz says whether the node can serve (and why
// not, with the database refusing connections), and anything else is refused.

import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { TEST_TOKEN, spawnNode } from '../support/spawn-node.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The value of one series of the exposition, or 0 when it is absent. */
function series(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).split(' ')[0]!;
    if (wanted.every((pair) => labelText.includes(pair))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('the operators’ HTTP listener', () => {
  it('serves metrics that move as jobs run, health, readiness, and refuses the rest', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const node = await spawnNode({ databaseUrl: db.url, shards: 4, httpPort: 0 });
    cleanups.push(() => node.kill('SIGKILL'));
    const http = node.httpUrl!;
    expect(http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    expect((await fetch(`${http}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${http}/readyz`)).json()).toEqual({ status: 'ready' });
    expect((await fetch(`${http}/other`)).status).toBe(404);
    expect((await fetch(`${http}/metrics`, { method: 'POST' })).status).toBe(405);

    const before = await (await fetch(`${http}/metrics`)).text();
    expect(series(before, 'kairos_shards_owned')).toBe(4);
    expect(before).toMatch(/^kairos_process_cpu_seconds_total /m);
    expect(before).toMatch(/^kairos_nodejs_eventloop_lag_seconds /m);

    const client = await connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} });
    cleanups.push(() => client.close());
    for (let i = 0; i < 20; i++) await client.submit({ queue: 'mail', payload: new Uint8Array([i]) });
    const waiting = await (await fetch(`${http}/metrics`)).text();
    expect(series(waiting, 'kairos_jobs', { state: 'ready', tenant: 'tenant-a', queue: 'mail' })).toBe(20);
    expect(series(waiting, 'kairos_client_connections')).toBe(1);

    client.worker('mail', async () => {});
    await pollUntil('every job done', async () => series(await (await fetch(`${http}/metrics`)).text(), 'kairos_job_transitions_total', { queue: 'mail', to: 'succeeded' }) === 20, 15_000);
    const after = await (await fetch(`${http}/metrics`)).text();
    expect(series(after, 'kairos_submissions_total', { outcome: 'accepted' })).toBe(20);
    expect(series(after, 'kairos_job_transitions_total', { tenant: 'tenant-a', queue: 'mail', to: 'pending' })).toBe(20);
    expect(series(after, 'kairos_leases_granted_total')).toBe(20);
    expect(series(after, 'kairos_jobs', { state: 'ready', queue: 'mail' })).toBe(0);
    expect(series(after, 'kairos_commit_duration_seconds_count')).toBeGreaterThan(series(before, 'kairos_commit_duration_seconds_count'));

  }, 60_000);

  it('says the node is not ready, and why, while its database refuses connections, and ready again after', async () => {
    const db = await createTestDatabase();
    cleanups.push(async () => {
      await adminQuery(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
      await db.drop();
    });
    const node = await spawnNode({ databaseUrl: db.url, shards: 4, httpPort: 0 });
    cleanups.push(() => node.kill('SIGKILL'));
    await adminQuery(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [db.name]);
    await pollUntil('not ready', async () => (await fetch(`${node.httpUrl}/readyz`)).status === 503, 15_000);
    const body = (await (await fetch(`${node.httpUrl}/readyz`)).json()) as { status: string; reasons: string[] };
    expect(body.status).toBe('not_ready');
    expect(body.reasons.join('; ')).toMatch(/the database does not answer/);
    // Alive all the same: a liveness probe must not restart a node whose database is away.
    expect((await fetch(`${node.httpUrl}/healthz`)).status).toBe(200);
    await adminQuery(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    await pollUntil('ready again', async () => (await fetch(`${node.httpUrl}/readyz`)).status === 200, 30_000);
  }, 60_000);
});
