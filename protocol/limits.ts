// Protocol constants: the version, the codec's structural limits and the per-field limits.
// One place, so PROTOCOL.md, the validators and `welcome` cannot disagree.

import { PAYLOAD_BYTES_MAX, RESULT_BYTES_MAX } from './job-rules.ts';

/** The version this code writes. */
export const PROTOCOL_VERSION = 1;
/** Versions this code reads and can negotiate, ascending. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];

/** Structural limits of the codec, checked on the bytes before any value is built, so a
 * hostile frame cannot make the decoder allocate or recurse more than the frame is worth. */
export interface CodecLimits {
  /** Whole frame, checked before decoding starts. */
  frameBytesMax: number;
  /** Any one string (key or value), in UTF-8 bytes. Fields have tighter limits of their own. */
  stringBytesMax: number;
  /** Any one bin value. Fields (payload, result) have tighter limits of their own. */
  binBytesMax: number;
  arrayLengthMax: number;
  /** Entries in any one map. Every map in the protocol has a fixed set of keys, so this is
   * small. */
  mapSizeMax: number;
  /** Nesting of maps and arrays; the frame's own map is depth 1. */
  depthMax: number;
  /** Keys and values in the whole frame, counting every map, array and scalar. Bounds the
   * work of decoding one frame: a full page of jobs takes about 32,000. */
  valuesMax: number;
}

export const CODEC_LIMITS: CodecLimits = {
  frameBytesMax: 1024 * 1024,
  stringBytesMax: 64 * 1024,
  binBytesMax: 1024 * 1024,
  arrayLengthMax: 4096,
  mapSizeMax: 64,
  depthMax: 32,
  valuesMax: 65_536,
};

/** Jobs in one `submit_batch`. */
export const BATCH_MAX = 1000;

/** What `welcome` advertises; a client must stay within it. */
export interface AdvertisedLimits {
  frameBytesMax: number;
  payloadBytesMax: number;
  resultBytesMax: number;
  /** Jobs in one `submit_batch`, which must also fit in one frame. */
  batchMax: number;
  /** Requests in flight on one connection (a batch counts each of its jobs) past which the
   * node refuses a submission with `overloaded`. Set by each node's configuration. */
  inflightMax: number;
}

/** The advertised limits fixed in this version; the node adds `inflightMax` from its config. */
export const ADVERTISED_LIMITS = {
  frameBytesMax: CODEC_LIMITS.frameBytesMax,
  payloadBytesMax: PAYLOAD_BYTES_MAX,
  resultBytesMax: RESULT_BYTES_MAX,
  batchMax: BATCH_MAX,
} as const satisfies Omit<AdvertisedLimits, 'inflightMax'>;

/** Request ids and forward ids are uint32: every language has one. */
export const RID_MAX = 0xffff_ffff;
/** Instants are ms since the Unix epoch, up to the end of JavaScript's Date range. */
export const TIME_MS_MAX = 8_640_000_000_000_000;
/** `delayMs` on submit: up to 100 years. */
export const DELAY_MS_MAX = 100 * 365 * 86_400_000;
/** `leaseMs`, `retryAfterMs`: up to a day. */
export const DURATION_MS_MAX = 86_400_000;
export const LIST_LIMIT_DEFAULT = 100;
export const LIST_LIMIT_MAX = 1000;
/** Opaque page cursors (`after`, `next`). */
export const CURSOR_CHARS_MAX = 256;
/** Free-form labels: client name in `hello`, node ids, worker ids. */
export const LABEL_CHARS_MAX = 128;
export const PROGRESS_CHARS_MAX = 1024;
/** `error.field`: a field path such as `jobs[12].retry`. */
export const FIELD_PATH_CHARS_MAX = 512;
/** Credit one `credit` may add, and the most a worker may hold for one queue. */
export const CREDIT_SLOTS_MAX = 10_000;
/** Further attempts `dlq_requeue` grants when it does not say. One: an operator requeueing a
 * job that keeps crashing its worker should not get a full retry budget of crashes. */
export const REQUEUE_ATTEMPTS_DEFAULT = 1;
export const URL_CHARS_MAX = 512;
export const ADDRS_MAX = 16;
/** Nodes in a `cluster_view`. */
export const MEMBERS_MAX = 1024;
/** Queues one `member_heartbeat` reports a backlog for. */
export const BACKLOG_QUEUES_MAX = 1024;
/** Breakers one `member_heartbeat` signals the state of. */
export const BREAKER_SIGNALS_MAX = 1000;
/** Lanes (a tenant's queue) one `breaker_report` counts outcomes for. */
export const BREAKER_REPORT_LANES_MAX = 1000;
export const SHARD_COUNT_MAX = 65_536; // job ids carry the shard in at most 4 hex digits
