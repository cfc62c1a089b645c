// In-process cluster transports for the libp2p integration test: each node records what it
// receives, its peer events and its log lines, and the test waits on those records.

import { createLibp2pNode, type Libp2pNode } from '../../node/adapters/libp2p/libp2p-node.ts';
import {
  startLibp2pNetwork,
  type Libp2pNetwork,
  type PeerEvent,
} from '../../node/adapters/libp2p/libp2p-network.ts';
import type { PeerMessage } from '../../protocol/peer-messages.ts';

export interface TestNode {
  net: Libp2pNetwork;
  inbox: Array<{ from: string; message: PeerMessage }>;
  events: Array<{ peer: string; event: PeerEvent }>;
  logs: string[];
  /** Called after a message is recorded, so a test can answer it from the receive path. */
  onMessage: (from: string, message: PeerMessage) => void;
}

/** Starts nodes and stops every one of them at the end of a test. */
export class TestCluster {
  private readonly stops: Array<() => Promise<void>> = [];

  async node(clusterKey: Uint8Array | null, seeds: string[] = []): Promise<TestNode> {
    const inbox: TestNode['inbox'] = [];
    const events: TestNode['events'] = [];
    const logs: string[] = [];
    const net = await startLibp2pNetwork({
      clusterKey,
      seeds,
      onMessage: (from, message) => {
        inbox.push({ from, message });
        node.onMessage(from, message);
      },
      onPeerEvent: (peer, event) => events.push({ peer, event }),
      logger: { log: (_level, event) => logs.push(event) },
    });
    const node: TestNode = { net, inbox, events, logs, onMessage: () => {} };
    this.stops.push(() => net.stop());
    return node;
  }

  /** A bare libp2p node with the transport's configuration, to play a misbehaving peer. */
  async rawNode(clusterKey: Uint8Array | null): Promise<Libp2pNode> {
    const node = await createLibp2pNode({ listen: ['/ip4/127.0.0.1/tcp/0'], clusterKey });
    this.stops.push(async () => void (await node.stop()));
    return node;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.stops.splice(0).map((stop) => stop()));
  }
}

/** Resolves once `condition` holds; fails after `timeoutMs` naming what it waited for and what
 * the given nodes saw (their peer events and transport log), which is what explains a timeout. */
export async function waitFor(
  what: string,
  condition: () => boolean,
  timeoutMs = 5000,
  nodes: TestNode[] = [],
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      const seen = nodes.map((n) => `\n${n.net.peerId}: ${JSON.stringify({ events: n.events, logs: n.logs })}`);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${seen.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function connected(node: TestNode, peer: string): boolean {
  return node.events.some((e) => e.peer === peer && e.event === 'connected');
}
