// Commit latency while something else happens on the database (--drop-partition,
// drop-partition.ts): a probe in the benchmark's own process that commits every 10 ms through
// the store's own write path (commitBatch, node/store/pg-commit.ts) and times each call.
//
// Why a probe rather than the node's commits: timing them would mean instrumenting the node,
// and pg_stat_statements gives a mean per statement, not a p99 over a window, nor the time a
// transaction waited for a lock before its first statement ran. The probe's batch is one
// update, fenced by one shard's epoch, of a job that does not exist: it takes what every
// commit of a node takes (BEGIN with the commit's settings, the shard row FOR SHARE, ROW
// EXCLUSIVE on `jobs` and today's partition for the UPDATE ... FROM unnest) and writes
// nothing.
// So it waits exactly when a commit would. Its connection is left out of pg_stat_statements;
// its FOR SHARE takes a transaction id, so its 100 transactions a second count in
// commitsPerSec, and its small CPU in the server's.

import pg from 'pg';
import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import { newJob } from '../../node/core/job/new-job.ts';
import type { CommitBatch } from '../../node/core/store.ts';
import { commitBatch } from '../../node/store/pg-commit.ts';

const EVERY_MS = 10;
/** No owner numbers its ids this high: the probe's job never exists. */
const PROBE_SEQ = 2 ** 52;

export interface ProbeSample {
  /** When the call started and ended, performance.now(). */
  startMs: number;
  endMs: number;
}

export interface CommitProbe {
  /** Stops after the call in flight; resolves with every sample, in order. */
  stop(): Promise<ProbeSample[]>;
}

export async function startCommitProbe(url: string): Promise<CommitProbe> {
  const pool = new pg.Pool({ connectionString: url, max: 1, options: '-c pg_stat_statements.track=none' });
  const [shard] = (await pool.query<{ id: number; epoch: string }>('SELECT id, epoch FROM shards ORDER BY id LIMIT 1')).rows;
  const nowMs = Date.now();
  const job = newJob({
    shard: shard!.id,
    epoch: Number(shard!.epoch),
    seq: PROBE_SEQ,
    tenant: 'commit-probe',
    queue: 'commit-probe',
    payload: new Uint8Array(0),
    priority: 0,
    runAtMs: nowMs,
    retry: DEFAULT_RETRY_POLICY,
    idempotencyKey: null,
    nowMs,
  });
  // The epoch read now: if the shard changes hands meanwhile, the probe's commit is refused as
  // stale after taking the same locks, and its timing stands.
  const batch: CommitBatch = {
    shards: [{ shard: shard!.id, epoch: Number(shard!.epoch) }],
    writes: [{ kind: 'update', next: job, expectedVersion: job.version - 1, token: null }],
  };
  const samples: ProbeSample[] = [];
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const startMs = performance.now();
      await commitBatch(pool, batch);
      const endMs = performance.now();
      samples.push({ startMs, endMs });
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, EVERY_MS - (endMs - startMs))));
    }
  })();
  // A failed commit ends the loop; stop() rethrows it.
  loop.catch(() => {});
  return {
    async stop() {
      stopping = true;
      try {
        await loop;
      } finally {
        await pool.end();
      }
      return samples;
    },
  };
}
