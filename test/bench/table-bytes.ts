// The jobs table's and the idempotency table's size per job after a run (every system keeps
// its jobs differently, so this is Kairos's alone): what 30 days at the mission's rate would
// take on disk, read with --preload (preload.ts).
// - jobsTableBytesPerJob: pg_table_size over the partitions of `jobs` (pg_inherits): the heap
//   and, beside it, the TOAST table (where a payload that does not compress below about 2 KB
//   goes) and the free-space and visibility maps; pg_relation_size alone would miss TOAST;
// - jobsIndexBytesPerJob: pg_indexes_size over the same partitions;
// - idempotencyBytesPerJob: pg_total_relation_size of `idempotency`, its indexes included.
// Each is divided by the jobs in the table, which the caller knows (and the run verified).

import { query } from './bench-database.ts';

export interface TableBytes {
  jobsTableBytesPerJob: number;
  jobsIndexBytesPerJob: number;
  idempotencyBytesPerJob: number;
}

export async function tableBytesPerJob(url: string, jobs: number): Promise<TableBytes> {
  const [row] = await query<{ heap: string; indexes: string; keys: string }>(
    url,
    `SELECT sum(pg_table_size(i.inhrelid))::text AS heap, sum(pg_indexes_size(i.inhrelid))::text AS indexes,
       pg_total_relation_size('idempotency')::text AS keys
     FROM pg_inherits i WHERE i.inhparent = 'jobs'::regclass`,
  );
  const perJob = (bytes: string) => Math.round(Number(bytes) / jobs);
  return { jobsTableBytesPerJob: perJob(row!.heap), jobsIndexBytesPerJob: perJob(row!.indexes), idempotencyBytesPerJob: perJob(row!.keys) };
}
