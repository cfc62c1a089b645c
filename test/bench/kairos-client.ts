// Kairos in the benchmark's producer and worker processes: the SDK, as an application uses it.
// The producer holds one client per node (options.urls) and gives each its share, as a
// producer spread over a cluster would; a worker connects to one node.

import { connect } from '../../protocol/sdk/index.ts';
import { stampOfBytes, type ClientAdapter, type Producer } from './process-protocol.ts';

interface KairosOptions {
  urls: string[];
  token: string;
  queue: string;
  concurrency?: number;
}

const encoder = new TextEncoder();

export const adapter: ClientAdapter = {
  async openProducer(options) {
    const { urls, token, queue } = options as unknown as KairosOptions;
    const clients = await Promise.all(
      // A chunk of 1,000 jobs with 2 KB payloads is several frames; the default 30 s request
      // timeout is ample, but a loaded 2-core machine should fail the run, not a request.
      urls.map((url) => connect({ url, token, client: 'bench-producer', onWarning: () => {}, requestTimeoutMs: 120_000 })),
    );
    const producer: Producer = {
      streams: clients.length,
      async addMany(stream, count, payload) {
        const bytes = encoder.encode(payload);
        const results = await clients[stream]!.submitMany(Array.from({ length: count }, () => ({ queue, payload: bytes })));
        const refused = results.find((r) => r instanceof Error);
        if (refused !== undefined) throw refused;
      },
      async addOne(payload) {
        await clients[0]!.submit({ queue, payload: encoder.encode(payload) });
      },
      async close() {
        await Promise.all(clients.map((c) => c.close()));
      },
    };
    return producer;
  },

  async openWorker(options, onJob) {
    const { urls, token, queue, concurrency } = options as unknown as KairosOptions;
    const client = await connect({ url: urls[0]!, token, client: 'bench-worker', onWarning: () => {} });
    const worker = client.worker(
      queue,
      (ctx) => {
        onJob(stampOfBytes(ctx.payload), ctx.attempt);
        return undefined;
      },
      { concurrency: concurrency ?? 128 },
    );
    return {
      // Resolves once the node has acknowledged every outcome, i.e. committed it.
      drain: () => worker.close(),
      close: () => client.close(),
    };
  },
};
