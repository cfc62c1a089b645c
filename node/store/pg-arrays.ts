// Array parameters in PostgreSQL's binary format (what array_send writes and array_recv
// reads). node-postgres sends a Buffer parameter as binary, and `$1::int[]` tells the server
// its type. The multi-row writes send about twenty 1,000-element arrays per statement: as text,
// node-postgres escapes every element and the server parses every element back (hex for
// bytea); in binary, each element is a length and its bytes on both sides, which cut the CPU
// of a commit by about a third on the store benchmark (test/bench/store-bench.ts).

export type ArrayElementType = 'text' | 'int' | 'bigint' | 'float8' | 'bytea';
export type ArrayElement = string | number | Uint8Array | null;

const ELEMENT_OID: Record<ArrayElementType, number> = { int: 23, bigint: 20, float8: 701, text: 25, bytea: 17 };
const FIXED_WIDTH: Partial<Record<ArrayElementType, number>> = { int: 4, bigint: 8, float8: 8 };
const HEADER_BYTES = 12; // ndim, has-nulls flag, element type
const DIMENSION_BYTES = 8; // length, lower bound

/** A one-dimensional array of `type` with these elements (null for SQL NULL). */
export function binaryArray(type: ArrayElementType, values: readonly ArrayElement[]): Buffer {
  const sizes = values.map((value) => elementSize(type, value));
  const total = HEADER_BYTES + (values.length > 0 ? DIMENSION_BYTES : 0) + sizes.reduce((sum, size) => sum + 4 + Math.max(size, 0), 0);
  const out = Buffer.allocUnsafe(total);
  let at = out.writeInt32BE(values.length > 0 ? 1 : 0, 0);
  at = out.writeInt32BE(values.includes(null) ? 1 : 0, at);
  at = out.writeUInt32BE(ELEMENT_OID[type], at);
  if (values.length > 0) {
    at = out.writeInt32BE(values.length, at);
    at = out.writeInt32BE(1, at);
  }
  values.forEach((value, i) => {
    at = out.writeInt32BE(sizes[i]!, at);
    if (value !== null) at = writeElement(out, at, type, value);
  });
  if (at !== total) throw new Error(`binaryArray: wrote ${at} of ${total} bytes`);
  return out;
}

function elementSize(type: ArrayElementType, value: ArrayElement): number {
  if (value === null) return -1;
  const fixed = FIXED_WIDTH[type];
  if (fixed !== undefined) return fixed;
  return typeof value === 'string' ? Buffer.byteLength(value) : (value as Uint8Array).byteLength;
}

function writeElement(out: Buffer, at: number, type: ArrayElementType, value: string | number | Uint8Array): number {
  switch (type) {
    case 'int':
      return out.writeInt32BE(value as number, at);
    case 'bigint': {
      // Two 32-bit halves: exact for every safe integer, without a BigInt per element.
      const high = Math.floor((value as number) / 2 ** 32);
      at = out.writeInt32BE(high, at);
      return out.writeUInt32BE((value as number) - high * 2 ** 32, at);
    }
    case 'float8':
      return out.writeDoubleBE(value as number, at);
    case 'text':
      return at + out.write(value as string, at, 'utf8');
    case 'bytea':
      out.set(value as Uint8Array, at);
      return at + (value as Uint8Array).byteLength;
  }
}
