// graphile-worker in the benchmark's producer and worker processes, set up as its authors set
// it up for their own performance figures (worker.graphile.org/docs/performance): 24
// concurrent jobs per process, a pool of 25, a local queue of 500 jobs, completions and
// failures batched with no delay, the default 2 s poll (LISTEN/NOTIFY wakes it on new jobs).

import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import pg from 'pg';
import type { ClientAdapter, Producer } from './process-protocol.ts';

export const TASK = 'bench';
export const WORKER_SETTINGS = { concurrentJobs: 24, poolSize: 25, localQueueSize: 500, batchDelayMs: 0, pollIntervalMs: 2_000 };
const PRODUCER_POOL_SIZE = 10;

interface GraphileOptions {
  url: string;
}

// Its default logger writes a line per job at info level, which would cost more CPU than the
// job; warnings and errors still show.
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker ${level}: ${message}\n`);
});

export const adapter: ClientAdapter = {
  async openProducer(options) {
    const { url } = options as unknown as GraphileOptions;
    const utils = await makeWorkerUtils({ connectionString: url, maxPoolSize: PRODUCER_POOL_SIZE, logger });
    const producer: Producer = {
      streams: 1,
      async addMany(_stream, count, payload) {
        const parsed: unknown = JSON.parse(payload);
        await utils.addJobs(Array.from({ length: count }, () => ({ identifier: TASK, payload: parsed })));
      },
      async addOne(payload) {
        await utils.addJob(TASK, JSON.parse(payload));
      },
      close: async () => void (await utils.release()),
    };
    return producer;
  },

  async openWorker(options, onJob) {
    const { url } = options as unknown as GraphileOptions;
    // Our own pool, so that stopping the runner (which flushes the completion batch) is not
    // also closing connections when the benchmark times it.
    const pool = new pg.Pool({ connectionString: url, max: WORKER_SETTINGS.poolSize });
    // A connection the server ends would otherwise be an unhandled 'error' event (and
    // graphile-worker warns about a pool without these handlers).
    const onError = (error: Error) => process.stderr.write(`graphile-worker pool: ${error.message}\n`);
    pool.on('error', onError);
    pool.on('connect', (client) => client.on('error', onError));
    const runner = await run({
      pgPool: pool,
      concurrency: WORKER_SETTINGS.concurrentJobs,
      pollInterval: WORKER_SETTINGS.pollIntervalMs,
      noHandleSignals: true,
      logger,
      preset: {
        worker: {
          localQueue: { size: WORKER_SETTINGS.localQueueSize },
          completeJobBatchDelay: WORKER_SETTINGS.batchDelayMs,
          failJobBatchDelay: WORKER_SETTINGS.batchDelayMs,
        },
      },
      taskList: {
        [TASK]: async (payload, helpers) => {
          const stamp = (payload as { t?: unknown }).t;
          onJob(typeof stamp === 'number' ? stamp : null, helpers.job.attempts);
        },
      },
    });
    return {
      // A graceful stop waits for running jobs and releases the completion batcher, whose
      // promise settles when the batch's DELETE has committed.
      drain: () => runner.stop(),
      close: () => pool.end(),
    };
  },
};
