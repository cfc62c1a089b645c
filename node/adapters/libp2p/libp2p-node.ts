// One libp2p node configured the Kairos way: TCP, the cluster key's protector, noise, yamux,
// identify (gossipsub needs it) and gossipsub. The transport (libp2p-network.ts) builds on it;
// tests use it bare to act as a misbehaving peer.

import './polyfill.ts';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import type { PrivateKey } from '@libp2p/interface';
import { preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import { gossipService } from './gossip.ts';

export interface Libp2pNodeOptions {
  /** Multiaddrs to listen on. */
  listen: string[];
  /** Swarm key bytes (cluster-key.ts), or null for an open network (development only). */
  clusterKey: Uint8Array | null;
  /** The node's identity; its peer id is the node id. A new one when absent. */
  privateKey?: PrivateKey;
}

export type Libp2pNode = Awaited<ReturnType<typeof createLibp2pNode>>;

export function createLibp2pNode(options: Libp2pNodeOptions) {
  return createLibp2p({
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionProtector: options.clusterKey === null ? undefined : preSharedKey({ psk: options.clusterKey }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // A hung peer keeps its TCP connection open; with the default 10 s ping it is noticed after
    // about 14.5 s, with a 1 s ping and a 0.5-2 s timeout after 0.5-1.1 s (docs/STACK.md). The
    // timeout's floor is 1 s here, not 0.5 s: on loopback the adaptive timeout sits at its floor,
    // and a node whose event loop stalled for half a second (CPU contention, a long GC) lost its
    // healthy connections and the frames in flight on them (the transport test failed 6-10 runs
    // in 20 with four test processes on two cores; 0 in 20 with a 1 s or 1.5 s floor). With this
    // floor a SIGSTOPped peer was noticed after 1.1-1.8 s. Only a hint either way: the failure
    // detector must not rely on connections, since a partition closes none.
    connectionMonitor: { pingInterval: 1000, pingTimeout: { minTimeout: 1000, maxTimeout: 2000 } },
    services: { identify: identify(), pubsub: gossipService() },
  });
}
