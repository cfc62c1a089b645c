// `npm run bench:compare`: graphile-worker, then Kairos, in the same shape (shape.ts), on the
// same durable PostgreSQL in one run: DATABASE_URL, else a throwaway PostgreSQL 15 when the
// Debian packages are installed, else the embedded one (bench-database.ts). Prints the two
// JSON lines and a third with the ratios Kairos / graphile-worker (above 1 is Kairos ahead for
// rates, behind for CPU and latency).
//
//   npm run bench:compare [-- the options of npm run bench]
//   --preload N and --drop-partition apply to Kairos only: graphile-worker runs on an empty
//   table, so with them the ratios compare a full table with an empty one.

import { parseArgs } from 'node:util';
import { openBenchServer } from './bench-database.ts';
import { prepareGraphile } from './graphile-side.ts';
import { benchKairos, KAIROS_ARGS } from './kairos-side.ts';
import { roundTripCounter } from './pg-stats.ts';
import { log, measureShape, SHAPE_ARGS, shapeOf, type BenchLine } from './shape.ts';

const { values } = parseArgs({ options: { ...SHAPE_ARGS, ...KAIROS_ARGS } });
const server = await openBenchServer({ preferDebian15: true, log });
try {
  const graphile = await onFreshDatabase('graphile_bench', async (url) => {
    const roundTrips = roundTripCounter();
    try {
      return await measureShape(await prepareGraphile(url), { url, roundTrips, log, ...shapeOf(values) });
    } finally {
      roundTrips.close();
    }
  });
  process.stdout.write(`${JSON.stringify({ ...graphile, postgres: server.describe })}\n`);
  const kairos = await onFreshDatabase('kairos_bench', (url) => benchKairos(url, values));
  process.stdout.write(`${JSON.stringify({ ...kairos, postgres: server.describe })}\n`);
  process.stdout.write(`${JSON.stringify(ratios(kairos, graphile))}\n`);
} finally {
  await server.stop();
}

async function onFreshDatabase(prefix: string, body: (url: string) => Promise<BenchLine>): Promise<BenchLine> {
  const url = await server.createDatabase(prefix);
  try {
    return await body(url);
  } finally {
    await server.dropDatabase(url).catch(() => {});
  }
}

function ratios(kairos: BenchLine, graphile: BenchLine): Record<string, unknown> {
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || b === 0 ? null : Math.round((a / b) * 100) / 100);
  return {
    ratios: `kairos (${kairos.nodes} node${kairos.nodes === 1 ? '' : 's'}) / ${graphile.system}`,
    e2ePerSec: ratio(kairos.e2ePerSec, graphile.e2ePerSec),
    submitPerSec: ratio(kairos.submitPerSec, graphile.submitPerSec),
    startLatencyP50Ms: ratio(kairos.startLatencyP50Ms, graphile.startLatencyP50Ms),
    startLatencyP99Ms: ratio(kairos.startLatencyP99Ms, graphile.startLatencyP99Ms),
    cpuUsPerJob: {
      workers: ratio(kairos.cpuUsPerJob.workers, graphile.cpuUsPerJob.workers),
      producer: ratio(kairos.cpuUsPerJob.producer, graphile.cpuUsPerJob.producer),
      postgres: ratio(kairos.cpuUsPerJob.postgres, graphile.cpuUsPerJob.postgres),
      total: ratio(kairos.cpuUsPerJob.total, graphile.cpuUsPerJob.total),
    },
    statementsPerJob: ratio(kairos.statementsPerJob, graphile.statementsPerJob),
    roundTripsPerJob: ratio(kairos.roundTripsPerJob, graphile.roundTripsPerJob),
  };
}
