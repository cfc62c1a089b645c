// Decoding frames from outside into typed messages: the one way in. Every frame is decoded
// by the strict reader, checked for a supported version and a known type for its direction,
// and validated field by field. Nothing here throws for a bad frame; the caller gets an
// `ErrorBody` to send back (with the request's rid when it could be read) and the frame is
// applied not at all.

import { ERROR_CHARS_MAX } from './job-rules.ts';
import type { ClientToNode, NodeToClient } from './client-messages.ts';
import { CLIENT_TO_NODE, NODE_TO_CLIENT } from './client-messages.ts';
import { decodeFrame } from './codec.ts';
import type { ErrorBody, ErrorCode } from './errors.ts';
import { CODEC_LIMITS, FIELD_PATH_CHARS_MAX, RID_MAX, SUPPORTED_VERSIONS, type CodecLimits } from './limits.ts';
import { clip, type WireMap } from './msgpack-read.ts';
import type { PeerMessage } from './peer-messages.ts';
import { PEER } from './peer-messages.ts';
import { Invalid, type AnySchema } from './schema.ts';
import type { NodeToWorker, WorkerToNode } from './worker-messages.ts';
import { NODE_TO_WORKER, WORKER_TO_NODE } from './worker-messages.ts';

export type Decoded<M> = { ok: true; msg: M } | { ok: false; rid: number | null; error: ErrorBody };

// Maps, not objects: `t` comes from outside and must not find `constructor` and friends.
// Clients and workers share a connection, so one table covers both; so for what nodes send.
const FROM_CLIENT = new Map<string, AnySchema>(Object.entries({ ...CLIENT_TO_NODE, ...WORKER_TO_NODE }));
const FROM_NODE = new Map<string, AnySchema>(Object.entries({ ...NODE_TO_CLIENT, ...NODE_TO_WORKER }));
const FROM_PEER = new Map<string, AnySchema>(Object.entries(PEER));

/** A frame a client or worker sent to its node. */
export function decodeFromClient(
  bytes: Uint8Array,
  limits: CodecLimits = CODEC_LIMITS,
): Decoded<ClientToNode | WorkerToNode> {
  return decodeWith(bytes, FROM_CLIENT, limits);
}

/** A frame a node sent to a client or worker: what the SDK reads. */
export function decodeFromNode(
  bytes: Uint8Array,
  limits: CodecLimits = CODEC_LIMITS,
): Decoded<NodeToClient | NodeToWorker> {
  return decodeWith(bytes, FROM_NODE, limits);
}

/** A frame one node sent another. */
export function decodeFromPeer(bytes: Uint8Array, limits: CodecLimits = CODEC_LIMITS): Decoded<PeerMessage> {
  return decodeWith(bytes, FROM_PEER, limits);
}

function decodeWith<M>(bytes: Uint8Array, variants: ReadonlyMap<string, AnySchema>, limits: CodecLimits): Decoded<M> {
  const frame = decodeFrame(bytes, limits);
  if (!frame.ok) return { ok: false, rid: null, error: bounded(frame.error) };
  // The version is the frame's, not the message's: taken out here (a delete, not a copy of
  // the map), so the message's schema sees only its own fields.
  const message = frame.value;
  const v = message['v'];
  delete message['v'];
  const rid = ridOf(message);
  if (v === undefined) return refuse(rid, 'bad_request', new Invalid('v', 'is required'));
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    return refuse(rid, 'bad_request', new Invalid('v', 'must be an integer'));
  }
  if (!SUPPORTED_VERSIONS.includes(v)) {
    const text = `version ${v} is not supported; supported: ${SUPPORTED_VERSIONS.join(', ')}`;
    return { ok: false, rid, error: { code: 'unsupported_version', message: text, field: 'v' } };
  }
  const t = message['t'];
  if (typeof t !== 'string') return refuse(rid, 'bad_request', new Invalid('t', 'must be a string'));
  const schema = variants.get(t);
  if (schema === undefined) {
    const text = `unknown message type "${clip(t, 64)}"`;
    return { ok: false, rid, error: { code: 'unknown_type', message: text, field: 't' } };
  }
  const checked: unknown = schema.check(message);
  if (checked instanceof Invalid) return refuse(rid, 'bad_request', checked);
  return { ok: true, msg: checked as M };
}

/** The frame's rid when it is a valid one, so even a refusal can be matched to its request. */
function ridOf(message: WireMap): number | null {
  const rid = message['rid'];
  return typeof rid === 'number' && Number.isInteger(rid) && rid >= 0 && rid <= RID_MAX ? rid : null;
}

function refuse(rid: number | null, code: ErrorCode, invalid: Invalid): Decoded<never> {
  return { ok: false, rid, error: bounded({ code, message: invalid.message, field: invalid.field }) };
}

/** Paths and messages quote what the sender sent; keep them within what an `error` frame may
 * carry, so the reply itself always validates. */
function bounded(error: ErrorBody): ErrorBody {
  const out: ErrorBody = { code: error.code, message: clip(error.message, ERROR_CHARS_MAX) };
  if (error.field !== undefined && error.field !== '') out.field = clip(error.field, FIELD_PATH_CHARS_MAX);
  return out;
}
