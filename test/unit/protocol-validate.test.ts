// Validation: a decoded frame becomes a typed message, or a typed error naming what is wrong,
// with the request's rid when it could be read. Never a throw.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../node/core/job/job.ts';
import { DEFAULT_RETRY_POLICY } from '../../protocol/job-rules.ts';
import {
  CLIENT_TO_NODE,
  errorReply,
  errorReplySchema,
  NODE_TO_CLIENT,
  retryPolicyOf,
  type SubmitSpec,
} from '../../protocol/client-messages.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import { ERROR_CODE_NAMES } from '../../protocol/errors.ts';
import { toJobView } from '../../node/core/gateway/views.ts';
import { BATCH_MAX } from '../../protocol/limits.ts';
import { PEER } from '../../protocol/peer-messages.ts';
import { Invalid, type AnySchema, type Meta } from '../../protocol/schema.ts';
import { decodeFromClient, decodeFromNode, decodeFromPeer, type Decoded } from '../../protocol/validate.ts';
import { NODE_TO_WORKER, WORKER_TO_NODE } from '../../protocol/worker-messages.ts';
import { arbitraryOf } from './protocol-arbitraries.ts';
import { SAMPLES, type Sample } from './protocol-samples.ts';

const JOB_ID = '03f-mjuohs00-5-16';
const payload = new Uint8Array([1]);

const DECODERS: Record<Sample['from'], (bytes: Uint8Array) => Decoded<unknown>> = {
  'from-client': decodeFromClient,
  'from-node': decodeFromNode,
  'from-peer': decodeFromPeer,
};

function refused<M>(result: Decoded<M>) {
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result.msg)}`);
  return result;
}

function submit(job: Record<string, unknown>) {
  return decodeFromClient(encodeMessage({ t: 'submit', rid: 9, job: { queue: 'q', payload, ...job } }));
}

describe('envelope', () => {
  it('needs a supported version', () => {
    const get = { t: 'get', rid: 4, jobId: JOB_ID };
    for (const version of [0, 2]) {
      const result = refused(decodeFromClient(encodeMessage(get, version)));
      expect(result).toMatchObject({ rid: 4, error: { code: 'unsupported_version', field: 'v' } });
    }
    // A frame without v, built by hand: fixmap {t: "ok", rid: 1}.
    const noVersion = Uint8Array.from([0x82, 0xa1, 0x74, 0xa2, 0x6f, 0x6b, 0xa3, 0x72, 0x69, 0x64, 0x01]);
    expect(refused(decodeFromNode(noVersion))).toMatchObject({ rid: 1, error: { code: 'bad_request', field: 'v' } });
    const fractional = refused(decodeFromNode(encodeMessage({ t: 'ok', rid: 1 }, 1.5)));
    expect(fractional).toMatchObject({ error: { code: 'bad_request', field: 'v' } });
  });

  it('needs a type known for the direction', () => {
    expect(refused(decodeFromClient(encodeMessage({ t: 'teleport', rid: 3 })))).toMatchObject({
      rid: 3,
      error: { code: 'unknown_type', field: 't' },
    });
    // Node → client messages are not accepted from a client, nor client messages from a peer.
    expect(refused(decodeFromClient(encodeMessage({ t: 'ok', rid: 3 }))).error.code).toBe('unknown_type');
    expect(refused(decodeFromPeer(encodeMessage({ t: 'get', rid: 3, jobId: JOB_ID }))).error.code).toBe('unknown_type');
    for (const t of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect(refused(decodeFromClient(encodeMessage({ t, rid: 3 }))).error.code).toBe('unknown_type');
    }
    expect(refused(decodeFromClient(encodeMessage({ t: 7 } as unknown as { t: string })))).toMatchObject({
      error: { code: 'bad_request', field: 't' },
    });
  });

  it('echoes the rid when it could be read, and only then', () => {
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: 42, jobId: 'x' }))).rid).toBe(42);
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: -1, jobId: JOB_ID }))).rid).toBe(null);
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: 2 ** 32, jobId: JOB_ID }))).rid).toBe(null);
    const unreadable = refused(decodeFromClient(Uint8Array.from([0x91, 0x01])));
    expect(unreadable).toMatchObject({ rid: null, error: { code: 'malformed' } });
  });

  it('client and worker messages share a connection, so their types must not collide', () => {
    const client = Object.keys(CLIENT_TO_NODE);
    expect(Object.keys(WORKER_TO_NODE).filter((t) => client.includes(t))).toEqual([]);
    const shared = Object.keys(NODE_TO_WORKER).filter((t) => Object.hasOwn(NODE_TO_CLIENT, t));
    expect(shared).toEqual(['error']);
    expect(NODE_TO_WORKER.error).toBe(NODE_TO_CLIENT.error);
  });
});

describe('fields', () => {
  it('names a field of the wrong type, for every field of every sample', () => {
    for (const sample of SAMPLES) {
      const schema = schemaOf(sample);
      for (const [field, spec] of Object.entries(fieldsOf(schema))) {
        if (field === 't') continue;
        const kind = spec.schema.meta.kind === 'nullable' ? spec.schema.meta.inner.meta.kind : spec.schema.meta.kind;
        const wrong = kind === 'str' || kind === 'oneOf' ? 12345 : 'wrong';
        const bytes = encodeMessage({ ...sample.message, [field]: wrong });
        const result = refused(DECODERS[sample.from](bytes));
        expect(result.error, `${sample.name}.${field}`).toMatchObject({ code: 'bad_request', field });
      }
    }
  });

  it('names a missing required field and an unknown one', () => {
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: 1 })))).toMatchObject({
      error: { code: 'bad_request', field: 'jobId', message: 'jobId: is required' },
    });
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: 1, jobId: JOB_ID, jobid: JOB_ID })))).toMatchObject({
      error: { code: 'bad_request', field: 'jobid', message: 'jobid: unknown field' },
    });
    expect(refused(submit({ colour: 'red' })).error.field).toBe('job.colour');
  });

  it('takes nil only where a field is nullable', () => {
    expect(refused(submit({ priority: null })).error).toMatchObject({ field: 'job.priority' });
    expect(decodeFromNode(encodeMessage({ t: 'job_page', rid: 1, jobs: [], next: null })).ok).toBe(true);
  });

  it('checks job ids, ranges and lengths (in code points)', () => {
    expect(refused(decodeFromClient(encodeMessage({ t: 'get', rid: 1, jobId: 'XYZ-1-2-3' }))).error.message).toBe(
      'jobId: must be a job id',
    );
    expect(refused(submit({ priority: 1001 })).error.message).toBe('job.priority: must be an integer in [-1000, 1000]');
    expect(refused(submit({ priority: 1.5 })).error.field).toBe('job.priority');
    expect(refused(submit({ queue: '' })).error.message).toBe('job.queue: must be 1 to 128 characters');
    expect(submit({ queue: '🦀'.repeat(128) }).ok).toBe(true); // 256 UTF-16 units, 128 characters
    expect(refused(submit({ queue: '🦀'.repeat(129) })).error.field).toBe('job.queue');
    expect(refused(submit({ payload: new Uint8Array(256 * 1024 + 1) })).error.message).toBe(
      'job.payload: must be at most 262144 bytes',
    );
    expect(refused(submit({ payload: 'text' })).error.message).toBe('job.payload: must be bytes (msgpack bin)');
  });

  it('refuses runAt with delayMs', () => {
    expect(refused(submit({ runAt: 1, delayMs: 1 })).error).toMatchObject({
      field: 'job.delayMs',
      message: 'job.delayMs: runAt and delayMs exclude each other',
    });
  });

  it('checks the retry policy with its defaults filled in', () => {
    expect(submit({ retry: {} }).ok).toBe(true);
    expect(refused(submit({ retry: { attemptsMax: 0 } })).error.field).toBe('job.retry.attemptsMax');
    expect(refused(submit({ retry: { jitter: 1.5 } })).error.field).toBe('job.retry.jitter');
    expect(refused(submit({ retry: { backoffBaseMs: 10_000, backoffMaxMs: 5_000 } })).error).toMatchObject({
      field: 'job.retry',
      message: 'job.retry: backoffMaxMs must be an integer in [backoffBaseMs, 604800000]',
    });
    // An unset cap rises to a long base instead of failing against the default cap.
    const longBase: SubmitSpec['retry'] = { backoffBaseMs: 3_600_000 };
    expect(submit({ retry: longBase }).ok).toBe(true);
    expect(retryPolicyOf(longBase)).toEqual({ ...DEFAULT_RETRY_POLICY, backoffBaseMs: 3_600_000, backoffMaxMs: 3_600_000 });
    expect(retryPolicyOf(undefined)).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('validates a batch whole, naming the bad job, and caps its size', () => {
    const jobs = [{ queue: 'q', payload }, { queue: '', payload }];
    expect(refused(decodeFromClient(encodeMessage({ t: 'submit_batch', rid: 5, jobs })))).toMatchObject({
      rid: 5,
      error: { code: 'bad_request', field: 'jobs[1].queue' },
    });
    const many = Array.from({ length: BATCH_MAX + 1 }, () => ({ queue: 'q', payload }));
    expect(refused(decodeFromClient(encodeMessage({ t: 'submit_batch', rid: 5, jobs: many }))).error.message).toBe(
      `jobs: must have at most ${BATCH_MAX} items`,
    );
  });

  it('validates nested messages of peers by their own type', () => {
    const forward = { t: 'forward', fid: 1, conn: 'c1', tenant: 'acme', request: { t: 'hello', versions: [1] } };
    expect(refused(decodeFromPeer(encodeMessage(forward))).error.field).toBe('request.t');
    const token = { jobId: JOB_ID, attempt: 0, epoch: 1 };
    const fail = { ...forward, request: { t: 'fail', rid: 1, token, error: 'x', retryable: true } };
    expect(refused(decodeFromPeer(encodeMessage(fail))).error.field).toBe('request.token.attempt');
    const relay = { t: 'owner_relay', worker: 'n/1', message: { t: 'ack', rid: 1 } };
    expect(refused(decodeFromPeer(encodeMessage(relay))).error.field).toBe('message.t');
  });
});

describe('properties', () => {
  const families: Array<[string, Record<string, AnySchema>, (bytes: Uint8Array) => Decoded<unknown>]> = [
    ['client → node', CLIENT_TO_NODE, decodeFromClient],
    ['worker → node', WORKER_TO_NODE, decodeFromClient],
    ['node → client', NODE_TO_CLIENT, decodeFromNode],
    ['node → worker', NODE_TO_WORKER, decodeFromNode],
    ['node ↔ node', PEER, decodeFromPeer],
  ];

  for (const [family, table, decode] of families) {
    it(`decode ∘ encode is the identity for every valid ${family} message`, () => {
      for (const [t, schema] of Object.entries(table)) {
        fc.assert(
          fc.property(arbitraryOf(schema), (message) => {
            expect(decode(encodeMessage(message as { t: string })), t).toEqual({ ok: true, msg: message });
          }),
          { numRuns: 60 },
        );
      }
    });
  }

  it('every refusal of any bytes is an error reply the SDK accepts', () => {
    const decoders = [decodeFromClient, decodeFromNode, decodeFromPeer];
    const samples = SAMPLES.map((sample) => encodeMessage(sample.message));
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.tuple(fc.constantFrom(...samples), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([frame, at, byte]) => {
        const copy = Uint8Array.from(frame);
        copy[at % copy.length] = byte;
        return copy;
      }),
    );
    fc.assert(
      fc.property(bytes, fc.constantFrom(...decoders), (frame, decode) => {
        const result = decode(frame);
        if (result.ok) return;
        expect(ERROR_CODE_NAMES).toContain(result.error.code);
        const reply = errorReply(result.rid, result.error);
        expect(errorReplySchema.check(reply)).not.toBeInstanceOf(Invalid);
        expect(decodeFromNode(encodeMessage(reply))).toEqual({ ok: true, msg: reply });
      }),
      { numRuns: 5000 },
    );
  });

  it('an error about a long hostile key still fits an error reply', () => {
    const key = 'k'.repeat(5000);
    const deep = { t: 'get', rid: 1, jobId: JOB_ID, [key]: 1 };
    const result = refused(decodeFromClient(encodeMessage(deep)));
    expect(errorReplySchema.check(errorReply(result.rid, result.error))).not.toBeInstanceOf(Invalid);
  });
});

describe('toJobView', () => {
  it('shows a job as clients see it', () => {
    const job: Job = {
      id: JOB_ID,
      shard: 63,
      tenant: 'acme',
      queue: 'emails',
      payload,
      priority: 3,
      runAtMs: 10,
      scheduledAtMs: 5,
      state: 'running',
      attempts: 2,
      retry: { ...DEFAULT_RETRY_POLICY, attemptsMax: 7 },
      idempotencyKey: null,
      leaseEpoch: 5,
      leaseWorker: 'n1/c1',
      leaseExpiresAtMs: 40,
      version: 4,
      lastError: 'boom',
      result: null,
      createdAtMs: 5,
      updatedAtMs: 20,
      finishedAtMs: null,
    };
    expect(toJobView(job)).toEqual({
      id: JOB_ID,
      queue: 'emails',
      state: 'running',
      priority: 3,
      runAt: 10,
      scheduledAt: 5,
      attempts: 2,
      attemptsMax: 7,
      idempotencyKey: null,
      lastError: 'boom',
      result: null,
      payload,
      createdAt: 5,
      updatedAt: 20,
      finishedAt: null,
    });
  });
});

function schemaOf(sample: Sample): AnySchema {
  const tables: Record<Sample['from'], Array<Record<string, AnySchema>>> = {
    'from-client': [CLIENT_TO_NODE, WORKER_TO_NODE],
    'from-node': [NODE_TO_CLIENT, NODE_TO_WORKER],
    'from-peer': [PEER],
  };
  const schema = tables[sample.from].map((table) => table[sample.message.t]).find((s) => s !== undefined);
  if (schema === undefined) throw new Error(`no schema for ${sample.message.t}`);
  return schema;
}

function fieldsOf(schema: AnySchema): Extract<Meta, { kind: 'obj' }>['fields'] {
  const meta = schema.meta.kind === 'refine' ? schema.meta.inner.meta : schema.meta;
  if (meta.kind !== 'obj') throw new Error(`not an object schema: ${meta.kind}`);
  return meta.fields;
}
