// graphile-worker set up for the benchmark: its schema migrated into the benchmark's database.
// It has no server processes of its own; its workers talk to PostgreSQL directly.

import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Logger, runMigrations } from 'graphile-worker';
import { query } from './bench-database.ts';
import { WORKER_SETTINGS } from './graphile-client.ts';
import type { SystemUnderTest } from './shape.ts';

const VERSION = (JSON.parse(readFileSync(join(import.meta.dirname, '../../node_modules/graphile-worker/package.json'), 'utf8')) as { version: string }).version;

export async function prepareGraphile(url: string): Promise<SystemUnderTest> {
  await runMigrations({ connectionString: url, logger: new Logger(() => () => {}) });
  return {
    name: `graphile-worker@${VERSION}`,
    adapterModule: join(import.meta.dirname, 'graphile-client.ts'),
    producerOptions: { url },
    workerOptions: () => ({ url }),
    nodePids: [],
    // add_jobs returns the jobs it added, the lease (an UPDATE … RETURNING) the jobs it took,
    // and completion deletes them.
    jobWrites: /\.add_jobs\(|^\s*with j as|^\s*delete from "graphile_worker"\._private_jobs/i,
    async verify(jobUrl, jobs) {
      // It deletes a job when it completes; a failed one would stay, with its error.
      const [left] = await query<{ n: string }>(jobUrl, 'SELECT count(*) AS n FROM graphile_worker._private_jobs');
      if (Number(left!.n) !== 0) throw new Error(`${left!.n} of ${jobs} jobs were not completed`);
    },
    figures: () => ({ slotsPerWorker: WORKER_SETTINGS.concurrentJobs }),
  };
}
