// The cluster's one-time settings and its shard rows. The first node to start records the shard
// count; every later node must agree with it, because a job's shard is part of its id and a
// different count would route ids to the wrong owners.

import type pg from 'pg';
import { inTransaction } from './pg-tx.ts';

export class ShardCountMismatchError extends Error {
  override readonly name = 'ShardCountMismatchError';
}

/* Record the shard count if this is the first node. In: $1 shard count.
 * ON CONFLICT DO NOTHING makes concurrent first starts agree on whichever insert won: a loser
 * waits for the winner's commit, then does nothing. */
const RECORD_CLUSTER_SQL = 'INSERT INTO cluster (shard_count) VALUES ($1) ON CONFLICT (id) DO NOTHING';
/* Read the recorded count back. A statement of its own, so that (READ COMMITTED) its snapshot
 * includes a winner that committed while RECORD_CLUSTER_SQL waited. */
const READ_CLUSTER_SQL = 'SELECT shard_count FROM cluster';
/* Create the shard rows the count calls for, each with its lease row (free).
 * In: $1 shard count. */
const CREATE_SHARDS_SQL = 'INSERT INTO shards (id) SELECT generate_series(0, $1::int - 1) ON CONFLICT (id) DO NOTHING';
const CREATE_SHARD_LEASES_SQL = 'INSERT INTO shard_leases (id) SELECT generate_series(0, $1::int - 1) ON CONFLICT (id) DO NOTHING';

export async function ensureCluster(pool: pg.Pool, shardCount: number): Promise<void> {
  // A job id spells its shard in at most four hex digits.
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > 0x10000) {
    throw new RangeError(`shardCount must be an integer in [1, 65536], got ${shardCount}`);
  }
  const recorded = await inTransaction(pool, 'ensure cluster', async (client) => {
    await client.query(RECORD_CLUSTER_SQL, [shardCount]);
    const rows = await client.query<{ shard_count: number }>(READ_CLUSTER_SQL);
    const count = rows.rows[0]!.shard_count;
    if (count === shardCount) {
      await client.query(CREATE_SHARDS_SQL, [shardCount]);
      await client.query(CREATE_SHARD_LEASES_SQL, [shardCount]);
    }
    return { commit: true, value: count };
  });
  if (recorded !== shardCount) {
    throw new ShardCountMismatchError(
      `this cluster was created with ${recorded} shards, but this node was started with ${shardCount}; ` +
        'the shard count is fixed at cluster creation: start it with the same count',
    );
  }
}
