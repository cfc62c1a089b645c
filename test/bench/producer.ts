// The benchmark's producer process: one system's client (the adapter module named in argv)
// adding jobs when the orchestrator says so, in chunks (the throughput phase) or one at a time
// at a steady rate (the latency phase).
//
//   (forked by shape.ts) producer.ts <adapter module> <options JSON>

import { nowMs, payloadText, stampUsNow, type ClientAdapter, type FromProducer, type ToProducer } from './process-protocol.ts';

const { adapter } = (await import(process.argv[2]!)) as { adapter: ClientAdapter };
const producer = await adapter.openProducer(JSON.parse(process.argv[3]!) as Record<string, unknown>);
const send = (message: FromProducer): void => void process.send!(message);

process.on('message', (message: ToProducer) => {
  void (message.t === 'submit' ? submit(message) : paced(message)).then(send, (error: unknown) => {
    process.stderr.write(`producer: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
});
process.on('disconnect', () => void producer.close().finally(() => process.exit(0)));
send({ t: 'ready' });

/** Each stream adds its share in sequential calls of `chunk` jobs, the streams at once. Every
 * job of a call carries the same payload: the producer's cost is the system's, not building
 * 50,000 distinct strings. */
async function submit({ jobs, chunk, payloadBytes }: Extract<ToProducer, { t: 'submit' }>): Promise<FromProducer> {
  const payload = payloadText(payloadBytes);
  const firstCallMs = nowMs();
  await Promise.all(
    Array.from({ length: producer.streams }, async (_, stream) => {
      const share = Math.floor(jobs / producer.streams) + (stream < jobs % producer.streams ? 1 : 0);
      for (let done = 0; done < share; done += chunk) await producer.addMany(stream, Math.min(chunk, share - done), payload);
    }),
  );
  return { t: 'submitted', firstCallMs, lastAckMs: nowMs() };
}

/** Calls start on schedule whether or not earlier ones have been answered, so a slow answer
 * does not lower the offered rate. */
async function paced({ jobs, ratePerSec, payloadBytes }: Extract<ToProducer, { t: 'paced' }>): Promise<FromProducer> {
  const gapMs = 1000 / ratePerSec;
  const startMs = nowMs();
  const calls: Array<Promise<void>> = [];
  for (let i = 0; i < jobs; i++) {
    const waitMs = startMs + i * gapMs - nowMs();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    calls.push(producer.addOne(payloadText(payloadBytes, stampUsNow())));
  }
  await Promise.all(calls);
  return { t: 'paced-done' };
}
