// The msgpack writer of the codec. It writes exactly the values a message may hold (null,
// booleans, finite numbers, strings, bytes, arrays, plain objects), each in its shortest
// standard form, map keys in the codec's canonical order, straight into one growing buffer.
//
// Why not msgpackr's encoder: it needs every object turned into an ordered Map and every
// integer past 32 bits into a BigInt first (it would write those as float64, and the protocol
// promises integers), and that conversion cost more than the encoding itself: encoding was a
// tenth of a busy node's CPU. The golden fixtures pin the bytes, so the two cannot differ.

const utf8 = new TextEncoder();

export class MsgpackWriter {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  /** Encodes `value` and returns a copy of the bytes; the writer is reusable. */
  encode(value: unknown): Uint8Array {
    this.pos = 0;
    this.value(value);
    return this.buf.slice(0, this.pos);
  }

  /** Encodes `object` with a `v` field of `version` added (in place of any of its own), as
   * encode({ ...object, v: version }) would, without building that copy. */
  encodeVersioned(object: Record<string, unknown>, version: number): Uint8Array {
    this.pos = 0;
    this.map(object, version);
    return this.buf.slice(0, this.pos);
  }

  private value(value: unknown): void {
    switch (typeof value) {
      case 'string':
        return this.string(value);
      case 'number':
        return this.number(value);
      case 'boolean':
        return this.byte(value ? 0xc3 : 0xc2);
      case 'object':
        if (value === null) return this.byte(0xc0);
        if (value instanceof Uint8Array) return this.bytes(value);
        if (Array.isArray(value)) return this.array(value);
        if (isPlainObject(value)) return this.map(value as Record<string, unknown>);
    }
    throw new TypeError(`cannot encode a value of type ${describe(value)}`);
  }

  private number(n: number): void {
    if (!Number.isFinite(n)) throw new TypeError(`cannot encode ${n}`);
    if (!Number.isSafeInteger(n)) {
      this.ensure(9);
      this.buf[this.pos] = 0xcb;
      this.view.setFloat64(this.pos + 1, n);
      this.pos += 9;
      return;
    }
    if (n >= 0) {
      if (n < 0x80) return this.byte(n);
      if (n < 0x100) return this.head(0xcc, n, 1);
      if (n < 0x10000) return this.head(0xcd, n, 2);
      if (n < 0x100000000) return this.head(0xce, n, 4);
      return this.int64(n);
    }
    if (n >= -0x20) return this.byte(n & 0xff);
    if (n >= -0x80) return this.head(0xd0, n, 1);
    if (n >= -0x8000) return this.head(0xd1, n, 2);
    if (n >= -0x80000000) return this.head(0xd2, n, 4);
    this.int64(n);
  }

  /** Integers past 32 bits are int64 whatever their sign (what the fixtures pinned). */
  private int64(n: number): void {
    this.ensure(9);
    this.buf[this.pos] = 0xd3;
    this.view.setBigInt64(this.pos + 1, BigInt(n));
    this.pos += 9;
  }

  private string(s: string): void {
    // Short ASCII strings (keys, ids, queue names: most of a frame) are copied by hand, which
    // is several times faster than a call into TextEncoder.
    if (s.length < 32) {
      this.ensure(1 + s.length);
      const start = this.pos;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        this.buf[start + 1 + i] = c;
      }
      if (i === s.length) {
        this.buf[start] = 0xa0 | s.length;
        this.pos = start + 1 + s.length;
        return;
      }
    }
    // At most 3 bytes per UTF-16 unit; reserve the header and write in place.
    this.ensure(5 + s.length * 3);
    const start = this.pos;
    const headerBytes = s.length < 32 ? 1 : s.length * 3 < 0x100 ? 2 : s.length * 3 < 0x10000 ? 3 : 5;
    const { written } = utf8.encodeInto(s, this.buf.subarray(start + headerBytes));
    const needed = written < 32 ? 1 : written < 0x100 ? 2 : written < 0x10000 ? 3 : 5;
    if (needed !== headerBytes) this.buf.copyWithin(start + needed, start + headerBytes, start + headerBytes + written);
    if (needed === 1) this.buf[start] = 0xa0 | written;
    else if (needed === 2) (this.buf[start] = 0xd9), (this.buf[start + 1] = written);
    else if (needed === 3) (this.buf[start] = 0xda), this.view.setUint16(start + 1, written);
    else (this.buf[start] = 0xdb), this.view.setUint32(start + 1, written);
    this.pos = start + needed + written;
  }

  private bytes(b: Uint8Array): void {
    const n = b.length;
    if (n < 0x100) this.head(0xc4, n, 1);
    else if (n < 0x10000) this.head(0xc5, n, 2);
    else this.head(0xc6, n, 4);
    this.ensure(n);
    this.buf.set(b, this.pos);
    this.pos += n;
  }

  private array(items: unknown[]): void {
    const n = items.length;
    if (n < 16) this.byte(0x90 | n);
    else if (n < 0x10000) this.head(0xdc, n, 2);
    else this.head(0xdd, n, 4);
    for (const item of items) this.value(item);
  }

  private map(object: Record<string, unknown>, version?: number): void {
    const keys: string[] = [];
    for (const key in object) if (object[key] !== undefined && !(version !== undefined && key === 'v')) keys.push(key);
    // Objects built in the canonical order need no sort; checking costs a compare per key.
    for (let i = 1; i < keys.length; i++) {
      if (compareKeys(keys[i - 1]!, keys[i]!) > 0) {
        keys.sort(compareKeys);
        break;
      }
    }
    const n = keys.length + (version === undefined ? 0 : 1);
    if (n < 16) this.byte(0x80 | n);
    else if (n < 0x10000) this.head(0xde, n, 2);
    else this.head(0xdf, n, 4);
    if (version !== undefined) {
      this.string('v');
      this.number(version);
    }
    for (const key of keys) {
      this.string(key);
      this.value(object[key]);
    }
  }

  /** A type byte followed by an unsigned (or two's complement) big-endian integer. */
  private head(type: number, n: number, size: 1 | 2 | 4): void {
    this.ensure(1 + size);
    this.buf[this.pos] = type;
    if (size === 1) this.buf[this.pos + 1] = n & 0xff;
    else if (size === 2) this.view.setUint16(this.pos + 1, n & 0xffff);
    else this.view.setUint32(this.pos + 1, n >>> 0);
    this.pos += 1 + size;
  }

  private byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + extra) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }
}

/** `v`, then `t`, then the other keys in code-unit order. */
function compareKeys(a: string, b: string): number {
  const ra = a === 'v' ? 0 : a === 't' ? 1 : 2;
  const rb = b === 'v' ? 0 : b === 't' ? 1 : 2;
  return ra - rb || (a < b ? -1 : a > b ? 1 : 0);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return value.constructor?.name ?? 'object';
}
