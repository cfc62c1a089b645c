// The simulated network between nodes: gossip and point-to-point messages with sampled delays,
// drops, duplicates and reordering (each message travels on its own, so later ones may
// overtake), and partitions that may be asymmetric: a blocked (from → to) pair loses
// everything sent that way while the other direction still flows. Every message is encoded
// and decoded with the real codec and validated, as libp2p's binding does: a message the node
// builds wrong fails the run instead of passing in memory.

import type { Network } from '../node/core/env.ts';
import type { SeededRandom } from '../node/core/random.ts';
import { encodeMessage } from '../protocol/codec.ts';
import type { PeerMessage } from '../protocol/peer-messages.ts';
import { decodeFromPeer } from '../protocol/validate.ts';
import type { EventQueue } from './event-queue.ts';
import type { SimHost } from './sim-host.ts';
import type { Trace } from './trace.ts';

export interface NodeNetworkFaults {
  delayMinMs: number;
  delayMaxMs: number;
  dropRate: number;
  duplicateRate: number;
}

export class SimNodeNetwork {
  private readonly hosts = new Map<string, SimHost>();
  /** `from>to` pairs whose messages are lost. */
  private readonly blocked = new Set<string>();

  constructor(
    private readonly queue: EventQueue,
    private readonly random: SeededRandom,
    private readonly faults: () => NodeNetworkFaults,
    private readonly trace: Trace,
  ) {}

  add(host: SimHost): void {
    this.hosts.set(host.id, host);
  }

  /** The Network of one host. */
  networkOf(from: string): Network {
    return {
      publish: (_topic, message) => {
        for (const to of this.hosts.keys()) if (to !== from) this.deliver(from, to, message as PeerMessage);
      },
      send: (to, message) => this.deliver(from, to, message as PeerMessage),
    };
  }

  block(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
  }

  unblock(from: string, to: string): void {
    this.blocked.delete(`${from}>${to}`);
  }

  /** Cuts `node` off from every other node, both ways. */
  isolate(node: string): void {
    for (const other of this.hosts.keys()) {
      if (other === node) continue;
      this.block(node, other);
      this.block(other, node);
    }
  }

  healAll(): void {
    this.blocked.clear();
  }

  get links(): Array<[string, string]> {
    const ids = [...this.hosts.keys()];
    return ids.flatMap((a) => ids.filter((b) => b !== a).map((b): [string, string] => [a, b]));
  }

  private deliver(from: string, to: string, sent: PeerMessage): void {
    const decoded = decodeFromPeer(encodeMessage(sent));
    if (!decoded.ok) throw new Error(`${from} sent an invalid ${sent.t}: ${decoded.error.message}`);
    const message = decoded.msg;
    const f = this.faults();
    if (this.blocked.has(`${from}>${to}`) || this.random.next() < f.dropRate) return;
    const copies = this.random.next() < f.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.queue.schedule(f.delayMinMs + this.random.next() * (f.delayMaxMs - f.delayMinMs), () => {
        const host = this.hosts.get(to);
        if (host === undefined || !host.alive) return;
        this.trace.add(`${from}~>${to}:${message.t}`);
        host.run(() => host.node!.deliverPeer(from, message));
      });
    }
  }
}
