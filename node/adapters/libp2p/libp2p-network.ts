// The cluster transport: the environment's `Network` bound to libp2p. The simulator's network
// replaces it in tests; nothing above this file knows libp2p.
//
// Node ids are libp2p peer ids, authenticated by noise on every connection. Point-to-point
// messages travel on one long-lived stream per peer (peer-link.ts), gossip on gossipsub
// (gossip.ts). Every incoming message is decoded and validated like any frame from outside; an
// invalid one is logged at debug level and dropped. Delivery is at most once in both cases:
// actors must tolerate loss, and do (protocol/peer-messages.ts).
//
// Nodes find each other through seeds and heartbeats: a node dials its seeds (and again while
// it is not connected to them), and learns every other node's addresses from the
// `member_heartbeat` it gossips, so `send` can reach a node it has never been connected to.

import './polyfill.ts';
import type { PrivateKey, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import * as lp from 'it-length-prefixed';
import { encodeMessage } from '../../../protocol/codec.ts';
import { CODEC_LIMITS } from '../../../protocol/limits.ts';
import type { MemberHeartbeat, PeerMessage } from '../../../protocol/peer-messages.ts';
import { decodeFromPeer } from '../../../protocol/validate.ts';
import type { Logger, Network } from '../../core/env.ts';
import { gossipSealer, openGossip } from './gossip.ts';
import { createLibp2pNode, type Libp2pNode } from './libp2p-node.ts';
import { PeerLink } from './peer-link.ts';

export const PEER_PROTOCOL = '/kairos/peer/1.0.0';

/** A dial gives up after this long. On a LAN a connection with its handshakes takes
 * milliseconds; libp2p's own default (10 s) would hold a dead peer's frames that long. */
const DIAL_TIMEOUT_MS = 3000;
/** How often seeds that are not connected are dialled again, so a node that started before its
 * seeds, or lost them, finds the cluster. */
const SEED_REDIAL_MS = 2000;
/** Inbound streams on the peer protocol per connection. Peers open one; a few more cover a
 * stream being reopened while the old one is still closing. */
const INBOUND_STREAMS_MAX = 8;
const PROTOCOL_P2P = 421;

export type PeerEvent = 'connected' | 'disconnected';

/** A listen or seed address the transport cannot use. */
export class TransportConfigError extends Error {
  override name = 'TransportConfigError';
}

export interface Libp2pNetworkOptions {
  /** The node's identity; its peer id is the node id. Pass a persisted key so the node keeps
   * its id across restarts; a new one (a new node id) otherwise. */
  privateKey?: PrivateKey;
  /** Multiaddrs to listen on. Default: loopback, a free port. */
  listen?: string[];
  /** Multiaddrs of nodes to join, each with its /p2p/<peer id> (which authenticates it). */
  seeds?: string[];
  /** Swarm key bytes from cluster-key.ts; null runs an open network, for development only. */
  clusterKey: Uint8Array | null;
  /** Every valid message from another node, by stream or by gossip. For gossip `from` is the
   * neighbour that relayed it, not necessarily its author (gossip.ts). Must not throw: an
   * exception here is a bug and crashes the process. */
  onMessage(from: string, message: PeerMessage): void;
  /** Connection changes. Hints only: a partition closes no connection, so the failure detector
   * must not depend on them. */
  onPeerEvent?(peer: string, event: PeerEvent): void;
  logger?: Logger;
}

export interface Libp2pNetwork extends Network {
  /** This node's id. */
  readonly peerId: string;
  /** Where others reach this node: full multiaddrs with /p2p/<peer id>. */
  readonly addresses: string[];
  /** Queues a message for `toNode`. Never blocks; dropped if the node cannot be reached. A
   * message to this node itself is delivered locally, on a later turn. */
  send(toNode: string, message: PeerMessage): void;
  /** Gossips a message. A publish made before any subscriber of `topic` is known is dropped:
   * check `subscribers` first where the first message matters. This node does not receive its
   * own publishes. */
  publish(topic: string, message: PeerMessage): void;
  subscribe(topic: string): void;
  /** Peers known to subscribe to `topic`. */
  subscribers(topic: string): string[];
  /** Connects to a multiaddr; resolves to the peer id that answered. */
  dial(addr: string): Promise<string>;
  stop(): Promise<void>;
}

const silentLogger: Logger = { log() {} };

export async function startLibp2pNetwork(options: Libp2pNetworkOptions): Promise<Libp2pNetwork> {
  const logger = options.logger ?? silentLogger;
  const seeds = (options.seeds ?? []).map(seedAddress);
  const listen = options.listen ?? ['/ip4/127.0.0.1/tcp/0'];
  for (const text of listen) parseAddress(text, 'listen address');
  const node = await createLibp2pNode({ listen, clusterKey: options.clusterKey, privateKey: options.privateKey }).catch((error: unknown) => {
    throw listenFailure(error);
  });
  const self = node.peerId.toString();
  const links = new Map<string, PeerLink>();
  const subscribed = new Set<string>();
  const heardAddresses = new Map<string, string>();
  const seal = gossipSealer();

  function deliver(from: string, bytes: Uint8Array, via: string): void {
    const decoded = decodeFromPeer(bytes);
    if (!decoded.ok) {
      logger.log('debug', 'peer_message_dropped', { from, via, code: decoded.error.code, reason: decoded.error.message });
      return;
    }
    if (decoded.msg.t === 'member_heartbeat') learnAddresses(node, decoded.msg, heardAddresses, logger);
    options.onMessage(from, decoded.msg);
  }

  /** Reads one inbound stream to its end. A framing error (a length prefix past the frame limit,
   * a truncated frame) loses the frame boundaries, so the stream is reset; the peer reopens it.
   * This side never writes, but keeps its write half open while it reads: the peer takes the
   * end of its read half to mean the stream is gone (peer-link.ts). */
  async function readStream(stream: Stream, from: string): Promise<void> {
    const frames = lp.decode(stream.source, { maxDataLength: CODEC_LIMITS.frameBytesMax })[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<{ subarray(): Uint8Array }>;
      try {
        next = await frames.next();
      } catch (error) {
        logger.log('debug', 'peer_stream_reset', { from, error: String(error) });
        stream.abort(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (next.done === true) return void stream.close().catch(() => {});
      // Outside the try: an exception from onMessage is a bug, not a bad frame.
      deliver(from, next.value.subarray(), 'stream');
    }
  }

  await node.handle(PEER_PROTOCOL, ({ stream, connection }) => void readStream(stream, connection.remotePeer.toString()), {
    maxInboundStreams: INBOUND_STREAMS_MAX,
  });
  node.addEventListener('peer:connect', (event) => {
    const peer = event.detail.toString();
    links.get(peer)?.reachable();
    options.onPeerEvent?.(peer, 'connected');
  });
  node.addEventListener('peer:disconnect', (event) => options.onPeerEvent?.(event.detail.toString(), 'disconnected'));

  const pubsub = node.services.pubsub;
  pubsub.addEventListener('gossipsub:message', (event) => {
    const { msg, propagationSource } = event.detail;
    if (!subscribed.has(msg.topic)) return;
    const body = openGossip(msg.data);
    const from = propagationSource.toString();
    if (body === null) return logger.log('debug', 'peer_message_dropped', { from, via: msg.topic, reason: 'no envelope' });
    deliver(from, body, msg.topic);
  });

  const seedsDialling = new Set<string>();
  function dialSeeds(): void {
    for (const seed of seeds) {
      if (seed.peer === self || seedsDialling.has(seed.peer)) continue;
      if (node.getConnections(peerIdFromString(seed.peer)).length > 0) continue;
      seedsDialling.add(seed.peer);
      node
        .dial(seed.addr, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        .catch((error: unknown) => logger.log('debug', 'seed_dial_failed', { seed: seed.addr.toString(), error: String(error) }))
        .finally(() => seedsDialling.delete(seed.peer));
    }
  }
  dialSeeds();
  const seedTimer = setInterval(dialSeeds, SEED_REDIAL_MS);
  seedTimer.unref();

  function linkTo(peer: string): PeerLink | null {
    const existing = links.get(peer);
    if (existing !== undefined) return existing;
    let peerId;
    try {
      peerId = peerIdFromString(peer);
    } catch {
      logger.log('debug', 'peer_send_dropped', { peer, reason: 'not a peer id' });
      return null;
    }
    const open = () => node.dialProtocol(peerId, PEER_PROTOCOL, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) });
    const link = new PeerLink(peer, open, logger);
    links.set(peer, link);
    return link;
  }

  return {
    peerId: self,
    get addresses() {
      return node.getMultiaddrs().map(String);
    },
    send(toNode, message) {
      const frame = encodeMessage(message);
      if (frame.byteLength > CODEC_LIMITS.frameBytesMax) {
        // The receiver would reset the stream and lose the frames queued behind this one.
        logger.log('warn', 'peer_message_too_large', { peer: toNode, t: message.t, bytes: frame.byteLength });
        return;
      }
      if (toNode === self) return void setImmediate(() => deliver(self, frame, 'self'));
      linkTo(toNode)?.send(frame);
    },
    publish(topic, message) {
      pubsub
        .publish(topic, seal(encodeMessage(message)))
        .catch((error: unknown) => logger.log('debug', 'gossip_publish_failed', { topic, error: String(error) }));
    },
    subscribe(topic) {
      subscribed.add(topic);
      pubsub.subscribe(topic);
    },
    subscribers(topic) {
      return pubsub.getSubscribers(topic).map(String);
    },
    async dial(addr) {
      const connection = await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) });
      return connection.remotePeer.toString();
    },
    async stop() {
      clearInterval(seedTimer);
      for (const link of links.values()) link.close();
      await node.stop();
    },
  };
}

function parseAddress(text: string, what: string): Multiaddr {
  try {
    return multiaddr(text);
  } catch (error) {
    throw new TransportConfigError(`${what} ${text} is not a multiaddr: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** libp2p's error names each address it could not listen on in lines after a first one that
 * suggests a setting Kairos does not expose; the operator needs those lines, in one. */
function listenFailure(error: unknown): unknown {
  if (!(error instanceof Error) || error.name !== 'UnsupportedListenAddressesError') return error;
  const reasons = error.message.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('/'));
  if (reasons.length === 0) return error;
  return new TransportConfigError(`cannot listen on ${reasons.map((reason) => reason.replace(': Error: ', ': ')).join('; ')}`);
}

function seedAddress(text: string): { addr: Multiaddr; peer: string } {
  const addr = parseAddress(text, 'seed');
  const peer = addr.getPeerId();
  if (peer === null) throw new TransportConfigError(`seed ${text} has no /p2p/<peer id>: the id is how a node knows it reached its seed`);
  return { addr, peer };
}

/** Heartbeats carry their sender's addresses: put them in the peer store so `send` can dial a
 * node this one has only heard of. Unsigned gossip cannot prove the addresses are the node's,
 * but noise checks the peer id on every dial, so a wrong address fails the dial and cannot
 * impersonate anyone. The peer store is written only when a node's addresses change. */
function learnAddresses(node: Libp2pNode, heartbeat: MemberHeartbeat, heard: Map<string, string>, logger: Logger): void {
  if (heartbeat.node === node.peerId.toString()) return;
  const key = heartbeat.addrs.join(' ');
  if (heard.get(heartbeat.node) === key) return;
  heard.set(heartbeat.node, key);
  try {
    const peerId = peerIdFromString(heartbeat.node);
    const multiaddrs = heartbeat.addrs
      .map((text) => multiaddr(text))
      .filter((addr) => (addr.getPeerId() ?? heartbeat.node) === heartbeat.node)
      .map((addr) => addr.decapsulateCode(PROTOCOL_P2P));
    node.peerStore.merge(peerId, { multiaddrs }).catch((error: unknown) => {
      logger.log('debug', 'peer_addresses_rejected', { node: heartbeat.node, error: String(error) });
    });
  } catch (error) {
    logger.log('debug', 'peer_addresses_rejected', { node: heartbeat.node, error: String(error) });
  }
}
