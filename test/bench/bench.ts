// `npm run bench`: Kairos alone, in the benchmark's shape (shape.ts): node processes (one by
// default; `--nodes 3` for a cluster), worker processes spread over them and a producer
// process, on DATABASE_URL or else the embedded PostgreSQL (durable settings,
// pg_stat_statements loaded). Prints one JSON line; shape.ts and pg-stats.ts say what each
// figure means.
//
//   npm run bench [-- --nodes N --jobs N --workers N --concurrency N --payload-bytes N
//                     --chunk N --latency-jobs N --preload N --drop-partition]
//   --preload N: first fill the jobs table with N finished jobs over the 30 days that end
//   yesterday (preload.ts); --drop-partition (with --preload): drop the oldest of those days
//   halfway through the throughput phase and time it and commits meanwhile (drop-partition.ts)
//   KAIROS_BENCH_PROFILE=DIR npm run bench   (also writes each process's CPU profile to DIR)

import { parseArgs } from 'node:util';
import { openBenchServer } from './bench-database.ts';
import { benchKairos, KAIROS_ARGS } from './kairos-side.ts';
import { log, SHAPE_ARGS } from './shape.ts';

const { values } = parseArgs({ options: { ...SHAPE_ARGS, ...KAIROS_ARGS } });
const server = await openBenchServer({ preferDebian15: false, log });
try {
  const url = await server.createDatabase('kairos_bench');
  try {
    const line = await benchKairos(url, values);
    process.stdout.write(`${JSON.stringify({ ...line, postgres: server.describe })}\n`);
  } finally {
    await server.dropDatabase(url).catch(() => {});
  }
} finally {
  await server.stop();
}
