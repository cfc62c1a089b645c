// Gossip settings and the envelope around each gossip message.
//
// Messages are unsigned (StrictNoSign): signing was 2.5-4x slower (docs/STACK.md), and it buys
// nothing inside a private network whose members all hold the cluster key. Unsigned gossip
// names no author, so a message's sender is only the neighbour that relayed it, and any member
// can publish anything; what a message claims about its author (`member_heartbeat.node`) is
// only as trustworthy as the cluster key is secret.
//
// Without a signature gossipsub identifies a message by a hash of its data, and drops a second
// message with the same bytes as a duplicate for two minutes (its seen cache). Two identical
// heartbeats (same load, same incarnation) would then look like one, and the sender would be
// suspected. So every message carries a 16-byte header, unique per message: 8 random bytes
// chosen per process and a counter. The header is the message id. The random half keeps the
// ids of a restarted node apart from those its previous run left in its peers' seen caches.

import { gossipsub, type GossipsubOpts } from '@chainsafe/libp2p-gossipsub';
import type { Message } from '@libp2p/interface';
import { randomBytes } from 'node:crypto';

const HEADER_BYTES = 16;

/** Small-cluster mesh settings measured in docs/STACK.md: the mesh forms in about 0.4 s. */
const GOSSIP_OPTIONS: Partial<GossipsubOpts> = {
  D: 2,
  Dlo: 1,
  Dhi: 4,
  Dout: 1,
  heartbeatInterval: 500,
  // Sends each publish to every known subscriber, not only mesh peers, so it does not wait for
  // the mesh to form.
  floodPublish: true,
  globalSignaturePolicy: 'StrictNoSign',
  msgIdFn: (message: Message) => message.data.slice(0, HEADER_BYTES),
  // A publish with no known subscriber is dropped quietly (it is not an error for a node alone
  // or still joining) rather than thrown as NoPeersSubscribedToTopic.
  allowPublishToZeroTopicPeers: true,
};

export function gossipService() {
  return gossipsub(GOSSIP_OPTIONS);
}

/** Makes the envelopes of one process. */
export function gossipSealer(): (body: Uint8Array) => Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  header.set(randomBytes(HEADER_BYTES / 2));
  const view = new DataView(header.buffer);
  let counter = 0n;
  return (body) => {
    view.setBigUint64(HEADER_BYTES / 2, counter++);
    const data = new Uint8Array(HEADER_BYTES + body.byteLength);
    data.set(header);
    data.set(body, HEADER_BYTES);
    return data;
  };
}

/** The message inside an envelope, or null when the data is too short to hold one. */
export function openGossip(data: Uint8Array): Uint8Array | null {
  return data.byteLength > HEADER_BYTES ? data.subarray(HEADER_BYTES) : null;
}
