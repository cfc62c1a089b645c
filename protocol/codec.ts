// The codec: one frame is one msgpack map with `v` (protocol version) and `t` (message type).
// Encoding goes through the writer in msgpack-write.ts, decoding through the strict reader in
// msgpack-read.ts (why not msgpackr's, in either direction: see each file; the tests check both
// against msgpackr byte for byte). Neither knows the messages: validate.ts checks what a
// decoded map means.

import type { ErrorBody } from './errors.ts';
import { ProtocolError } from './errors.ts';
import { CODEC_LIMITS, PROTOCOL_VERSION, type CodecLimits } from './limits.ts';
import { readFrame, type WireMap } from './msgpack-read.ts';
import { MsgpackWriter } from './msgpack-write.ts';

const writer = new MsgpackWriter();

/** Encodes one message. Adds `v`; the message supplies `t` and its fields. Optional fields
 * that are undefined are left out. Keys are written `v`, `t`, then in code-unit order, so a
 * message has one encoding whatever order its object was built in (the golden fixtures rely
 * on it); receivers accept any order. Integers are written as integers in their shortest form
 * (times in ms pass 2^32 and go out as int64), other numbers as float64. Throws only on a
 * programmer error: a value that is not null, boolean, finite number, string, Uint8Array,
 * array or plain object. */
export function encodeMessage<M extends { t: string }>(message: M, version: number = PROTOCOL_VERSION): Uint8Array {
  return writer.encodeVersioned(message as unknown as Record<string, unknown>, version);
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
