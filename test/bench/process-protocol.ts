// What the benchmark's orchestrator (shape.ts) and its producer and worker processes say to
// each other over the IPC channel of `fork`, what a system adapter (kairos-client.ts,
// graphile-client.ts) gives those processes, and the payload both systems carry.
//
// Times are milliseconds on CLOCK_MONOTONIC (process.hrtime), which every process on the
// machine shares; performance.timeOrigin differs between processes by tens of milliseconds.

/** The orchestrator to the producer. */
export type ToProducer =
  /** Add `jobs` jobs in sequential calls of `chunk` each (per stream, the streams at once). */
  | { t: 'submit'; jobs: number; chunk: number; payloadBytes: number }
  /** Add `jobs` jobs one call each, started at `ratePerSec`, each carrying its call's time. */
  | { t: 'paced'; jobs: number; ratePerSec: number; payloadBytes: number };

/** The producer to the orchestrator. */
export type FromProducer =
  | { t: 'ready' }
  /** The first add call, and the moment the last one was acknowledged (committed). */
  | { t: 'submitted'; firstCallMs: number; lastAckMs: number }
  | { t: 'paced-done' };

/** The orchestrator to a worker. */
export type ToWorker =
  /** Stop taking jobs and say when every outcome was committed (WorkerHandle.drain). */
  | { t: 'drain' }
  /** Open a fresh worker for the next phase. */
  | { t: 'reopen' }
  | { t: 'latencies' };

/** A worker to the orchestrator. */
export type FromWorker =
  | { t: 'ready' }
  /** Handlers started so far, of which `redelivered` ran a job a second time. */
  | { t: 'progress'; started: number; redelivered: number }
  | { t: 'drained'; atMs: number }
  | { t: 'reopened' }
  | { t: 'latencies'; ms: number[] };

/** A job seen by a handler: the submit call's time when its payload carries one, and the
 * attempt number (a second attempt means the job ran more than once). */
export type OnJob = (stampUs: number | null, attempt: number) => void;

/** What a system adapter module exports for the producer and worker processes. Options come
 * from the orchestrator's side module (kairos-side.ts, graphile-side.ts) as JSON. */
export interface ClientAdapter {
  openProducer(options: Record<string, unknown>): Promise<Producer>;
  openWorker(options: Record<string, unknown>, onJob: OnJob): Promise<WorkerHandle>;
}

export interface WorkerHandle {
  /** Stops taking jobs and resolves once every outcome of a job it ran is committed. */
  drain(): Promise<void>;
  /** Releases its connections, after drain. */
  close(): Promise<void>;
}

export interface Producer {
  /** Independent submission paths the producer uses at once (Kairos: a client per node). */
  readonly streams: number;
  /** Adds `count` jobs, each with `payload`, in one call on `stream`; resolves once the
   * system has acknowledged them, i.e. committed them. */
  addMany(stream: number, count: number, payload: string): Promise<void>;
  addOne(payload: string): Promise<void>;
  close(): Promise<void>;
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

// A payload is JSON text of exactly `bytes` bytes (or its shortest form, when `bytes` is less):
// `{"pad":"…"}`, or `{"t":<µs>,"pad":"…"}` for a latency job, whose `t` is the submit call's
// time in whole microseconds. Kairos carries it as UTF-8 bytes, graphile-worker as jsonb.
export function payloadText(bytes: number, stampUs?: number): string {
  const head = stampUs === undefined ? '{"pad":"' : `{"t":${stampUs},"pad":"`;
  return `${head}${padding(Math.max(0, bytes - head.length - 2))}"}`;
}

const REPEATED = 'customer_id_and'; // 16 characters with the separator below
const paddings = new Map<number, string>();

/** Alternate runs of 16 pseudo-random characters and a repeated 16-character phrase, so that
 * PostgreSQL's compression halves it about as it does typical JSON (repeated keys, varied
 * values). One repeated character would shrink to almost nothing in the database and flatter
 * both systems; random text would not compress at all and be moved out of line. The same text
 * every run (a fixed seed), so runs compare. */
function padding(length: number): string {
  let text = paddings.get(length);
  if (text !== undefined) return text;
  let seed = 0x2545f491;
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const parts: string[] = [];
  for (let size = 0; size < length; size += 32) {
    let run = '';
    for (let i = 0; i < 16; i++) {
      // xorshift32
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      run += chars[(seed >>> 0) % chars.length];
    }
    parts.push(run, `${REPEATED}_`);
  }
  text = parts.join('').slice(0, length);
  paddings.set(length, text);
  return text;
}

export function stampUsNow(): number {
  return Math.round(nowMs() * 1000);
}

const QUOTE_T = 0x74; // `t`, at index 2 of `{"t":`
const DIGIT_0 = 0x30;

/** The stamp of a payload in UTF-8 bytes, or null; reads only the digits after `{"t":`, so a
 * handler does not pay for decoding 2 KB of JSON per job. */
export function stampOfBytes(payload: Uint8Array): number | null {
  if (payload.length < 6 || payload[2] !== QUOTE_T) return null;
  let us = 0;
  for (let i = 5; i < payload.length; i++) {
    const digit = payload[i]! - DIGIT_0;
    if (digit < 0 || digit > 9) break;
    us = us * 10 + digit;
  }
  return us;
}
