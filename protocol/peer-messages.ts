// Node ↔ node. Used from the cluster issue on: defined now so the whole wire format is in one
// place and under the golden fixtures. Nodes exchange them over libp2p: `member_heartbeat` by
// gossip, the rest point to point, one length-prefixed frame each.
//
// Peers authenticate at the transport (libp2p peer ids), but their frames are still decoded
// and validated like any other: a bad one is logged and dropped. Safety never rests on these
// messages arriving: fencing in Postgres does. They decide liveness and routing only.

import { NAME_CHARS_MAX } from '../node/core/job/job.ts';
import type { ClientRequest, JobChanged, NodeToClient } from './client-messages.ts';
import { CLIENT_TO_NODE, NODE_TO_CLIENT } from './client-messages.ts';
import { countSchema, queueSchema } from './job-view.ts';
import {
  ADDRS_MAX,
  BACKLOG_QUEUES_MAX,
  CREDIT_SLOTS_MAX,
  LABEL_CHARS_MAX,
  RID_MAX,
  SHARD_COUNT_MAX,
  URL_CHARS_MAX,
} from './limits.ts';
import { arr, int, literal, obj, oneOf, str, tagged, type SchemaTable } from './schema.ts';
import type { Complete, Fail, Heartbeat, NodeToWorker, Return } from './worker-messages.ts';
import { NODE_TO_WORKER, WORKER_TO_NODE } from './worker-messages.ts';

/** Ready jobs of one queue on one node. An array of these rather than a map keyed by queue:
 * queue names are chosen by users, and a map key may not be `constructor`. */
export interface QueueBacklog {
  queue: string;
  ready: number;
}

/** Gossip, every node → all: I am alive (or leaving), reach me here, this is my load. Sent on
 * a fixed period. Receivers update their membership view; a node not heard from for long
 * enough is suspected, and a higher `incarnation` from the same node overrides what was known
 * (a restarted node starts with a higher one). `leaving` asks the others to move its shards
 * away before it stops. */
export interface MemberHeartbeat {
  t: 'member_heartbeat';
  node: string;
  incarnation: number;
  state: 'alive' | 'leaving';
  /** libp2p multiaddrs. */
  addrs: string[];
  /** Where clients connect (a ws:// or wss:// URL). */
  clientUrl: string;
  load: { shards: number; backlog: QueueBacklog[] };
}

/** Gateway → shard owner: a client request, already validated, on behalf of `tenant`. The
 * owner handles it as if the client were attached and answers `forward_reply` with the same
 * `fid` (the request keeps the client's rid). An owner that no longer owns the shard answers
 * `error unavailable`; the gateway re-routes or passes it on. */
export interface Forward {
  t: 'forward';
  /** Chosen by the gateway, unique among its forwards in flight to this owner. */
  fid: number;
  tenant: string;
  request: ClientRequest;
}

/** Shard owner → gateway, the reply to `forward`: the gateway sends `reply` to the client. */
export interface ForwardReply {
  t: 'forward_reply';
  fid: number;
  reply: NodeToClient;
}

/** Shard owner → gateway, after a forwarded `subscribe` (identified by its `fid`): a change to
 * pass on to the subscribed client. */
export interface ForwardPush {
  t: 'forward_push';
  fid: number;
  push: JobChanged;
}

/** New owner → current owner: the membership view names me owner of `shard`; hand it over. The
 * receiver, if it holds the shard at `epoch` and its own view agrees, stops taking work for it,
 * commits what it holds, releases it in the store and answers `handoff_done`. Otherwise it
 * ignores the message, and the new owner waits for the lease to lapse. */
export interface HandoffBegin {
  t: 'handoff_begin';
  shard: number;
  epoch: number;
}

/** Old owner → new owner: `shard` is released at `releasedEpoch`; acquire it now instead of
 * waiting for the lease to lapse. */
export interface HandoffDone {
  t: 'handoff_done';
  shard: number;
  releasedEpoch: number;
}

/** Gateway → shard owner: a worker attached to the gateway may take `slots` jobs of `queue`
 * from this owner. Absolute, not added: it replaces the previous offer, and 0 withdraws it, so
 * a lost or repeated offer does no lasting harm. The gateway splits a worker's credit among
 * the owners. */
export interface CreditOffer {
  t: 'credit_offer';
  /** `<gateway node id>/<connection id>`. */
  worker: string;
  queue: string;
  slots: number;
}

/** Gateway → shard owner: a message from a worker attached to the gateway about a lease this
 * owner granted. The owner handles it as if the worker were attached and answers with
 * `owner_relay`. */
export interface WorkerRelay {
  t: 'worker_relay';
  worker: string;
  message: Heartbeat | Complete | Fail | Return;
}

/** Shard owner → gateway: a message for a worker attached to the gateway (a lease, a reply to a
 * relayed message, a revoke); the gateway passes it on unchanged. */
export interface OwnerRelay {
  t: 'owner_relay';
  worker: string;
  message: NodeToWorker;
}

export type PeerMessage =
  | MemberHeartbeat
  | Forward
  | ForwardReply
  | ForwardPush
  | HandoffBegin
  | HandoffDone
  | CreditOffer
  | WorkerRelay
  | OwnerRelay;

// ---- Schemas -----------------------------------------------------------------------------

const nodeIdSchema = str(LABEL_CHARS_MAX, { minChars: 1 });
const tenantSchema = str(NAME_CHARS_MAX, { minChars: 1 });
const workerIdSchema = str(2 * LABEL_CHARS_MAX + 1, { minChars: 1 });
const fidSchema = int(0, RID_MAX);
const shardSchema = int(0, SHARD_COUNT_MAX - 1);
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
      backlog: arr(obj({ queue: queueSchema, ready: countSchema }), BACKLOG_QUEUES_MAX),
    }),
  }),
  forward: obj({
    t: literal('forward'),
    fid: fidSchema,
    tenant: tenantSchema,
    request: tagged<ClientRequest>(clientRequests),
  }),
  forward_reply: obj({ t: literal('forward_reply'), fid: fidSchema, reply: tagged<NodeToClient>(NODE_TO_CLIENT) }),
  forward_push: obj({ t: literal('forward_push'), fid: fidSchema, push: NODE_TO_CLIENT.job_changed }),
  handoff_begin: obj({ t: literal('handoff_begin'), shard: shardSchema, epoch: countSchema }),
  handoff_done: obj({ t: literal('handoff_done'), shard: shardSchema, releasedEpoch: countSchema }),
  credit_offer: obj({
    t: literal('credit_offer'),
    worker: workerIdSchema,
    queue: queueSchema,
    slots: int(0, CREDIT_SLOTS_MAX),
  }),
  worker_relay: obj({
    t: literal('worker_relay'),
    worker: workerIdSchema,
    message: tagged<Heartbeat | Complete | Fail | Return>(workerLeaseMessages),
  }),
  owner_relay: obj({
    t: literal('owner_relay'),
    worker: workerIdSchema,
    message: tagged<NodeToWorker>(NODE_TO_WORKER),
  }),
};
