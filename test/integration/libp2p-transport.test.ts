// The cluster transport on real sockets, nodes in this process: point-to-point order under
// load, gossip, the cluster key keeping outsiders out (and its file format), hostile frames,
// and peer events.

import { multiaddr } from '@multiformats/multiaddr';
import * as lp from 'it-length-prefixed';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  generateClusterKey,
  loadClusterKey,
  parseClusterKey,
  requireClusterKey,
  writeClusterKeyFile,
} from '../../node/adapters/libp2p/cluster-key.ts';
import { PEER_PROTOCOL } from '../../node/adapters/libp2p/libp2p-network.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import type { MemberHeartbeat, PeerMessage } from '../../protocol/peer-messages.ts';
import { decodeFromPeer } from '../../protocol/validate.ts';
import { TestCluster, connected, waitFor, type TestNode } from '../support/libp2p-harness.ts';

const TOPIC = 'kairos/members';
const key = generateClusterKey();
const cluster = new TestCluster();

afterEach(() => cluster.stopAll());

/** Two nodes with the cluster key, the second joined through the first as its seed. */
async function pair(): Promise<[TestNode, TestNode]> {
  const a = await cluster.node(key);
  const b = await cluster.node(key, a.net.addresses);
  await waitFor('a and b connected', () => connected(a, b.net.peerId) && connected(b, a.net.peerId));
  return [a, b];
}

function heartbeat(node: TestNode): MemberHeartbeat {
  return {
    t: 'member_heartbeat',
    node: node.net.peerId,
    incarnation: 1,
    state: 'alive',
    addrs: node.net.addresses,
    clientUrl: 'ws://127.0.0.1:1',
    load: { shards: 0, backlog: [] },
  };
}

async function gossipReady(publisher: TestNode, subscribers: TestNode[]): Promise<void> {
  for (const node of [publisher, ...subscribers]) node.net.subscribe(TOPIC);
  await waitFor('subscriptions known', () =>
    subscribers.every((s) => publisher.net.subscribers(TOPIC).includes(s.net.peerId)),
  );
}

/** Test traffic is `handoff_done` messages: shard 1 or 2 for a request, REPLY_SHARD for its
 * reply, the number in `releasedEpoch`. */
const REPLY_SHARD = 3;

function request(shard: number, n: number): PeerMessage {
  return { t: 'handoff_done', shard, releasedEpoch: n };
}

/** The numbers carried by the requests or replies that `node` received from `from`. */
function numbersFrom(node: TestNode, from: TestNode, kind: 'request' | 'reply'): number[] {
  return node.inbox.flatMap(({ from: sender, message }) => {
    if (sender !== from.net.peerId || message.t !== 'handoff_done') return [];
    return (message.shard === REPLY_SHARD) === (kind === 'reply') ? [message.releasedEpoch] : [];
  });
}

describe('point to point', () => {
  it('delivers thousands of pipelined messages each way, in order', async () => {
    const [a, b] = await pair();
    const count = 5000;
    // b answers each of a's requests from its receive path while sending its own stream to a.
    b.onMessage = (from, message) => {
      if (message.t === 'handoff_done' && message.shard !== REPLY_SHARD) b.net.send(from, request(REPLY_SHARD, message.releasedEpoch));
    };
    // Bursts in separate turns of the event loop: several coalesced writes per link,
    // interleaved with the other direction's.
    for (let burst = 0; burst < count; burst += 500) {
      for (let i = burst; i < burst + 500; i++) {
        a.net.send(b.net.peerId, request(1, i));
        b.net.send(a.net.peerId, request(2, i));
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const expected = Array.from({ length: count }, (_, i) => i);
    await waitFor(
      'all messages and replies',
      () => numbersFrom(a, b, 'reply').length === count && numbersFrom(a, b, 'request').length === count,
      20_000,
      [a, b],
    );
    expect(numbersFrom(b, a, 'request')).toEqual(expected);
    expect(numbersFrom(a, b, 'request')).toEqual(expected);
    expect(numbersFrom(a, b, 'reply')).toEqual(expected);
  });

  it('delivers a message to the node itself', async () => {
    const a = await cluster.node(key);
    a.net.send(a.net.peerId, { t: 'handoff_done', shard: 3, releasedEpoch: 4 });
    await waitFor('self delivery', () => a.inbox.length === 1);
    expect(a.inbox[0]).toEqual({ from: a.net.peerId, message: { t: 'handoff_done', shard: 3, releasedEpoch: 4 } });
  });

  it('reopens a stream the peer reset', async () => {
    const a = await cluster.node(key);
    const raw = await cluster.rawNode(key);
    const received: PeerMessage[] = [];
    let streams = 0;
    // The peer reads one frame from its first stream, then resets that stream.
    await raw.handle(PEER_PROTOCOL, async ({ stream }) => {
      const first = ++streams === 1;
      for await (const frame of lp.decode(stream.source)) {
        const decoded = decodeFromPeer(frame.subarray());
        if (decoded.ok) received.push(decoded.msg);
        if (first) return stream.abort(new Error('reset by the test'));
      }
    });
    const rawId = raw.peerId.toString();
    await a.net.dial(raw.getMultiaddrs()[0]!.toString());
    a.net.send(rawId, request(0, 1));
    await waitFor('the first stream reset', () => a.logs.includes('peer_stream_ended'));
    a.net.send(rawId, request(0, 2));
    await waitFor('a message on the second stream', () => received.length === 2);
    expect(received.map((m) => m.t === 'handoff_done' && m.releasedEpoch)).toEqual([1, 2]);
    expect(streams).toBe(2);
  });

  it('drops invalid frames and keeps the receiver serving', async () => {
    const a = await cluster.node(key);
    const raw = await cluster.rawNode(key);
    const target = multiaddr(a.net.addresses[0]!);
    const valid = (shard: number) => lp.encode.single(encodeMessage({ t: 'handoff_done', shard, releasedEpoch: 1 }));

    const frames = await raw.dialProtocol(target, PEER_PROTOCOL);
    await frames.sink([
      lp.encode.single(new Uint8Array(0)),
      lp.encode.single(new Uint8Array([0xc1, 0xff, 0x00])), // not msgpack
      lp.encode.single(encodeMessage({ t: 'no_such_message' })),
      lp.encode.single(encodeMessage({ t: 'handoff_done', shard: -1, releasedEpoch: 1 })), // out of range
      valid(1),
    ]);
    await waitFor('the valid frame', () => a.inbox.length === 1);
    expect(a.logs.filter((event) => event === 'peer_message_dropped')).toHaveLength(4);

    // A length prefix past the frame limit: the boundaries are lost, so the stream is reset.
    const oversized = await raw.dialProtocol(target, PEER_PROTOCOL);
    await oversized.sink([lp.encode.single(new Uint8Array(2 * 1024 * 1024))]).catch(() => {});
    await waitFor('the oversized stream reset', () => a.logs.includes('peer_stream_reset'));

    const after = await raw.dialProtocol(target, PEER_PROTOCOL);
    await after.sink([valid(2)]);
    await waitFor('the frame after the reset', () => a.inbox.length === 2);
    expect(a.inbox.map(({ from, message }) => [from, message])).toEqual([
      [raw.peerId.toString(), { t: 'handoff_done', shard: 1, releasedEpoch: 1 }],
      [raw.peerId.toString(), { t: 'handoff_done', shard: 2, releasedEpoch: 1 }],
    ]);
  });
});

describe('gossip', () => {
  it('reaches subscribers, identical messages included', async () => {
    const [a, b] = await pair();
    await gossipReady(a, [b]);
    // Twice the same heartbeat: unsigned gossip would drop the second as a duplicate without
    // the envelope's unique id.
    a.net.publish(TOPIC, heartbeat(a));
    a.net.publish(TOPIC, heartbeat(a));
    await waitFor('both heartbeats', () => b.inbox.length === 2);
    expect(b.inbox).toEqual([
      { from: a.net.peerId, message: heartbeat(a) },
      { from: a.net.peerId, message: heartbeat(a) },
    ]);
    expect(a.inbox).toEqual([]);
  });

  it('lets a node send to a node it has only heard of by heartbeat', async () => {
    const seed = await cluster.node(key);
    const b = await cluster.node(key, seed.net.addresses);
    const e = await cluster.node(key, seed.net.addresses);
    await waitFor('both joined', () => connected(seed, b.net.peerId) && connected(seed, e.net.peerId));
    await gossipReady(e, [seed]);
    await gossipReady(seed, [b]);
    e.net.publish(TOPIC, heartbeat(e));
    await waitFor('the heartbeat relayed to b', () => b.inbox.length === 1);
    expect(b.inbox[0]?.from).toBe(seed.net.peerId);

    b.net.send(e.net.peerId, request(5, 6));
    await waitFor('the message b sent by the learned address', () => e.inbox.some(({ from }) => from === b.net.peerId));
  });
});

describe('cluster key', () => {
  it('keeps out a node with another key or none, and its gossip with it', async () => {
    const [a, b] = await pair();
    const other = await cluster.node(generateClusterKey());
    const open = await cluster.node(null);
    // Without the key, noise reads noise: a node with none fails at once, one with another key
    // waits for a length that never comes, until the dial's 3 s timeout.
    const started = Date.now();
    await Promise.all([
      expect(other.net.dial(a.net.addresses[0]!)).rejects.toThrow(),
      expect(open.net.dial(a.net.addresses[0]!)).rejects.toThrow(),
      expect(a.net.dial(other.net.addresses[0]!)).rejects.toThrow(),
    ]);
    expect(Date.now() - started).toBeLessThan(5000);

    other.net.subscribe(TOPIC);
    await gossipReady(a, [b]);
    a.net.publish(TOPIC, heartbeat(a));
    await waitFor('the member got the heartbeat', () => b.inbox.length === 1);
    // The mesh heartbeat is 500 ms: two rounds would have reached a connected outsider.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(other.inbox).toEqual([]);
    expect(a.net.subscribers(TOPIC)).toEqual([b.net.peerId]);
    const outsiders = [other.net.peerId, open.net.peerId];
    expect(a.events.filter((e) => outsiders.includes(e.peer))).toEqual([]);
    expect(other.events).toEqual([]);
  });
});

describe('cluster key file', () => {
  const hex = 'ab'.repeat(32);
  const canonical = `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`;
  const text = (bytes: Uint8Array | null) => (bytes === null ? null : new TextDecoder().decode(bytes));

  it('reads the swarm key format and bare hex, and refuses anything else', () => {
    expect(text(parseClusterKey(`/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex.toUpperCase()}`, 'x'))).toBe(canonical);
    expect(text(parseClusterKey(` ${hex}\n`, 'x'))).toBe(canonical);
    expect(() => parseClusterKey(hex.slice(2), 'KAIROS_CLUSTER_KEY')).toThrow('KAIROS_CLUSTER_KEY: the key must be 64 hex digits');
    expect(() => parseClusterKey(`/key/swarm/psk/2.0.0/\n/base16/\n${hex}`, 'f')).toThrow('first line');
    expect(() => parseClusterKey(`/key/swarm/psk/1.0.0/\n/base64/\n${hex}`, 'f')).toThrow('second line');
    expect(() => parseClusterKey('/key/swarm/psk/1.0.0/\n/base16/', 'f')).toThrow('expected 3 lines');
  });

  it('writes a private key file once and loads it from a path or the environment', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kairos-key-'));
    try {
      const path = join(dir, 'cluster.key');
      await writeClusterKeyFile(path);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      await expect(writeClusterKeyFile(path)).rejects.toThrow('never overwritten');
      const written = await readFile(path, 'utf8');
      expect(text(await loadClusterKey({ file: path }))).toBe(written);
      expect(text(await loadClusterKey({ env: { KAIROS_CLUSTER_KEY_FILE: path } }))).toBe(written);
      expect(text(await loadClusterKey({ env: { KAIROS_CLUSTER_KEY: hex } }))).toBe(canonical);
      expect(await loadClusterKey({ env: {} })).toBeNull();
      await expect(loadClusterKey({ env: { KAIROS_CLUSTER_KEY_FILE: join(dir, 'none') } })).rejects.toThrow(
        'from KAIROS_CLUSTER_KEY_FILE): no such file',
      );
      await expect(loadClusterKey({ env: { KAIROS_CLUSTER_KEY_FILE: path, KAIROS_CLUSTER_KEY: hex } })).rejects.toThrow(
        'not both',
      );
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('is required once a node joins others or listens beyond loopback, unless for development', () => {
    const local = ['/ip4/127.0.0.1/tcp/0'];
    const seed = ['/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWBDk9WMPvZxhQTxzQyhNbWDMWahT3AKBhVPFbUZEXPgCF'];
    expect(() => requireClusterKey({ key: null, listen: local, seeds: [], development: false })).not.toThrow();
    expect(() => requireClusterKey({ key: null, listen: local, seeds: seed, development: false })).toThrow('kairos keygen');
    expect(() => requireClusterKey({ key: null, listen: ['/ip4/0.0.0.0/tcp/4001'], seeds: [], development: false })).toThrow();
    expect(() => requireClusterKey({ key: null, listen: local, seeds: seed, development: true })).not.toThrow();
    expect(() => requireClusterKey({ key, listen: ['/ip4/0.0.0.0/tcp/4001'], seeds: seed, development: false })).not.toThrow();
  });
});

describe('peer events', () => {
  it('reports a stopped node disconnected, and drops what is sent to it', async () => {
    const [a, b] = await pair();
    await b.net.stop();
    await waitFor('b reported disconnected', () =>
      a.events.some((e) => e.peer === b.net.peerId && e.event === 'disconnected'),
    );
    a.net.send(b.net.peerId, request(0, 0));
    await waitFor('the send dropped', () => a.logs.includes('peer_frames_dropped'));
  });
});
