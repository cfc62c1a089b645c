// The codec: one frame is one msgpack map with `v` (protocol version) and `t` (message type).
// Encoding goes through msgpackr; decoding through the strict reader in msgpack-read.ts (why:
// see there). Neither knows the messages: validate.ts checks what a decoded map means.

import { FLOAT32_OPTIONS, Packr } from 'msgpackr';
import type { ErrorBody } from './errors.ts';
import { ProtocolError } from './errors.ts';
import { CODEC_LIMITS, PROTOCOL_VERSION, type CodecLimits } from './limits.ts';
import { readFrame, type WireMap } from './msgpack-read.ts';

// Plain msgpack that any implementation reads: no records (which would also turn fixints
// 0x40–0x7f into record references), no extension types, no shared-reference tracking,
// doubles never narrowed to float32.
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  useFloat32: FLOAT32_OPTIONS.NEVER,
});

/** Encodes one message. Adds `v`; the message supplies `t` and its fields. Optional fields
 * that are undefined are left out. Keys are written `v`, `t`, then in code-unit order, so a
 * message has one encoding whatever order its object was built in (the golden fixtures rely
 * on it); receivers accept any order. Throws only on a programmer error: a value that is not
 * null, boolean, finite number, string, Uint8Array, array or plain object. */
export function encodeMessage<M extends { t: string }>(message: M, version: number = PROTOCOL_VERSION): Uint8Array {
  return packr.pack(toWire({ ...message, v: version }));
}

/** Decodes one frame into a null-prototype map, or says what is wrong with it. Never throws. */
export function decodeFrame(
  bytes: Uint8Array,
  limits: CodecLimits = CODEC_LIMITS,
): { ok: true; value: WireMap } | { ok: false; error: ErrorBody } {
  try {
    return { ok: true, value: readFrame(bytes, limits) };
  } catch (error) {
    if (error instanceof ProtocolError) return { ok: false, error: error.body };
    // The reader checks bounds before every read, so this is a bug in it; a frame from
    // outside still must not take the connection down. The fuzz tests assert it never fires.
    return { ok: false, error: { code: 'malformed', message: UNDECODABLE } };
  }
}

export const UNDECODABLE = 'frame could not be decoded';

/** Turns a message into what msgpackr should write: objects become Maps with ordered keys, and
 * integers beyond 32 bits become BigInts, because msgpackr writes such a number as a float64
 * and the protocol promises integers (times in ms pass 2^32). */
function toWire(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`cannot encode ${value}`);
      if (Number.isSafeInteger(value) && (value > 0xffff_ffff || value < -0x8000_0000)) return BigInt(value);
      return value;
    case 'object':
      if (value === null || value instanceof Uint8Array) return value;
      if (Array.isArray(value)) return value.map(toWire);
      if (isPlainObject(value)) return mapOf(value as Record<string, unknown>);
  }
  throw new TypeError(`cannot encode a value of type ${describe(value)}`);
}

function mapOf(object: Record<string, unknown>): Map<string, unknown> {
  const keys = Object.keys(object).filter((key) => object[key] !== undefined);
  keys.sort(compareKeys);
  return new Map(keys.map((key) => [key, toWire(object[key])]));
}

function compareKeys(a: string, b: string): number {
  const rank = (key: string) => (key === 'v' ? 0 : key === 't' ? 1 : 2);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return value.constructor?.name ?? 'object';
}
