// Membership: who is in the cluster, as this node sees it. Every node gossips a heartbeat (its
// incarnation, state and client URL) on a topic; a failure detector on this node's own
// monotonic clock marks a peer suspect when its heartbeats stop, and dead later. Connection
// events play no part: a partition closes no socket.
//
// The ring (the members that shards are placed on) changes only when it must, so that flapping
// does not churn shards: a peer joins the ring only after it has been heard continuously for
// `stableForMs`; a suspect peer stays in it; a dead or leaving one leaves it, and is forgotten
// once silent for `forgetAfterMs`. Whenever the ring
// changes, `ringChanged` gets the new member list (this node included while it is alive) and the
// peers declared dead.
//
// Safety does not depend on any of this being right: two nodes that disagree may both want a
// shard, and the store's epoch decides (docs/DESIGN.md, "Ownership and fencing"). Membership
// decides liveness only.

import type { MemberHeartbeat } from '../../../protocol/peer-messages.ts';
import { MEMBERS_MAX } from '../../../protocol/limits.ts';
import type { Actor, ActorContext } from '../actor/runtime.ts';

export const MEMBERS_TOPIC = 'kairos/members/1';

export interface MembershipConfig {
  heartbeatEveryMs: number;
  /** Silence after which a peer is suspect (still in the ring). */
  suspectAfterMs: number;
  /** Silence after which a peer is dead (out of the ring). */
  deadAfterMs: number;
  /** Silence after which a dead or departed peer is forgotten (no longer listed). */
  forgetAfterMs: number;
  /** Continuous presence a peer needs before it joins the ring. */
  stableForMs: number;
  /** How long a node that joins a cluster waits to hear a peer before it places shards on
   * itself alone (its seeds may all be down). */
  joinTimeoutMs: number;
}

export const DEFAULT_MEMBERSHIP_CONFIG: MembershipConfig = {
  heartbeatEveryMs: 500,
  suspectAfterMs: 2_000,
  deadAfterMs: 5_000,
  forgetAfterMs: 600_000,
  stableForMs: 3_000,
  joinTimeoutMs: 30_000,
};

/** The shortest gap between heartbeats sent early (`load_changed`). */
const EARLY_HEARTBEAT_GAP_MS = 50;

export type PeerStatus = 'alive' | 'suspect' | 'dead' | 'leaving';

export interface PeerView {
  node: string;
  incarnation: number;
  status: PeerStatus;
  clientUrl: string;
  inRing: boolean;
}

export type MembershipMsg =
  | { kind: 'start' }
  | { kind: 'tick' }
  | { kind: 'heartbeat'; heartbeat: MemberHeartbeat }
  /** Graceful leave: announce it and leave the ring at once. */
  | { kind: 'leave' }
  /** This node's load changed in a way peers should hear of before the next heartbeat. */
  | { kind: 'load_changed' }
  | { kind: 'early' };

interface Peer {
  incarnation: number;
  state: 'alive' | 'leaving';
  clientUrl: string;
  lastHeardMs: number;
  /** Since when the peer has been heard without a gap long enough to make it suspect. */
  presentSinceMs: number;
  inRing: boolean;
}

export interface MembershipDeps {
  config: MembershipConfig;
  /** This incarnation of the node: a restarted node must present a higher one. */
  incarnation: number;
  clientUrl: string;
  addrs: string[];
  /** The node was given seeds to join: its first ring waits until it hears a peer (or
   * `joinTimeoutMs` passes), so that it does not first claim every shard. */
  joining: boolean;
  /** This node's load for its heartbeat: read synchronously from the routing table and the
   * dispatcher, which share this node's thread. */
  load: () => MemberHeartbeat['load'];
  /** The new ring, and the peers now declared dead (silent past `deadAfterMs`, not leaving) when
   * the nodes heard lately (this one too) outnumber them: their shards may be taken over at once,
   * without waiting for their leases to lapse. */
  ringChanged: (members: string[], dead: string[]) => void;
}

export class Membership implements Actor<MembershipMsg> {
  private readonly peers = new Map<string, Peer>();
  private leaving = false;
  private ring: string[] = [];
  /** The peers last reported dead with the ring. */
  private dead: string[] = [];
  /** Those of them this node saw die by its own clock: what its heartbeats tell. Never a word
   * taken from a peer, or two nodes would keep telling each other of a node gone for good. */
  private seenDead: string[] = [];
  /** Nodes other peers' heartbeats say they declared dead, and when they last said so. A node
   * that joined after a peer fell silent never heard it, so never sees it die by its own
   * clock; without their word it waited out the dead peer's shard leases for the shards its
   * ring gave it (14-17 s in the fault harness, when a node died while another rejoined). */
  private readonly reportedDead = new Map<string, number>();
  private lastPublishMs = -Infinity;
  /** Monotonic start: the ring is first published `stableForMs` later, once the node has heard
   * its peers, so that a node joining a running cluster does not first claim every shard. */
  private startedAtMs: number | null = null;

  constructor(private readonly deps: MembershipDeps) {}

  receive(msg: MembershipMsg, ctx: ActorContext<MembershipMsg>): void {
    switch (msg.kind) {
      case 'start':
        this.startedAtMs = ctx.env.clock.monotonicMs();
        return this.tick(ctx);
      case 'tick':
        return this.tick(ctx);
      case 'heartbeat':
        return this.heard(msg.heartbeat, ctx);
      case 'leave':
        this.leaving = true;
        this.publish(ctx);
        return this.publishRing(ctx);
      case 'load_changed': {
        // At most one early heartbeat per EARLY_HEARTBEAT_GAP_MS: a busy node's backlog changes
        // all the time, and gossip is for a few thousand messages a second, cluster-wide.
        const waitMs = this.lastPublishMs + EARLY_HEARTBEAT_GAP_MS - ctx.env.clock.monotonicMs();
        if (waitMs <= 0) return this.publish(ctx);
        if (!ctx.hasTimer('early')) ctx.startTimer('early', waitMs, { kind: 'early' });
        return;
      }
      case 'early':
        return this.publish(ctx);
    }
  }

  /** The peers this node knows of, for `kairos cluster` and the simulator's checkers. */
  view(nowMs: number): PeerView[] {
    return [...this.peers].map(([node, p]) => ({
      node,
      incarnation: p.incarnation,
      status: this.statusOf(p, nowMs),
      clientUrl: p.clientUrl,
      inRing: p.inRing,
    }));
  }

  get ringMembers(): readonly string[] {
    return this.ring;
  }

  private tick(ctx: ActorContext<MembershipMsg>): void {
    this.publish(ctx);
    this.publishRing(ctx);
    ctx.startTimer('tick', this.deps.config.heartbeatEveryMs, { kind: 'tick' });
  }

  private publish(ctx: ActorContext<MembershipMsg>): void {
    this.lastPublishMs = ctx.env.clock.monotonicMs();
    const heartbeat: MemberHeartbeat = {
      t: 'member_heartbeat',
      node: ctx.env.nodeId,
      incarnation: this.deps.incarnation,
      state: this.leaving ? 'leaving' : 'alive',
      addrs: this.deps.addrs,
      clientUrl: this.deps.clientUrl,
      load: this.deps.load(),
      ...(this.seenDead.length > 0 && { dead: this.seenDead.slice(0, MEMBERS_MAX) }),
    };
    ctx.env.network.publish(MEMBERS_TOPIC, heartbeat);
  }

  private heard(hb: MemberHeartbeat, ctx: ActorContext<MembershipMsg>): void {
    if (hb.node === ctx.env.nodeId) return;
    const now = ctx.env.clock.monotonicMs();
    const peer = this.peers.get(hb.node);
    // An older incarnation's heartbeat (delayed, duplicated) says nothing about the new one.
    if (peer !== undefined && hb.incarnation < peer.incarnation) return;
    const restarted = peer !== undefined && hb.incarnation > peer.incarnation;
    const wasAbsent = peer === undefined || restarted || now - peer.lastHeardMs >= this.deps.config.suspectAfterMs;
    this.peers.set(hb.node, {
      incarnation: hb.incarnation,
      state: hb.state,
      clientUrl: hb.clientUrl,
      lastHeardMs: now,
      presentSinceMs: wasAbsent ? now : peer!.presentSinceMs,
      inRing: peer?.inRing ?? false,
    });
    for (const node of hb.dead ?? []) if (node !== ctx.env.nodeId) this.reportedDead.set(node, now);
    if (hb.state === 'leaving') this.publishRing(ctx);
  }

  private statusOf(peer: Peer, nowMs: number): PeerStatus {
    if (peer.state === 'leaving') return 'leaving';
    const silentMs = nowMs - peer.lastHeardMs;
    if (silentMs >= this.deps.config.deadAfterMs) return 'dead';
    if (silentMs >= this.deps.config.suspectAfterMs) return 'suspect';
    return 'alive';
  }

  /** Recomputes who is in the ring and reports a change. */
  private publishRing(ctx: ActorContext<MembershipMsg>): void {
    const now = ctx.env.clock.monotonicMs();
    if (this.startedAtMs === null || now - this.startedAtMs < this.deps.config.stableForMs) return;
    for (const [node, peer] of this.peers) {
      if (now - peer.lastHeardMs >= this.deps.config.forgetAfterMs) {
        this.peers.delete(node);
        continue;
      }
      const status = this.statusOf(peer, now);
      if (status === 'dead' || status === 'leaving') peer.inRing = false;
      else if (!peer.inRing && status === 'alive' && now - peer.presentSinceMs >= this.deps.config.stableForMs) peer.inRing = true;
    }
    const members = [...this.peers].filter(([, p]) => p.inRing).map(([node]) => node);
    // Peers declared dead, whose shards may then be taken over at once: only by a majority of
    // the nodes this one knows. A node cut off from the others (or waking from a pause) hears
    // nobody and would otherwise take every shard from nodes that are fine; it waits for their
    // leases to lapse instead, which the others keep renewing. Every node heard lately counts
    // towards the majority, in the ring yet or not: one rejoining after a restart shows this
    // node is not the one cut off, and counting only ring members made a node whose peer died
    // while another rejoined wait out the dead peer's lease (14-23 s instead of 5).
    const statuses = [...this.peers].map(([node, p]) => [node, this.statusOf(p, now)] as const);
    const seenDead = statuses.filter(([, status]) => status === 'dead').map(([node]) => node);
    const silent = [...seenDead];
    // A peer's word that a node is dead counts while it is fresh (repeated every heartbeat) and
    // this node has not heard that node lately itself.
    for (const [node, saidAtMs] of this.reportedDead) {
      const peer = this.peers.get(node);
      if (now - saidAtMs >= this.deps.config.suspectAfterMs) this.reportedDead.delete(node);
      else if (!silent.includes(node) && (peer === undefined || this.statusOf(peer, now) === 'suspect')) silent.push(node);
    }
    silent.sort();
    const heard = 1 + statuses.filter(([, status]) => status === 'alive' || status === 'suspect').length;
    const waitingForPeers = this.ring.length === 0 && this.deps.joining && now - this.startedAtMs < this.deps.config.joinTimeoutMs;
    if (waitingForPeers && members.length === 0) return;
    if (!this.leaving) members.push(ctx.env.nodeId);
    members.sort();
    const dead = heard > silent.length ? silent : [];
    // A change of the dead alone is news too: a majority regained (a node rejoining, heard but
    // not in the ring yet) lets the shards of a peer already silent be taken now.
    if (sameList(members, this.ring) && sameList(dead, this.dead)) return;
    this.ring = members;
    this.dead = dead;
    this.seenDead = dead.filter((node) => seenDead.includes(node));
    ctx.env.logger.log('info', 'membership.ring_changed', { members, dead });
    this.deps.ringChanged(members, dead);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
