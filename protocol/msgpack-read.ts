// A strict msgpack reader for frames from outside the process.
//
// Why not msgpackr's decoder (the encoder is our own too, see msgpack-write.ts): it is built
// for trusted data. It honours extension types a plain msgpack peer never sends (a record
// definition makes later fixints 0x40–0x7f decode as objects; structured-clone references
// make shared and cyclic values; Date, RegExp, Error, Set, typed arrays), it recurses once
// per nesting level, and without its native addon (in browsers) it strips a leading U+FEFF
// from strings longer than 64 bytes, so the same bytes decode differently by platform.
// Guarding it would take a pass over every token anyway; this reader is that pass, and builds
// the values as it goes.
//
// What it guarantees: every limit is checked against the bytes before anything is allocated;
// nesting is walked with an explicit stack, never recursion; the number of values is bounded,
// so no frame costs more to read than a legitimate full one; the only values it makes are
// null, booleans, safe numbers, valid UTF-8 strings, fresh Uint8Arrays, arrays and
// null-prototype objects whose keys are unique strings other than `__proto__`,
// `constructor` and `prototype`.

import { ProtocolError } from './errors.ts';
import type { CodecLimits } from './limits.ts';

export type WireValue = null | boolean | number | string | Uint8Array | WireValue[] | WireMap;
export interface WireMap {
  [key: string]: WireValue;
}

const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/* Short ASCII strings (message types, queue names, ids: most strings of a frame) are built
 * without TextDecoder, whose fixed cost per call (about 0.3 µs here) is several times the work
 * for a few bytes: by hand up to ASCII_BY_HAND_BYTES_MAX, beyond that by Buffer's latin1
 * decoding when the frame is a Buffer (as ws delivers it). ASCII is valid UTF-8 that decodes
 * byte for byte, so the result is the same, not a looser check. */
const ASCII_FAST_BYTES_MAX = 64;
const ASCII_BY_HAND_BYTES_MAX = 8;

/* Keys repeat in every frame (`t`, `rid`, `token`, `jobId` ...): the last string read for
 * each of a few hundred byte patterns is kept, and a key whose bytes match is not built
 * again. Only keys: values such as job ids differ every time and would only evict them. */
const KEY_CACHE_SLOTS = 512;
const KEY_CACHE_BYTES_MAX = 24;
const keyCacheBytes: (Uint8Array | undefined)[] = new Array(KEY_CACHE_SLOTS);
const keyCacheTexts: string[] = new Array(KEY_CACHE_SLOTS);

/** An array or map still being filled. */
interface Open {
  array: WireValue[] | null;
  map: WireMap | null;
  /** Values (array) or entries (map) still to read. */
  remaining: number;
  /** The key whose value is read next, in a map; null when a key is due. */
  key: string | null;
}

/** Reads one frame, which must be exactly one msgpack map. Throws only ProtocolError. */
export function readFrame(bytes: Uint8Array, limits: CodecLimits): WireMap {
  if (bytes.length > limits.frameBytesMax) {
    throw new ProtocolError({
      code: 'frame_too_large',
      message: `frame of ${bytes.length} bytes exceeds the limit of ${limits.frameBytesMax}`,
    });
  }
  const first = bytes[0];
  if (first === undefined || !(isFixMap(first) || first === 0xde || first === 0xdf)) {
    throw refuse('', 'a frame must be one msgpack map');
  }
  return new Reader(bytes, limits).frame();
}

class Reader {
  private pos = 0;
  /** Keys and values read so far, against limits.valuesMax. */
  private values = 0;
  private readonly stack: Open[] = [];
  private readonly view: DataView;
  /** The frame as a Node Buffer, when it is one. */
  private readonly buffer: Buffer | null;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly limits: CodecLimits,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.buffer = typeof Buffer === 'function' && Buffer.isBuffer(bytes) ? bytes : null;
  }

  frame(): WireMap {
    const stack = this.stack;
    for (;;) {
      const top = stack[stack.length - 1];
      if (top !== undefined && top.map !== null && top.key === null) {
        top.key = this.key(top.map);
        continue;
      }
      const token = this.token();
      let value: WireValue;
      const open = this.open(token);
      if (open === null) {
        value = this.scalar(token);
      } else if (open.remaining > 0) {
        stack.push(open);
        continue;
      } else {
        value = open.array ?? open.map!;
      }
      // Put the finished value into its parent, closing every container it completes.
      for (;;) {
        const parent = stack[stack.length - 1];
        if (parent === undefined) return this.end(value);
        if (parent.array !== null) {
          parent.array.push(value);
        } else {
          parent.map![parent.key!] = value;
          parent.key = null;
        }
        parent.remaining--;
        if (parent.remaining > 0) break;
        stack.pop();
        value = parent.array ?? parent.map!;
      }
    }
  }

  private end(value: WireValue): WireMap {
    if (this.pos !== this.bytes.length) throw refuse('', "trailing bytes after the frame's map");
    return value as WireMap; // readFrame checked that the first token opens a map
  }

  /** The next token, counted against the frame's budget of values: every value costs an
   * allocation or two, so without a budget a frame of a million empty maps (one byte each)
   * would cost seconds of CPU. */
  private token(): number {
    if (++this.values > this.limits.valuesMax) {
      throw this.refuse(`more than ${this.limits.valuesMax} keys and values in one frame`);
    }
    return this.bytes[this.advance(1)]!;
  }

  /** A container header, or null when the token is a scalar. */
  private open(token: number): Open | null {
    let length: number;
    let isMap: boolean;
    if (isFixMap(token)) [length, isMap] = [token & 0x0f, true];
    else if (token >= 0x90 && token <= 0x9f) [length, isMap] = [token & 0x0f, false];
    else if (token === 0xdc) [length, isMap] = [this.uint(2), false];
    else if (token === 0xdd) [length, isMap] = [this.uint(4), false];
    else if (token === 0xde) [length, isMap] = [this.uint(2), true];
    else if (token === 0xdf) [length, isMap] = [this.uint(4), true];
    else return null;
    if (this.stack.length + 1 > this.limits.depthMax) {
      throw this.refuse(`nesting deeper than ${this.limits.depthMax}`);
    }
    const [lengthMax, what] = isMap ? [this.limits.mapSizeMax, 'entries'] : [this.limits.arrayLengthMax, 'items'];
    if (length > lengthMax) {
      throw this.refuse(`${isMap ? 'map' : 'array'} of ${length} ${what} exceeds the limit of ${lengthMax}`);
    }
    // Every value takes at least one byte: a longer declaration cannot be honest.
    if ((isMap ? 2 * length : length) > this.bytes.length - this.pos) {
      throw this.refuse(`declares ${length} ${what} but the frame ends first`);
    }
    return isMap
      ? { array: null, map: Object.create(null) as WireMap, remaining: length, key: null }
      : { array: [], map: null, remaining: length, key: null };
  }

  private key(map: WireMap): string {
    const token = this.token();
    let length: number;
    if (token >= 0xa0 && token <= 0xbf) length = token & 0x1f;
    else if (token === 0xd9) length = this.uint(1);
    else if (token === 0xda) length = this.uint(2);
    else if (token === 0xdb) length = this.uint(4);
    else throw this.refuse('map keys must be strings');
    const key = length <= KEY_CACHE_BYTES_MAX ? this.cachedKey(length) : this.str(length);
    if (FORBIDDEN_KEYS.has(key)) throw this.refuse(`key "${key}" is forbidden`, key);
    if (Object.hasOwn(map, key)) throw this.refuse('duplicate key', key);
    return key;
  }

  private scalar(token: number): WireValue {
    if (token <= 0x7f) return token;
    if (token >= 0xe0) return token - 0x100;
    if (token >= 0xa0 && token <= 0xbf) return this.str(token & 0x1f);
    switch (token) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.uint(1));
      case 0xc5: return this.bin(this.uint(2));
      case 0xc6: return this.bin(this.uint(4));
      case 0xca: return this.view.getFloat32(this.advance(4));
      case 0xcb: return this.view.getFloat64(this.advance(8));
      case 0xcc: return this.uint(1);
      case 0xcd: return this.uint(2);
      case 0xce: return this.uint(4);
      case 0xcf: return this.int64(false);
      case 0xd0: return this.view.getInt8(this.advance(1));
      case 0xd1: return this.view.getInt16(this.advance(2));
      case 0xd2: return this.view.getInt32(this.advance(4));
      case 0xd3: return this.int64(true);
      case 0xd9: return this.str(this.uint(1));
      case 0xda: return this.str(this.uint(2));
      case 0xdb: return this.str(this.uint(4));
    }
    // Left: 0xc1 (never used) and the extension types 0xc7–0xc9, 0xd4–0xd8.
    if (token === 0xc1) throw this.refuse('byte 0xc1 is never used in msgpack');
    throw this.refuse('msgpack extension types are not used by this protocol');
  }

  /** 64-bit integers are accepted while they fit a double exactly (|n| ≤ 2^53 − 1). */
  private int64(signed: boolean): number {
    const at = this.advance(8);
    const high = signed ? this.view.getInt32(at) : this.view.getUint32(at);
    const value = high * 0x1_0000_0000 + this.view.getUint32(at + 4);
    if (!Number.isSafeInteger(value)) throw this.refuse('integer outside ±(2^53 − 1)');
    return value;
  }

  /** A key of at most KEY_CACHE_BYTES_MAX bytes, from the cache when it was read before. */
  private cachedKey(length: number): string {
    if (length > this.limits.stringBytesMax) return this.str(length); // refused there
    const bytes = this.bytes;
    const at = this.pos;
    if (length > bytes.length - at) return this.str(length); // refused there
    let hash = length;
    for (let i = 0; i < length; i++) hash = (Math.imul(hash, 31) + bytes[at + i]!) | 0;
    const slot = hash & (KEY_CACHE_SLOTS - 1);
    const cached = keyCacheBytes[slot];
    if (cached !== undefined && cached.length === length) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (cached[i] !== bytes[at + i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.pos += length;
        return keyCacheTexts[slot]!;
      }
    }
    const key = this.str(length);
    keyCacheBytes[slot] = bytes.slice(at, at + length);
    keyCacheTexts[slot] = key;
    return key;
  }

  private str(length: number): string {
    if (length > this.limits.stringBytesMax) {
      throw this.refuse(`string of ${length} bytes exceeds the limit of ${this.limits.stringBytesMax}`);
    }
    const at = this.advance(length);
    if (length <= ASCII_FAST_BYTES_MAX && isAscii(this.bytes, at, length)) {
      if (length <= ASCII_BY_HAND_BYTES_MAX) return asciiByHand(this.bytes, at, length);
      if (this.buffer !== null) return this.buffer.toString('latin1', at, at + length);
    }
    try {
      return utf8.decode(this.bytes.subarray(at, at + length));
    } catch {
      throw this.refuse('string is not valid UTF-8');
    }
  }

  private bin(length: number): Uint8Array {
    if (length > this.limits.binBytesMax) {
      throw this.refuse(`bin of ${length} bytes exceeds the limit of ${this.limits.binBytesMax}`);
    }
    const at = this.advance(length);
    // A copy, so a job holding its payload does not keep the whole frame alive, and a plain
    // Uint8Array even when the frame arrived as a Node Buffer.
    const copy = new Uint8Array(length);
    copy.set(this.bytes.subarray(at, at + length));
    return copy;
  }

  private uint(size: 1 | 2 | 4): number {
    const at = this.advance(size);
    if (size === 1) return this.bytes[at]!;
    return size === 2 ? this.view.getUint16(at) : this.view.getUint32(at);
  }

  /** Claims `size` bytes and returns where they start. */
  private advance(size: number): number {
    if (size > this.bytes.length - this.pos) throw this.refuse('frame ends inside a value');
    const at = this.pos;
    this.pos += size;
    return at;
  }

  /** A refusal naming where in the frame it happened: the path is built from the stack only
   * now, so reading a valid frame builds no strings for it. */
  private refuse(problem: string, key?: string): ProtocolError {
    let path = '';
    for (const open of this.stack) {
      if (open.array !== null) path = `${path}[${open.array.length}]`;
      else if (open.key !== null) path = joinKey(path, open.key);
    }
    return refuse(key === undefined ? path : joinKey(path, key), problem);
  }
}

function isAscii(bytes: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

function asciiByHand(bytes: Uint8Array, at: number, length: number): string {
  let text = '';
  for (let i = at; i < at + length; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

function isFixMap(token: number): boolean {
  return token >= 0x80 && token <= 0x8f;
}

/** Keys come from the sender, so a path quotes at most 64 UTF-16 units of one. */
export function joinKey(path: string, key: string): string {
  const shown = key.length > 64 ? `${clip(key, 64)}…` : key;
  return path === '' ? shown : `${path}.${shown}`;
}

/** The first `max` UTF-16 units of `text`, one fewer rather than half a surrogate pair. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

function refuse(field: string, problem: string): ProtocolError {
  const message = field === '' ? problem : `${field}: ${problem}`;
  return new ProtocolError(field === '' ? { code: 'malformed', message } : { code: 'malformed', message, field });
}
