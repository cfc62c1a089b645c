// `npm run bench -- --preload N --drop-partition` (Kairos only): halfway through the throughput
// phase, the oldest preloaded day's partition is dropped through the store's own retention
// pass (runRetention, with a keepDays that makes exactly that day expired), while a probe
// (commit-probe.ts) times a commit every 10 ms from the start of the phase. Figures:
// - dropMs: the pass's transaction that takes ACCESS EXCLUSIVE on jobs, from BEGIN (waiting
//   for the commits in flight included) to COMMIT's answer. PostgreSQL unlinks the dropped
//   partition's files after releasing its locks and before answering, so commits are held
//   back for less than this; stderr also says when the lock was taken;
// - keyDeletionMs and keysDeleted: the day's idempotency keys, deleted after it in batches;
// - commitP99BeforeDropMs: the probe's commits from the start of the phase to the drop;
//   commitP99DuringDropMs: those that overlapped the locked transaction (a handful: their p99
//   is their maximum); commitP99DuringKeyDeletionMs: those that overlapped the key deletion;
//   dropProbeCommits: how many samples each of the three holds.
// The throughput figures of such a run include the drop, the key deletion and the probe.

import pg from 'pg';
import { DAY_MS, partitionDay, partitionName } from '../../node/core/retention-days.ts';
import { runRetention } from '../../node/store/pg-retention.ts';
import { startCommitProbe, type ProbeSample } from './commit-probe.ts';
import type { Preloaded } from './preload.ts';
import { percentile, round2 } from './shape.ts';

export type DropFigures = {
  dropMs: number;
  keyDeletionMs: number;
  keysDeleted: number;
  commitP99BeforeDropMs: number;
  commitP99DuringDropMs: number;
  commitP99DuringKeyDeletionMs: number;
  dropProbeCommits: { before: number; drop: number; keyDeletion: number };
};

/** What measureShape runs alongside its throughput phase (ShapeOptions.alongside). `dropped`
 * is called with the jobs the dropped day held, once it is gone. */
export function dropOldestDay(url: string, preloaded: Preloaded, dropped: (jobs: number) => void, log: (line: string) => void): (halfway: Promise<void>) => Promise<DropFigures> {
  return async (halfway) => {
    const oldest = preloaded.days[0]!;
    const name = partitionName(partitionDay(oldest.startMs));
    const probe = await startCommitProbe(url);
    const pool = new pg.Pool({ connectionString: url, max: 1, options: '-c pg_stat_statements.track=none' });
    let samples: ProbeSample[] | null = null;
    try {
      await halfway;
      const nowMs = Date.now();
      // Expired: its day ended more than keepDays ago. The oldest day ended between keepDays
      // and keepDays + 1 days ago, the next one less than keepDays ago.
      const keepDays = Math.floor((nowMs - (oldest.startMs + DAY_MS)) / DAY_MS);
      log(`dropping ${name} (${oldest.jobs} jobs) through the retention pass`);
      let lockedEnd = Number.NaN;
      let dropMs = Number.NaN;
      let lockWaitMs = Number.NaN;
      let keys = { count: 0, ms: Number.NaN };
      const start = performance.now();
      const report = await runRetention(pool, preloaded.shardCount, { daysAhead: 0, keepDays }, nowMs, {
        lockTaken: (ms) => (lockWaitMs = ms),
        lockedDone: (ms) => {
          lockedEnd = performance.now();
          dropMs = ms;
        },
        keysDeleted: (count, ms) => (keys = { count, ms }),
      });
      const end = performance.now();
      if (JSON.stringify(report.dropped) !== JSON.stringify([name])) throw new Error(`expected the pass to drop ${name}, it reported ${JSON.stringify(report)}`);
      dropped(oldest.jobs);
      samples = await probe.stop();
      const before = durations(samples.filter((s) => s.endMs <= start));
      const during = durations(samples.filter((s) => s.startMs < lockedEnd && s.endMs > start));
      const keyDeletion = durations(samples.filter((s) => s.startMs < end && s.endMs > lockedEnd));
      log(`dropped ${name} in ${dropMs.toFixed(1)} ms (ACCESS EXCLUSIVE on jobs taken ${lockWaitMs.toFixed(1)} ms after BEGIN), then ${keys.count} keys in ${keys.ms.toFixed(0)} ms`);
      return {
        dropMs: round2(dropMs),
        keyDeletionMs: round2(keys.ms),
        keysDeleted: keys.count,
        commitP99BeforeDropMs: round2(percentile(before, 0.99)),
        commitP99DuringDropMs: round2(percentile(during, 0.99)),
        commitP99DuringKeyDeletionMs: round2(percentile(keyDeletion, 0.99)),
        dropProbeCommits: { before: before.length, drop: during.length, keyDeletion: keyDeletion.length },
      };
    } finally {
      if (samples === null) await probe.stop().catch(() => {});
      await pool.end();
    }
  };
}

function durations(samples: ProbeSample[]): number[] {
  return samples.map((s) => s.endMs - s.startMs).sort((a, b) => a - b);
}
