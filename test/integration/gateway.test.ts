// The WebSocket gateway of a real node process: authentication on the upgrade, tenancy, and a
// fuzz of 10,000 random and mutated frames after which the node still serves a normal client.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../protocol/codec.ts';
import { CODEC_LIMITS, SUPPORTED_VERSIONS } from '../../protocol/limits.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { RawClient, type Reply } from '../support/raw-client.ts';
import { OTHER_TOKEN, TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';

let db: TestDatabase;
let node: SpawnedNode;

beforeAll(async () => {
  db = await createTestDatabase();
  node = await spawnNode({ databaseUrl: db.url });
});

afterAll(async () => {
  await node?.kill();
  await db?.drop();
});

const payload = new Uint8Array([1, 2, 3]);

describe('authentication', () => {
  it('refuses an upgrade without a token, with a wrong token, and with a token in the URL', async () => {
    await expect(RawClient.open(node.url, {})).rejects.toThrow(/401/);
    await expect(RawClient.open(node.url, { authorization: 'Bearer not-a-token-at-all' })).rejects.toThrow(/401/);
    await expect(RawClient.open(`${node.url}/?token=${TEST_TOKEN}`, {})).rejects.toThrow(/401/);
  });

  it('accepts the token as a subprotocol', async () => {
    const client = await RawClient.open(node.url, {}, ['kairos', `kairos.bearer.${TEST_TOKEN}`]);
    client.send({ t: 'hello', versions: [...SUPPORTED_VERSIONS] });
    expect(await client.until((r) => r.t === 'welcome')).toMatchObject({ t: 'welcome', version: 1 });
    client.close();
  });

  it('refuses requests before hello and versions it does not speak', async () => {
    const early = await RawClient.open(node.url, { authorization: `Bearer ${TEST_TOKEN}` });
    expect(await early.request({ t: 'get', rid: 1, jobId: '000-1-1-1' })).toMatchObject({ t: 'error', code: 'illegal_state' });
    early.send({ t: 'hello', versions: [999] });
    expect(await early.until((r) => r.t === 'error' && r.code === 'unsupported_version')).toBeTruthy();
    expect(await early.until(() => false).catch(() => 'timeout')).toBe('closed');
  });
});

describe('tenancy', () => {
  it('a tenant cannot read, cancel or subscribe to another tenant\'s job, nor see it listed', async () => {
    const a = await RawClient.connect(node.url, TEST_TOKEN);
    const b = await RawClient.connect(node.url, OTHER_TOKEN);
    const submitted = await a.request({ t: 'submit', rid: 1, job: { queue: 'q', payload } });
    expect(submitted).toMatchObject({ t: 'submitted' });
    const jobId = (submitted as { jobId: string }).jobId;
    expect(await a.request({ t: 'get', rid: 2, jobId })).toMatchObject({ t: 'job', job: { id: jobId } });
    expect(await b.request({ t: 'get', rid: 2, jobId })).toMatchObject({ t: 'error', code: 'not_found' });
    expect(await b.request({ t: 'cancel', rid: 3, jobId })).toMatchObject({ t: 'error', code: 'not_found' });
    expect(await b.request({ t: 'subscribe', rid: 4, jobId })).toMatchObject({ t: 'error', code: 'not_found' });
    const listed = (await b.request({ t: 'list', rid: 5 })) as { jobs: Array<{ id: string }> };
    expect(listed.jobs.map((j) => j.id)).not.toContain(jobId);
    expect(await a.request({ t: 'cancel', rid: 6, jobId })).toMatchObject({ t: 'cancelled', job: { state: 'cancelled' } });
    a.close();
    b.close();
  });
});

describe('bad input', () => {
  it('answers a list cursor the node never made with bad_request, and keeps the connection', async () => {
    const client = await RawClient.connect(node.url, TEST_TOKEN);
    expect(await client.request({ t: 'list', rid: 1, after: 'forged-cursor' })).toMatchObject({ t: 'error', code: 'bad_request', field: 'after' });
    expect(await client.request({ t: 'list', rid: 2, limit: 1 })).toMatchObject({ t: 'job_page' });
    client.close();
  });
});

describe('fuzz', () => {
  it('answers 10,000 random and mutated frames with an error or a close, and keeps serving', async () => {
    const valid = [
      encodeMessage({ t: 'submit', rid: 7, job: { queue: 'fuzz', payload, priority: 3, idempotencyKey: 'k' } }),
      encodeMessage({ t: 'submit_batch', rid: 8, jobs: [{ queue: 'fuzz', payload }] }),
      encodeMessage({ t: 'get', rid: 9, jobId: '001-mfz1k2q0-5-1a' }),
      encodeMessage({ t: 'list', rid: 10, limit: 5 }),
      encodeMessage({ t: 'credit', queue: 'nobody-consumes-this', slots: 0 }),
      encodeMessage({ t: 'complete', rid: 11, token: { jobId: '001-mfz1k2q0-5-1a', attempt: 1, epoch: 1 } }),
    ];
    const frameArb = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 600 }),
      fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 })).map(([bytes, flips]) => {
        const copy = new Uint8Array(bytes);
        for (const [at, value] of flips) copy[at % copy.length] = value;
        return copy;
      }),
      fc.tuple(fc.constantFrom(...valid), fc.nat()).map(([bytes, cut]) => bytes.slice(0, cut % bytes.length)),
      fc.anything({ maxDepth: 4 }).map((value) => {
        try {
          return encodeMessage({ t: 'submit', rid: 1, job: value } as { t: string });
        } catch {
          return new Uint8Array([0xc1]);
        }
      }),
    );
    const frames = fc.sample(frameArb, { numRuns: 10_000, seed: 42 });
    frames.push(new Uint8Array(CODEC_LIMITS.frameBytesMax + 10)); // too large: a typed error
    let client = await RawClient.connect(node.url, TEST_TOKEN);
    let probeRid = 1_000_000;
    let errors = 0;
    let closes = 0;
    // Frames go in windows, each followed by a probe that the gateway answers itself, in order:
    // a bad frame's error must come before its probe's answer. A connection closed for abuse
    // is an allowed answer too; the frames after it go again on a new connection.
    for (let next = 0; next < frames.length; ) {
      const batch = frames.slice(next, next + 50);
      const probes: number[] = [];
      for (const frame of batch) {
        client.sendBytes(frame);
        const rid = ++probeRid;
        probes.push(rid);
        client.send({ t: 'unsubscribe', rid, jobId: '000-1-1-1' });
      }
      await client.until((r) => r.t === 'ok' && r.rid === probes.at(-1), 20_000);
      const replies: Reply[] = client.replies.splice(0);
      let cursor = 0;
      for (const [i, frame] of batch.entries()) {
        const probeAt = replies.findIndex((r, k) => k >= cursor && r.t === 'ok' && r.rid === probes[i]);
        const between = replies.slice(cursor, probeAt < 0 ? replies.length : probeAt);
        if (!decodeFromClient(frame).ok) {
          const answered = between.some((r) => r.t === 'error');
          expect(answered || client.closed, `frame ${next} got neither an error nor a close`).toBe(true);
          if (answered) errors++;
        }
        if (probeAt < 0) {
          expect(client.closed).toBe(true);
          closes++;
          break;
        }
        cursor = probeAt + 1;
        next++;
      }
      if (client.closed) {
        next++;
        client = await RawClient.connect(node.url, TEST_TOKEN);
      }
    }
    expect(errors + closes).toBeGreaterThan(9_000);
    // The node is alive and serves a normal client.
    expect(node.child.exitCode).toBeNull();
    const fresh = await RawClient.connect(node.url, TEST_TOKEN);
    const ok = await fresh.request({ t: 'submit', rid: 1, job: { queue: 'after-fuzz', payload } });
    expect(ok).toMatchObject({ t: 'submitted', duplicate: false });
    expect(await fresh.request({ t: 'get', rid: 2, jobId: (ok as { jobId: string }).jobId })).toMatchObject({ t: 'job' });
    fresh.close();
    client.close();
  }, 300_000);
});
