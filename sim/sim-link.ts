// A simulated client connection (what a WebSocket is in production) between a simulated
// client or worker and one host's gateway. Like TCP it is ordered in each direction: each
// frame gets a sampled delay, but never overtakes the one before it. It fails as a whole: a
// disconnect drops whatever is in flight both ways, and a partition refuses new connections.

import type { ClientToNode, NodeToClient } from '../protocol/client-messages.ts';
import type { NodeToWorker, WorkerToNode } from '../protocol/worker-messages.ts';
import type { ClientConnection } from '../node/core/gateway/gateway.ts';
import type { SeededRandom } from '../node/core/random.ts';
import type { EventQueue } from './event-queue.ts';
import type { SimHost } from './sim-host.ts';
import type { Trace } from './trace.ts';

export type FromNode = NodeToClient | NodeToWorker;
export type ToNode = ClientToNode | WorkerToNode;

export interface NetworkFaults {
  delayMinMs: number;
  delayMaxMs: number;
  /** Hosts clients cannot reach right now (a partition between clients and those nodes). */
  unreachable: ReadonlySet<string>;
}

export interface LinkEnds {
  onMessage(message: FromNode): void;
  onClose(): void;
}

/** Watches what links carry into the nodes, for the checkers: each call happens on the host,
 * at the instant the gateway is told (a paused host hears things when it wakes; a crashed
 * incarnation never does). */
export interface LinkTap {
  /** `message` of `link` reaches its node's gateway now. */
  delivered(link: SimLink, message: ToNode): void;
  /** The close of `link` reaches its node's gateway now. */
  closeReached(link: SimLink): void;
  /** `link`'s node crashed (or left): no gateway will ever hear that it closed. */
  lostWithNode(link: SimLink): void;
  /** The node's gateway sends `message` on `link` now (whether or not the link is still open:
   * a lease sent to a dead connection is an attempt spent all the same). */
  sent?(link: SimLink, message: FromNode): void;
}

export class SimLink {
  open = true;
  private lastToNodeMs = 0;
  private lastToClientMs = 0;

  private constructor(
    readonly id: string,
    readonly host: SimHost,
    readonly tenant: string,
    private readonly queue: EventQueue,
    private readonly random: SeededRandom,
    private readonly faults: () => NetworkFaults,
    private readonly ends: LinkEnds,
    private readonly trace: Trace,
    private readonly tap: LinkTap | null,
  ) {}

  /** The worker id owners know this connection by (`<node>/<connection>`). */
  get workerId(): string {
    return `${this.host.id}/${this.id}`;
  }

  /** Connects to `host` as `tenant`; null when the host is down or unreachable. */
  static connect(
    id: string,
    host: SimHost,
    tenant: string,
    queue: EventQueue,
    random: SeededRandom,
    faults: () => NetworkFaults,
    ends: LinkEnds,
    trace: Trace,
    tap: LinkTap | null = null,
  ): SimLink | null {
    if (!host.alive || faults().unreachable.has(host.id)) return null;
    const link = new SimLink(id, host, tenant, queue, random, faults, ends, trace, tap);
    const conn: ClientConnection = {
      id: link.id,
      tenant,
      send: (message) => link.deliverToClient(message),
      close: () => link.disconnect(),
    };
    host.whenCrashed(() => {
      tap?.lostWithNode(link);
      link.disconnect();
    });
    host.run(() => host.node!.gateway.tell({ kind: 'opened', conn }));
    return link;
  }

  send(message: ToNode): void {
    if (!this.open) return;
    const at = this.arrival('toNode');
    this.queue.schedule(at - this.queue.nowMs, () => {
      if (!this.open) return;
      this.trace.add(`>${this.host.id}:${message.t}`);
      this.host.run(() => {
        this.tap?.delivered(this, message);
        this.host.node!.gateway.tell({ kind: 'request', connId: this.id, msg: message });
      });
    });
  }

  /** Both ends see the connection drop; frames in flight are lost. */
  disconnect(): void {
    if (!this.open) return;
    this.open = false;
    this.host.run(() => {
      this.tap?.closeReached(this);
      this.host.node!.gateway.tell({ kind: 'closed', connId: this.id });
    });
    this.queue.schedule(0, () => this.ends.onClose());
  }

  private deliverToClient(message: FromNode): void {
    this.tap?.sent?.(this, message);
    if (!this.open) return;
    const at = this.arrival('toClient');
    this.queue.schedule(at - this.queue.nowMs, () => {
      if (!this.open) return;
      this.trace.add(`<${this.host.id}:${message.t}`);
      this.ends.onMessage(message);
    });
  }

  /** When a frame sent now arrives: a sampled delay, but in order behind the previous one. */
  private arrival(direction: 'toNode' | 'toClient'): number {
    const f = this.faults();
    const at = this.queue.nowMs + f.delayMinMs + this.random.next() * (f.delayMaxMs - f.delayMinMs);
    if (direction === 'toNode') {
      this.lastToNodeMs = Math.max(this.lastToNodeMs, at);
      return this.lastToNodeMs;
    }
    this.lastToClientMs = Math.max(this.lastToClientMs, at);
    return this.lastToClientMs;
  }
}
