// Job ids: `<shard hex>-<scheduledAtMs base36>-<epoch base36>-<seq base36>`, e.g.
// `03f-mfz1k2q0-5-1a`.
//
// Why this shape:
// - any node tells the shard from the id alone, so get/cancel route without a lookup;
// - the store tells the partition (scheduled_at) from the id alone, so a lookup by id touches
//   one daily partition instead of probing all of them;
// - uniqueness needs no randomness and no coordination: an epoch is held by one owner at a
//   time (the store guarantees it) and that owner numbers its ids with a counter.

export interface JobIdParts {
  shard: number;
  scheduledAtMs: number;
  epoch: number;
  seq: number;
}

export function formatJobId(parts: JobIdParts): string {
  for (const value of [parts.shard, parts.scheduledAtMs, parts.epoch, parts.seq]) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`job id parts must be non-negative integers, got ${value}`);
  }
  return [
    parts.shard.toString(16).padStart(3, '0'),
    parts.scheduledAtMs.toString(36),
    parts.epoch.toString(36),
    parts.seq.toString(36),
  ].join('-');
}

const JOB_ID_PATTERN = /^([0-9a-f]{3,4})-([0-9a-z]{1,11})-([0-9a-z]{1,11})-([0-9a-z]{1,11})$/;
export const JOB_ID_CHARS_MAX = 4 + 1 + 11 + 1 + 11 + 1 + 11;

/** Parses an id from the outside; null when it is not one of ours. */
export function parseJobId(id: string): JobIdParts | null {
  if (id.length > JOB_ID_CHARS_MAX) return null;
  const m = JOB_ID_PATTERN.exec(id);
  if (m === null) return null;
  const parts = {
    shard: parseInt(m[1]!, 16),
    scheduledAtMs: parseInt(m[2]!, 36),
    epoch: parseInt(m[3]!, 36),
    seq: parseInt(m[4]!, 36),
  };
  if (!Number.isSafeInteger(parts.scheduledAtMs) || !Number.isSafeInteger(parts.epoch)) return null;
  if (!Number.isSafeInteger(parts.seq)) return null;
  return parts;
}

/** Shard of an id, or null when the id is malformed or names a shard outside the cluster. */
export function shardOfJobId(id: string, shardCount: number): number | null {
  const parts = parseJobId(id);
  if (parts === null || parts.shard >= shardCount) return null;
  return parts.shard;
}

/** The shard a submission goes to. A submission placed by its idempotency key always hashes
 * to the same shard, so that one owner sees every retry of it and can deduplicate in memory;
 * one without such a key goes to the shard the caller drew at random. */
export function shardForSubmission(
  tenant: string,
  idempotencyKey: string | null,
  shardCount: number,
  randomShard: () => number,
): number {
  if (idempotencyKey === null) return randomShard();
  return fnv1a32(`${tenant}\u0000${idempotencyKey}`) % shardCount;
}

/** FNV-1a over UTF-16 code units: stable across processes and platforms, cheap, and good
 * enough to spread keys over shards (not a security boundary). */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
