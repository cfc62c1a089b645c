// Node processes with one cluster key form one cluster on one database: they find one another
// by gossip through the node they join, agree on a ring and split the shards between them. A
// node with another key cannot reach them: it never enters their ring nor they its, and it
// gets no shard. A member restarted in its data dir comes back under the same id. Jobs whose
// keys the SDK generated stay on the node that received them.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { shardOfJobId } from '../../protocol/job-id.ts';
import { connect } from '../../protocol/sdk/index.ts';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { spawnCluster, type SpawnedCluster } from '../support/spawn-cluster.ts';
import { spawnStartedNode, TEST_TOKEN, type StartedNode } from '../support/spawn-node.ts';

const SHARDS = 16;
/** What three members of a bounded-load ring may each own: a fair third is 5.3. */
const SHARE_MIN = SHARDS / 6;
const SHARE_MAX = (2 * SHARDS) / 3;

let db: TestDatabase;
let cluster: SpawnedCluster | undefined;
let outsider: StartedNode | undefined;
let tempDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  tempDir = await mkdtemp(join(tmpdir(), 'kairos-formation-'));
});

afterAll(async () => {
  await outsider?.kill();
  await cluster?.stop();
  await rm(tempDir, { recursive: true, force: true });
  await db?.drop();
});

/** Shards with a live lease, counted by owner. */
async function owned(): Promise<Map<string, number>> {
  const rows = await adminQuery<{ owner: string; n: number }>(
    'SELECT owner, count(*)::int AS n FROM shard_leases WHERE owner IS NOT NULL AND lease_until > now() GROUP BY owner',
    [],
    db.name,
  );
  return new Map(rows.map((r) => [r.owner, r.n]));
}

/** Every shard owned, by exactly `nodes`, each within the ring's bounds. */
function sharedBy(counts: Map<string, number>, nodes: string[]): boolean {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  return (
    total === SHARDS &&
    counts.size === nodes.length &&
    nodes.every((id) => (counts.get(id) ?? 0) >= SHARE_MIN && (counts.get(id) ?? 0) <= SHARE_MAX)
  );
}

/** Waits until `nodes` share every shard; fails at `deadlineMs` (wall clock) showing who owns
 * what. */
async function untilSharedBy(nodes: string[], deadlineMs: number): Promise<void> {
  for (;;) {
    const counts = await owned();
    if (sharedBy(counts, nodes)) return;
    if (Date.now() > deadlineMs) throw new Error(`shards not shared by ${nodes.join(', ')}: ${JSON.stringify([...counts])}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The ring members each `membership.ring_changed` line of a node's log names. */
function ringsLogged(log: string): string[][] {
  return log
    .split('\n')
    .filter((line) => line.includes('"membership.ring_changed"'))
    .map((line) => (JSON.parse(line) as { members: string[] }).members);
}

describe('cluster formation', () => {
  it('three nodes with a key share every shard within seconds', async () => {
    // From the first process's start: measured at 11-12 s alone and 13-25 s beside another
    // test file on two cores. Most of it is membership's 3 s of stability: once before the
    // first node's ring, then again as the others join (each must be heard that long by the
    // first before it gives them shards, and must hear the first that long before it wants
    // only its share), plus process start-up, which contention slows most.
    const deadline = Date.now() + 40_000;
    cluster = await spawnCluster({ databaseUrl: db.url, size: 3, shards: SHARDS, node: { logLevel: 'info' } });
    const ids = cluster.nodes.map((n) => n.nodeId);
    expect(new Set(ids).size).toBe(3);
    await untilSharedBy(ids, deadline);
  }, 60_000);

  it("places a job whose key the SDK generated on the receiving node's shards, and keeps one key one job across nodes", async () => {
    const [a, b] = cluster!.nodes;
    const [viaA, viaB] = await Promise.all([a!, b!].map((node) => connect({ url: node.url, token: TEST_TOKEN, onWarning: () => {} })));
    try {
      const servedBy = async (jobId: string) => {
        const rows = await adminQuery<{ owner: string }>('SELECT l.owner FROM shard_leases l WHERE l.id = $1', [shardOfJobId(jobId, SHARDS)], db.name);
        return rows[0]?.owner;
      };
      // The SDK generates a key for each of these and marks it anyShard: none is forwarded.
      const results = await viaB!.submitMany(Array.from({ length: 40 }, () => ({ queue: 'placement', payload: new Uint8Array([1]) })));
      for (const result of results) {
        if (result instanceof Error) throw result;
        expect(await servedBy(result.jobId)).toBe(b!.nodeId);
      }
      // One key, sent through both nodes: each places it on a shard of its own, and the store's
      // uniqueness of keys makes the second a duplicate of the first.
      const spec = { queue: 'placement', payload: new Uint8Array([2]), idempotencyKey: 'placed-anywhere', anyShard: true };
      const first = await viaA!.submit(spec);
      const second = await viaB!.submit(spec);
      expect(second).toEqual({ jobId: first.jobId, duplicate: true });
      expect(await servedBy(first.jobId)).toBe(a!.nodeId);
    } finally {
      await Promise.all([viaA, viaB].map((client) => client!.close()));
    }
  }, 60_000);

  it('keeps a node with another key out of the ring and off every shard', async () => {
    const nodes = cluster!.nodes;
    const ids = nodes.map((n) => n.nodeId);
    const otherKey = join(tempDir, 'other.key');
    await writeClusterKeyFile(otherKey);
    outsider = await spawnStartedNode({
      databaseUrl: db.url,
      join: [nodes[0]!.peerAddress],
      clusterKeyFile: otherKey,
      logLevel: 'info',
    });
    // Three times the 3 s of presence after which the three would admit it, had they heard it.
    await new Promise((r) => setTimeout(r, 9_000));

    expect(outsider.child.exitCode).toBeNull();
    for (const ring of ringsLogged(outsider.log())) expect(ring).toEqual([outsider.nodeId]);
    for (const node of nodes) expect(ringsLogged(node.log()).flat()).not.toContain(outsider.nodeId);
    const counts = await owned();
    expect(counts.has(outsider.nodeId)).toBe(false);
    expect(sharedBy(counts, ids)).toBe(true);
    // Once it gives up waiting for its seed and places every shard on itself, it would take any
    // shard a hand-off frees, and keep it.
    await outsider.kill();
  }, 60_000);

  it('takes a restarted node back under the same id', async () => {
    const before = cluster!.nodes[1]!;
    const after = await cluster!.restart(before);
    // Its key in the data dir is its id, so the ring and the shards table know it again.
    expect(after.nodeId).toBe(before.nodeId);
    await untilSharedBy(cluster!.nodes.map((n) => n.nodeId), Date.now() + 30_000);
  }, 60_000);
});
