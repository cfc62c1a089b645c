// Idempotency keys the SDK generates: UUIDv7 (RFC 9562), 48 bits of Unix time in milliseconds
// then 74 random bits. The store keeps every key for as long as its job, in a b-tree on
// (tenant, key): a random key (v4) lands on a random leaf of an index that at the mission's
// volume is far larger than memory, so each insert may read a page from disk and dirties one
// more; keys that start with the time land next to the keys of the last moments, on the few
// leaves in memory. The random bits keep them unique as v4's do: only keys of the same
// millisecond can collide, and even a million of those do with a chance of about 3 in 10^11.

export function uuidV7(nowMs: number = Date.now()): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  // 48-bit big-endian milliseconds: the top 16 bits, then the low 32.
  const high = Math.floor(nowMs / 2 ** 32);
  const low = nowMs >>> 0;
  bytes[0] = (high >>> 8) & 0xff;
  bytes[1] = high & 0xff;
  bytes[2] = low >>> 24;
  bytes[3] = (low >>> 16) & 0xff;
  bytes[4] = (low >>> 8) & 0xff;
  bytes[5] = low & 0xff;
  bytes[6] = 0x70 | (bytes[6]! & 0x0f); // version 7
  bytes[8] = 0x80 | (bytes[8]! & 0x3f); // variant 10
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
