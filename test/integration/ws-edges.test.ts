// The WebSocket edge of a real node process as PROTOCOL.md's Transport section states it: the
// subprotocol the node selects, the codes it closes with, and the connection limits it applies
// at the upgrade.

import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encodeMessage } from '../../protocol/codec.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { pollUntil } from '../support/poll.ts';
import { OTHER_TOKEN, TEST_TOKEN, spawnNode, type SpawnedNode } from '../support/spawn-node.ts';

// Two nodes, each alone on a database of its own: two unjoined nodes on one database would
// both take every shard.
let dbs: TestDatabase[] = [];
/** Default limits. */
let node: SpawnedNode;
/** 3 connections, 2 per tenant. */
let small: SpawnedNode;

beforeAll(async () => {
  dbs = await Promise.all([createTestDatabase(), createTestDatabase()]);
  [node, small] = await Promise.all([
    spawnNode({ databaseUrl: dbs[0]!.url }),
    spawnNode({ databaseUrl: dbs[1]!.url, env: { KAIROS_CONNECTIONS_MAX: '3', KAIROS_TENANT_CONNECTIONS_MAX: '2' } }),
  ]);
});

afterAll(async () => {
  await Promise.all([node?.kill(), small?.kill()]);
  await Promise.all(dbs.map((db) => db.drop()));
});

/** The node's answer to an upgrade, headers included (RawClient keeps only the status): 101
 * with the open socket, or the refusal. */
interface Handshake {
  status: number;
  headers: IncomingHttpHeaders;
  ws: WebSocket | null;
}

function handshake(url: string, options: { token?: string; protocols?: string[] }): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const headers = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
    const ws = new WebSocket(url, options.protocols ?? [], { headers });
    let upgraded: IncomingHttpHeaders = {};
    ws.once('upgrade', (res) => (upgraded = res.headers));
    ws.once('open', () => resolve({ status: 101, headers: upgraded, ws }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      resolve({ status: res.statusCode!, headers: res.headers, ws: null });
    });
    // Also after the promise settled: terminating a refused handshake reports an error.
    ws.on('error', reject);
  });
}

async function open(url: string, token: string): Promise<WebSocket> {
  const answer = await handshake(url, { token });
  expect(answer.status).toBe(101);
  return answer.ws!;
}

/** Resolves with the close code and reason the node sends, or fails after `timeoutMs`. */
function closeOf(ws: WebSocket, timeoutMs = 5_000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms`)), timeoutMs);
    ws.once('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

async function closeAndWait(ws: WebSocket): Promise<void> {
  const closed = closeOf(ws);
  ws.close();
  await closed;
}

describe('subprotocol', () => {
  it('selects kairos for a client that offers it with its bearer token, and never echoes the token', async () => {
    const answer = await handshake(node.url, { protocols: ['kairos', `kairos.bearer.${TEST_TOKEN}`] });
    expect(answer.status).toBe(101);
    expect(answer.ws!.protocol).toBe('kairos');
    expect(answer.headers['sec-websocket-protocol']).toBe('kairos');
    expect(JSON.stringify(answer.headers)).not.toContain(TEST_TOKEN);
    await closeAndWait(answer.ws!);
  });

  it('refuses with 400 a client that offers only its bearer subprotocol (the node could select nothing else)', async () => {
    const answer = await handshake(node.url, { protocols: [`kairos.bearer.${TEST_TOKEN}`] });
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.headers)).not.toContain(TEST_TOKEN);
  });
});

describe('close codes', () => {
  it('closes with 1003 on a text frame', async () => {
    const ws = await open(node.url, TEST_TOKEN);
    const closed = closeOf(ws);
    ws.send('{"t": "hello", "versions": [1]}');
    expect(await closed).toEqual({ code: 1003, reason: 'frames are binary msgpack, not text' });
  });

  it('closes with 1002 after a hello with no version the node speaks', async () => {
    const ws = await open(node.url, TEST_TOKEN);
    const closed = closeOf(ws);
    ws.send(encodeMessage({ t: 'hello', versions: [999] }));
    expect(await closed).toEqual({ code: 1002, reason: 'unsupported version' });
  });
});

describe('connection limits', () => {
  it('refuses a tenant past its limit and the node past its own with 503 and Retry-After, and frees a slot on close', async () => {
    const a1 = await open(small.url, TEST_TOKEN);
    const a2 = await open(small.url, TEST_TOKEN);
    // Tenant a is at its 2; the node has room for one more.
    const tenantFull = await handshake(small.url, { token: TEST_TOKEN });
    expect(tenantFull.status).toBe(503);
    expect(Number(tenantFull.headers['retry-after'])).toBeGreaterThan(0);
    const b1 = await open(small.url, OTHER_TOKEN);
    // The node is at its 3; tenant b has room for one more.
    const nodeFull = await handshake(small.url, { token: OTHER_TOKEN });
    expect(nodeFull.status).toBe(503);
    expect(Number(nodeFull.headers['retry-after'])).toBeGreaterThan(0);
    // Logged on stderr, which may reach the test after the refusal does.
    await pollUntil('a log line for each refusal', async () => /connections_full.*"limit":"tenant_connections"(.|\n)*connections_full.*"limit":"connections"/.test(small.log()), 5_000);

    // A close frees a slot of the node and of its tenant: the node counts it once its side of
    // the socket has closed, which may be just after the client's.
    await closeAndWait(a1);
    const b2 = await pollUntil('a slot freed by the close', async () => {
      const answer = await handshake(small.url, { token: OTHER_TOKEN });
      return answer.status === 101 ? answer.ws : null;
    }, 5_000);
    await closeAndWait(a2);
    const a3 = await pollUntil('a slot freed by the close', async () => {
      const answer = await handshake(small.url, { token: TEST_TOKEN });
      return answer.status === 101 ? answer.ws : null;
    }, 5_000);
    // Full again, with tenant a at 1 and b at 2.
    expect((await handshake(small.url, { token: TEST_TOKEN })).status).toBe(503);
    await Promise.all([a3, b1, b2].map(closeAndWait));
  });
});
