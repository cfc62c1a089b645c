// Node ↔ node. Nodes exchange these over libp2p: `member_heartbeat` by gossip, the rest point
// to point, one length-prefixed frame each. The wire format is under the golden fixtures like
// the other families.
//
// Peers authenticate at the transport (libp2p peer ids), but their frames are still decoded
// and validated like any other: a bad one is logged and dropped. Safety never rests on these
// messages arriving: fencing in Postgres does. They decide liveness and routing only.

import { NAME_CHARS_MAX } from './job-rules.ts';
import type { ClientRequest, JobChanged, NodeToClient } from './client-messages.ts';
import { CLIENT_TO_NODE, NODE_TO_CLIENT } from './client-messages.ts';
import { countSchema, jobIdSchema, prioritySchema, queueSchema, timeSchema } from './job-view.ts';
import type { BreakerState } from './breaker-view.ts';
import { BREAKER_LIMITS } from './breaker-view.ts';
import { breakerStateSchema } from './breaker-view.ts';
import {
  ADDRS_MAX,
  BACKLOG_QUEUES_MAX,
  BREAKER_REPORT_LANES_MAX,
  BREAKER_SIGNALS_MAX,
  CREDIT_SLOTS_MAX,
  LABEL_CHARS_MAX,
  MEMBERS_MAX,
  RID_MAX,
  SHARD_COUNT_MAX,
  URL_CHARS_MAX,
} from './limits.ts';
import { arr, bool, int, literal, nullable, obj, oneOf, opt, str, tagged, type SchemaTable } from './schema.ts';
import type { Complete, Fail, Heartbeat, Lease, NodeToWorker, Return, Revoke } from './worker-messages.ts';
import { NODE_TO_WORKER, WORKER_TO_NODE } from './worker-messages.ts';

/** Ready jobs of one tenant's queue on one node. An array of these rather than a map keyed by
 * queue: queue names are chosen by users, and a map key may not be `constructor`. */
export interface QueueBacklog {
  tenant: string;
  queue: string;
  ready: number;
  /** Priority of the best ready job: workers elsewhere serve the best work first. */
  topPriority: number;
  /** How many of the node's shards hold these jobs: workers elsewhere give the node that many
   * turns, as they give each shard of their own one. Absent (a node of an older version): 1. */
  shards?: number;
  /** Slots of the workers attached to the node for this queue (credit unused and leases held):
   * workers elsewhere lend the node only the share of their slots that its own do not cover.
   * Absent (a node of an older version): 0. */
  slots?: number;
}

/** The state of one lane's circuit breaker, as the owner of the breaker's shard committed it.
 * Every node acts on the highest `version` it has heard of each lane: its dispatcher leases no
 * job of the lane while it is open, at most `probes` per half-open `round`, and its gateway
 * refuses the lane's submissions with `circuit_open` while it is not closed and `refuse`. */
export interface BreakerSignal {
  tenant: string;
  queue: string;
  state: BreakerState;
  /** The breaker's version (Breaker.version): a higher one replaces what was known. */
  version: number;
  /** Half-open rounds so far in this opening; each gives every node `probes` fresh probes. */
  round: number;
  /** Jobs each node may lease per half-open round. */
  probes: number;
  /** When it entered `state`. */
  since: number;
  /** While open: when it goes half-open. Else null. */
  nextProbeAt: number | null;
  /** The lane's submissions are refused while it is not closed (`refuseWhenOpen`). */
  refuse: boolean;
}

/** Attempt outcomes of one lane that ended on the sender, counted for its breaker. */
export interface BreakerCount {
  tenant: string;
  queue: string;
  successes: number;
  /** Failures that count towards the breaker (see `fail.downstream`). */
  failures: number;
  /** Attempts that ended with no verdict (the lease given back, or its worker gone); absent
   * when none. A half-open breaker starts its next round on them. */
  abandoned?: number;
}

/** Gossip, every node → all: I am alive (or leaving), reach me here, this is my load. Sent on
 * a fixed period. Receivers update their membership view; a node not heard from for long
 * enough is suspected, and a higher `incarnation` from the same node overrides what was known
 * (a restarted node starts with a higher one). `leaving` asks the others to move its shards
 * away before it stops. `load.backlog` is what workers attached to other nodes may take from
 * this one (see `credit_offer`). */
export interface MemberHeartbeat {
  t: 'member_heartbeat';
  node: string;
  incarnation: number;
  state: 'alive' | 'leaving';
  /** libp2p multiaddrs. */
  addrs: string[];
  /** Where clients connect (a ws:// or wss:// URL). */
  clientUrl: string;
  load: {
    shards: number;
    backlog: QueueBacklog[];
    /** The breakers of shards the sender owns, as committed. Absent: none (or a node of an
     * older version). */
    breakers?: BreakerSignal[];
  };
  /** Peers the sender has declared dead (silent past the failure detector's bound while it
   * heard a majority). A node that never heard them, having joined since, takes their word. */
  dead?: string[];
}

/** What a gateway forwards: a client request, or a worker's word about a lease. */
export type ForwardedRequest = ClientRequest | Heartbeat | Complete | Fail | Return;

/** Gateway → the node its ring names owner of the request's shard: a request of a client or
 * worker attached to the gateway, already validated and admitted, on behalf of `tenant`. The
 * request's `rid` is replaced by `fid`, chosen by the gateway and unique among its forwards in
 * flight. The receiver handles it as if the client were attached, but only with an owner of
 * its own: it never forwards again, and answers `error unavailable` when it does not own the
 * shard (a hand-off under way), which the gateway retries until its deadline. */
export interface Forward {
  t: 'forward';
  fid: number;
  /** The client's connection on the gateway: subscriptions are kept per connection. */
  conn: string;
  tenant: string;
  request: ForwardedRequest;
}

/** Receiver of a `forward` → its gateway: the answer, whose `rid` is the `fid`. The gateway
 * restores the client's rid and passes it on. */
export interface ForwardReply {
  t: 'forward_reply';
  fid: number;
  reply: NodeToClient | NodeToWorker;
}

/** Owner's node → gateway, after a forwarded `subscribe`: a change to pass on to connection
 * `conn`. */
export interface ForwardPush {
  t: 'forward_push';
  conn: string;
  push: JobChanged;
}

/** Gateway → every node it forwarded requests of `conn` to: the connection closed; drop its
 * subscriptions. */
export interface ConnClosed {
  t: 'conn_closed';
  conn: string;
}

/** Owner's node → gateway, after a forwarded `subscribe`: the owner stopped serving the shard
 * before job `jobId` finished (a hand-off). The gateway subscribes connection `conn` again
 * wherever the shard is served now. */
export interface SubscriptionMoved {
  t: 'subscription_moved';
  conn: string;
  jobId: string;
}

/** Old owner → the node its ring names new owner: `shard` is released at `releasedEpoch`, with
 * everything it held committed; acquire it now instead of waiting for the lease to lapse. */
export interface HandoffDone {
  t: 'handoff_done';
  shard: number;
  releasedEpoch: number;
}

/** Worker's node → a node whose heartbeat shows ready jobs of the lane: worker `worker` may
 * take `slots` more jobs of `tenant`'s `queue` from your owners. The receiver grants them at
 * once and gives back what it cannot use with `credit_return`, so no credit waits on a node
 * without work; leases travel back as `owner_relay`. */
export interface CreditOffer {
  t: 'credit_offer';
  /** `<worker's node id>/<connection id>`. */
  worker: string;
  tenant: string;
  queue: string;
  slots: number;
}

/** The reverse of `credit_offer`: slots that found no ready job. */
export interface CreditReturn {
  t: 'credit_return';
  worker: string;
  tenant: string;
  queue: string;
  slots: number;
}

/** Owner's node → worker's node: a lease or a revoke for a worker attached there; its node
 * passes it on unchanged. */
export interface OwnerRelay {
  t: 'owner_relay';
  worker: string;
  message: Lease | Revoke;
}

/** Any node → the node that owns the shard of the lanes' breakers: outcomes of attempts of those
 * lanes that ended on the sender since its last report. The owner adds them to each breaker's
 * window and decides its state from them. No reply; a lost report only loses its counts. */
export interface BreakerReport {
  t: 'breaker_report';
  counts: BreakerCount[];
}

export type PeerMessage =
  | MemberHeartbeat
  | Forward
  | ForwardReply
  | ForwardPush
  | ConnClosed
  | SubscriptionMoved
  | HandoffDone
  | CreditOffer
  | CreditReturn
  | OwnerRelay
  | BreakerReport;

// ---- Schemas -----------------------------------------------------------------------------

const nodeIdSchema = str(LABEL_CHARS_MAX, { minChars: 1 });
const tenantSchema = str(NAME_CHARS_MAX, { minChars: 1 });
const workerIdSchema = str(2 * LABEL_CHARS_MAX + 1, { minChars: 1 });
const fidSchema = int(0, RID_MAX);
const shardSchema = int(0, SHARD_COUNT_MAX - 1);
const connSchema = str(LABEL_CHARS_MAX, { minChars: 1 });
const { hello: _hello, ...clientRequests } = CLIENT_TO_NODE;
const { credit: _credit, drain: _drain, ...workerLeaseMessages } = WORKER_TO_NODE;

export const PEER: SchemaTable<PeerMessage> = {
  member_heartbeat: obj({
    t: literal('member_heartbeat'),
    node: nodeIdSchema,
    incarnation: countSchema,
    state: oneOf(['alive', 'leaving']),
    addrs: arr(str(URL_CHARS_MAX, { minChars: 1 }), ADDRS_MAX),
    clientUrl: str(URL_CHARS_MAX, { minChars: 1 }),
    load: obj({
      shards: int(0, SHARD_COUNT_MAX),
      backlog: arr(obj({ tenant: tenantSchema, queue: queueSchema, ready: countSchema, topPriority: prioritySchema, shards: opt(int(1, SHARD_COUNT_MAX)), slots: opt(countSchema) }), BACKLOG_QUEUES_MAX),
      breakers: opt(
        arr(
          obj({
            tenant: tenantSchema,
            queue: queueSchema,
            state: breakerStateSchema,
            version: countSchema,
            round: countSchema,
            probes: int(0, BREAKER_LIMITS.probes[1]),
            since: timeSchema,
            nextProbeAt: nullable(timeSchema),
            refuse: bool,
          }),
          BREAKER_SIGNALS_MAX,
        ),
      ),
    }),
    dead: opt(arr(nodeIdSchema, MEMBERS_MAX)),
  }),
  forward: obj({
    t: literal('forward'),
    fid: fidSchema,
    conn: connSchema,
    tenant: tenantSchema,
    request: tagged<ForwardedRequest>({ ...clientRequests, ...workerLeaseMessages }),
  }),
  forward_reply: obj({ t: literal('forward_reply'), fid: fidSchema, reply: tagged<NodeToClient | NodeToWorker>({ ...NODE_TO_CLIENT, ...NODE_TO_WORKER }) }),
  forward_push: obj({ t: literal('forward_push'), conn: connSchema, push: NODE_TO_CLIENT.job_changed }),
  conn_closed: obj({ t: literal('conn_closed'), conn: connSchema }),
  subscription_moved: obj({ t: literal('subscription_moved'), conn: connSchema, jobId: jobIdSchema }),
  handoff_done: obj({ t: literal('handoff_done'), shard: shardSchema, releasedEpoch: countSchema }),
  credit_offer: obj({ t: literal('credit_offer'), worker: workerIdSchema, tenant: tenantSchema, queue: queueSchema, slots: int(1, CREDIT_SLOTS_MAX) }),
  credit_return: obj({ t: literal('credit_return'), worker: workerIdSchema, tenant: tenantSchema, queue: queueSchema, slots: int(1, CREDIT_SLOTS_MAX) }),
  owner_relay: obj({
    t: literal('owner_relay'),
    worker: workerIdSchema,
    message: tagged<Lease | Revoke>({ lease: NODE_TO_WORKER.lease, revoke: NODE_TO_WORKER.revoke }),
  }),
  breaker_report: obj({
    t: literal('breaker_report'),
    counts: arr(obj({ tenant: tenantSchema, queue: queueSchema, successes: countSchema, failures: countSchema, abandoned: opt(countSchema) }), BREAKER_REPORT_LANES_MAX),
  }),
};
