// Array parameters in PostgreSQL's binary format (what array_send writes and array_recv
// reads). node-postgres sends a Buffer parameter as binary, and `$1::int[]` tells the server
// its type. The multi-row writes send about twenty 1,000-element arrays per statement: as
// text, node-postgres escapes every element and the server parses every element back (hex for
// bytea); in binary, each element is a length and its bytes on both sides. Measured on this
// (shared, noisy) 2-core machine, per 1,000-row insert: 6-8 ms to build the arrays as text,
// 2.6-4 ms in binary, and 10-25% less server CPU.

export type ArrayElementType = 'text' | 'int' | 'bigint' | 'float8' | 'bytea';
export type ArrayElement = string | number | Uint8Array | null;

const ELEMENT_OID: Record<ArrayElementType, number> = { int: 23, bigint: 20, float8: 701, text: 25, bytea: 17 };
const FIXED_WIDTH: Partial<Record<ArrayElementType, number>> = { int: 4, bigint: 8, float8: 8 };
const HEADER_BYTES = 12; // ndim, has-nulls flag, element type
const DIMENSION_BYTES = 8; // length and lower bound of the one dimension

/** A one-dimensional array of `type` with these elements (null for SQL NULL). */
export function binaryArray(type: ArrayElementType, values: readonly ArrayElement[]): Buffer {
  const fixed = FIXED_WIDTH[type];
  const sizes = new Int32Array(values.length);
  // An empty array has no dimension at all (ndim 0), as array_send writes it.
  let total = HEADER_BYTES + (values.length > 0 ? DIMENSION_BYTES : 0);
  let hasNull = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    const size = value === null ? -1 : (fixed ?? (typeof value === 'string' ? Buffer.byteLength(value) : (value as Uint8Array).byteLength));
    if (size < 0) hasNull = 1;
    sizes[i] = size;
    total += 4 + Math.max(size, 0);
  }
  const out = Buffer.allocUnsafe(total);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setInt32(0, values.length > 0 ? 1 : 0);
  view.setInt32(4, hasNull);
  view.setUint32(8, ELEMENT_OID[type]);
  let at = HEADER_BYTES;
  if (values.length > 0) {
    view.setInt32(at, values.length);
    view.setInt32(at + 4, 1);
    at += DIMENSION_BYTES;
  }
  for (let i = 0; i < values.length; i++) {
    view.setInt32(at, sizes[i]!);
    at += 4;
    const value = values[i]!;
    if (value !== null) at = writeElement(out, view, at, type, value);
  }
  if (at !== total) throw new Error(`binaryArray: wrote ${at} of ${total} bytes`);
  return out;
}

function writeElement(out: Buffer, view: DataView, at: number, type: ArrayElementType, value: string | number | Uint8Array): number {
  switch (type) {
    case 'int':
      view.setInt32(at, value as number);
      return at + 4;
    case 'bigint': {
      // Two 32-bit halves: exact for every safe integer, without a BigInt per element.
      const high = Math.floor((value as number) / 2 ** 32);
      view.setInt32(at, high);
      view.setUint32(at + 4, (value as number) - high * 2 ** 32);
      return at + 8;
    }
    case 'float8':
      view.setFloat64(at, value as number);
      return at + 8;
    case 'text':
      return at + out.write(value as string, at);
    case 'bytea':
      out.set(value as Uint8Array, at);
      return at + (value as Uint8Array).byteLength;
  }
}
