// A benchmark worker process: one system's worker (the adapter module named in argv) with a
// no-op handler. It counts handlers started and reports the count to the orchestrator every
// PROGRESS_EVERY_MS while it changes; that is how the orchestrator learns that every job has
// run without querying the jobs table. It records, for jobs whose payload carries one, the
// time from the submit call to the handler's start.
//
//   (forked by shape.ts) worker.ts <adapter module> <options JSON>

import { nowMs, type ClientAdapter, type FromWorker, type ToWorker, type WorkerHandle } from './process-protocol.ts';

// Often enough that the end of a phase is known within a few milliseconds, rarely enough that
// the reports cost the worker next to nothing (about 1 µs a job at 5,000 jobs/s).
const PROGRESS_EVERY_MS = 10;

const { adapter } = (await import(process.argv[2]!)) as { adapter: ClientAdapter };
const options = JSON.parse(process.argv[3]!) as Record<string, unknown>;
const send = (message: FromWorker): void => void process.send!(message);

let started = 0;
let redelivered = 0;
let latenciesMs: number[] = [];
const onJob = (stampUs: number | null, attempt: number): void => {
  started++;
  if (attempt > 1) redelivered++;
  if (stampUs !== null) latenciesMs.push(nowMs() - stampUs / 1000);
};

let worker: WorkerHandle = await adapter.openWorker(options, onJob);
let reported = -1;
const progress = setInterval(() => {
  if (started === reported) return;
  reported = started;
  send({ t: 'progress', started, redelivered });
}, PROGRESS_EVERY_MS);

process.on('message', (message: ToWorker) => {
  void (async () => {
    if (message.t === 'drain') {
      await worker.drain();
      const atMs = nowMs();
      await worker.close();
      send({ t: 'drained', atMs });
    } else if (message.t === 'reopen') {
      worker = await adapter.openWorker(options, onJob);
      send({ t: 'reopened' });
    } else {
      send({ t: 'latencies', ms: latenciesMs });
      latenciesMs = [];
    }
  })();
});
// The orchestrator going away (the IPC channel closing) ends the worker, drained or not.
process.on('disconnect', () => {
  clearInterval(progress);
  void worker.drain().then(() => worker.close()).finally(() => process.exit(0));
});
send({ t: 'ready' });
