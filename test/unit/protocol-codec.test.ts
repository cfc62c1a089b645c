// The codec on its own: what it writes, what it reads, and every way a frame from outside can
// be wrong. Hostile frames are built byte by byte, so that what is tested really is on the
// wire (an encoder would refuse or rewrite most of them).

import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeMessage, UNDECODABLE } from '../../protocol/codec.ts';
import { CODEC_LIMITS, type CodecLimits } from '../../protocol/limits.ts';
import type { WireValue } from '../../protocol/msgpack-read.ts';
import { fromHex, SAMPLES, toHex } from './protocol-samples.ts';

const utf8 = (s: string) => [...new TextEncoder().encode(s)];
/** A fixstr (or str8 when longer). */
const str = (s: string) => {
  const bytes = utf8(s);
  return bytes.length < 32 ? [0xa0 | bytes.length, ...bytes] : [0xd9, bytes.length, ...bytes];
};
const frame = (...bytes: number[]) => Uint8Array.from(bytes);
/** `{v: 1, <key>: <value bytes>}`. */
const withField = (key: number[], value: number[]) => frame(0x82, ...str('v'), 0x01, ...key, ...value);

function refusal(bytes: Uint8Array, limits?: CodecLimits) {
  const result = decodeFrame(bytes, limits);
  if (result.ok) throw new Error(`expected a refusal, decoded ${JSON.stringify(result.value)}`);
  return result.error;
}

function decoded(bytes: Uint8Array, limits?: CodecLimits) {
  const result = decodeFrame(bytes, limits);
  if (!result.ok) throw new Error(`expected a value, got ${result.error.message}`);
  return result.value;
}

describe('encoding', () => {
  it('writes v and t first, then keys in order, whatever order the object was built in', () => {
    const a = encodeMessage({ t: 'get', rid: 1, jobId: '03f-mjuohs00-5-16' });
    const b = encodeMessage({ jobId: '03f-mjuohs00-5-16', rid: 1, t: 'get' });
    expect(toHex(a)).toBe(toHex(b));
    expect(toHex(a.subarray(0, 16))).toBe('84a17601a174a3676574a56a6f624964');
  });

  it('writes integers beyond 32 bits as msgpack integers, not floats', () => {
    const bytes = encodeMessage({ t: 'x', at: 1_767_225_600_000, neg: -(2 ** 40) });
    expect(toHex(bytes)).toContain('d30000019b76daa800');
    expect(toHex(bytes)).toContain('d3ffffff0000000000');
    expect(decoded(bytes)).toMatchObject({ at: 1_767_225_600_000, neg: -(2 ** 40) });
  });

  it('writes 64..127 as positive fixints (records would reuse those bytes)', () => {
    expect(toHex(encodeMessage({ t: 'x', n: 100 }))).toBe('83a17601a174a178a16e64');
  });

  it('leaves out undefined fields and writes bytes as bin', () => {
    const bytes = encodeMessage({ t: 'x', gone: undefined, b: new Uint8Array([7]) });
    expect(toHex(bytes)).toBe('83a17601a174a178a162c40107');
  });

  it('refuses values that are not plain data (a programmer error)', () => {
    for (const bad of [new Date(0), new Map(), Number.NaN, Infinity, 10n, () => 1, Symbol('s')]) {
      expect(() => encodeMessage({ t: 'x', bad })).toThrow(TypeError);
    }
  });
});

describe('decoding', () => {
  it('reads every msgpack format it allows', () => {
    const cases: Array<[string, WireValue]> = [
      ['c0', null],
      ['c2', false],
      ['c3', true],
      ['7f', 127],
      ['e0', -32],
      ['cc ff', 255],
      ['cd ffff', 65535],
      ['ce ffffffff', 4294967295],
      ['cf 001fffffffffffff', Number.MAX_SAFE_INTEGER],
      ['d0 80', -128],
      ['d1 8000', -32768],
      ['d2 80000000', -2147483648],
      ['d3 ffe0000000000001', Number.MIN_SAFE_INTEGER],
      ['ca 3fc00000', 1.5],
      ['cb 3fd0000000000000', 0.25],
      ['a3 616263', 'abc'],
      ['d9 03 616263', 'abc'],
      ['da 0003 616263', 'abc'],
      ['db 00000003 616263', 'abc'],
      ['c4 02 0102', new Uint8Array([1, 2])],
      ['c5 0002 0102', new Uint8Array([1, 2])],
      ['c6 00000002 0102', new Uint8Array([1, 2])],
      ['92 01 02', [1, 2]],
      ['dc 0002 01 02', [1, 2]],
      ['dd 00000002 01 02', [1, 2]],
      ['90', []],
      ['80', {}],
      ['81 a1 61 01', { a: 1 }],
      ['de 0001 a1 61 01', { a: 1 }],
      ['df 00000001 a1 61 01', { a: 1 }],
    ];
    for (const [hex, value] of cases) {
      const bytes = fromHex(`81 a1 78 ${hex}`);
      expect(decoded(bytes), hex).toEqual({ x: value });
    }
  });

  it('gives null-prototype maps and fresh plain Uint8Arrays', () => {
    const input = Buffer.from(encodeMessage({ t: 'x', inner: { b: new Uint8Array([1, 2, 3]) } }));
    const value = decoded(input);
    const inner = value['inner'] as Record<string, WireValue>;
    expect(Object.getPrototypeOf(value)).toBe(null);
    expect(Object.getPrototypeOf(inner)).toBe(null);
    const b = inner['b'] as Uint8Array;
    expect(b.constructor).toBe(Uint8Array);
    input.fill(0);
    expect([...b]).toEqual([1, 2, 3]);
  });

  it('keeps a leading U+FEFF in long strings (msgpackr without its addon drops it)', () => {
    const text = `\uFEFF${'x'.repeat(100)}`;
    expect(decoded(encodeMessage({ t: 'x', s: text }))['s']).toBe(text);
  });

  it('reads the same strings from a Buffer as from a Uint8Array, ASCII or not, keys repeated or not', () => {
    const strings = ['', 'a', 'abcdefgh', 'abcdefghi', 'x'.repeat(64), 'x'.repeat(65), 'é', `${'x'.repeat(20)}é`, '\u0000\u007f', '😀'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...strings), { maxLength: 12 }), fc.string({ maxLength: 80 }), (keys, value) => {
        const message: Record<string, unknown> = { t: 'x' };
        keys.forEach((key, i) => (message[`${key}${i}`] = `${value}${key}`));
        const bytes = encodeMessage(message as { t: string });
        const fromBuffer = { ...decoded(Buffer.from(bytes)) };
        expect(fromBuffer).toEqual({ ...decoded(bytes) });
        expect(fromBuffer).toEqual({ v: 1, ...message });
      }),
    );
  });

  it('agrees with msgpackr on every sample', () => {
    const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'number' });
    const plain = (value: unknown): unknown => {
      if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, plain(v)]));
      if (Array.isArray(value)) return value.map(plain);
      if (value instanceof Uint8Array) return new Uint8Array(value);
      return value;
    };
    for (const sample of SAMPLES) {
      const bytes = encodeMessage(sample.message);
      expect({ ...decoded(bytes) }).toEqual(plain(unpackr.unpack(bytes)));
    }
  });
});

describe('the writer against msgpackr', () => {
  // msgpackr's encoder, given what it needs to write the protocol's way: keys ordered `v`, `t`,
  // then by code unit, and integers past 32 bits as BigInts (it writes those as int64).
  const packr = new Packr({ useRecords: false, moreTypes: false, structuredClone: false, bundleStrings: false });
  const reference = (value: unknown): unknown => {
    if (typeof value === 'number' && Number.isSafeInteger(value) && (value > 0xffff_ffff || value < -0x8000_0000)) return BigInt(value);
    if (Array.isArray(value)) return value.map(reference);
    if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
    const rank = (k: string) => (k === 'v' ? 0 : k === 't' ? 1 : 2);
    const keys = Object.keys(value).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    return new Map(keys.map((k) => [k, reference((value as Record<string, unknown>)[k])]));
  };
  const leaf = fc.oneof(
    fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
    fc.integer({ min: -70_000, max: 70_000 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
    fc.string({ unit: 'grapheme', maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.boolean(),
    fc.constant(null),
  );
  const tree = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 20 }),
    object: fc.dictionary(fc.string({ minLength: 1, maxLength: 40 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k)), tie('value'), { maxKeys: 20 }),
  })).value;

  it('writes the same bytes as msgpackr for any value a message may hold', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 2, maxLength: 10 }), tree, { maxKeys: 8 }), (fields) => {
        const message = { ...fields, t: 'x' };
        expect(toHex(encodeMessage(message))).toBe(toHex(packr.pack(reference({ ...message, v: 1 }))));
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('refusals', () => {
  it('checks the frame size before decoding anything', () => {
    const huge = new Uint8Array(CODEC_LIMITS.frameBytesMax + 1).fill(0xc1);
    expect(refusal(huge).code).toBe('frame_too_large');
  });

  it('refuses a frame that is not exactly one map', () => {
    for (const hex of ['', '91 01', '01', 'a1 61', 'c0']) {
      expect(refusal(fromHex(hex))).toMatchObject({ code: 'malformed', message: 'a frame must be one msgpack map' });
    }
    expect(refusal(fromHex('80 80')).message).toBe("trailing bytes after the frame's map");
  });

  it('refuses __proto__, constructor and prototype keys, at any depth', () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      expect(refusal(withField(str(key), [0x80]))).toMatchObject({ code: 'malformed', field: key });
      const nested = withField(str('job'), [0x81, ...str(key), 0x01]);
      expect(refusal(nested)).toMatchObject({ code: 'malformed', field: `job.${key}` });
      const inArray = withField(str('jobs'), [0x91, 0x81, ...str(key), 0x01]);
      expect(refusal(inArray)).toMatchObject({ code: 'malformed', field: `jobs[0].${key}` });
    }
  });

  it('refuses duplicate keys and keys that are not strings', () => {
    const twice = frame(0x82, ...str('a'), 0x01, ...str('a'), 0x02);
    expect(refusal(twice)).toMatchObject({ field: 'a', message: 'a: duplicate key' });
    for (const key of [[0x01], [0xc4, 0x01, 0x61], [0x91, 0x01], [0xc0], [0x80]]) {
      expect(refusal(withField(key, [0x01])).message).toBe('map keys must be strings');
    }
  });

  it('refuses nesting deeper than the limit without recursing', () => {
    const depth = 100_000;
    const arrays = new Uint8Array(4 + depth + 1).fill(0x91);
    arrays.set([0x81, ...str('x')], 0);
    arrays[arrays.length - 1] = 0xc0;
    expect(refusal(arrays).message).toMatch(/nesting deeper than 32$/);
    const maps = frame(0x81, ...str('x'), ...Array.from({ length: 40 }, () => [0x81, ...str('k')]).flat(), 0x01);
    expect(refusal(maps).message).toMatch(/nesting deeper than 32$/);
    const limit = [0x81, ...str('x'), ...new Array<number>(30).fill(0x91), 0x90];
    expect(decoded(Uint8Array.from(limit))).toBeDefined(); // exactly 32 levels
  });

  it('bounds the values of one frame, so a frame of tiny values costs no more than a real one', () => {
    // {x: [[{}, {}, …], …]}: a megabyte of empty maps would be a million allocations.
    const head = [0x81, ...str('x'), 0xdc, 0x00, 0xff];
    const inner = [0xdc, 0x0f, 0xff, ...new Array<number>(4095).fill(0x80)];
    const bytes = new Uint8Array(head.length + 255 * inner.length);
    bytes.set(head);
    for (let i = 0; i < 255; i++) bytes.set(inner, head.length + i * inner.length);
    expect(bytes.length).toBeLessThan(CODEC_LIMITS.frameBytesMax);
    // 3 values before the inner arrays, 4096 in each of the first 15, the 16th's own, then maps.
    expect(refusal(bytes).message).toBe('x[15][4092]: more than 65536 keys and values in one frame');
  });

  it('refuses huge declared lengths before allocating', () => {
    for (const hex of ['dd ffffffff', 'df ffffffff', 'db ffffffff', 'c6 ffffffff', 'dc ffff', 'de ffff']) {
      const error = refusal(fromHex(`81 a1 78 ${hex} 00`));
      expect(error.code, hex).toBe('malformed');
      expect(error.field).toBe('x');
    }
    // Within the limits, but longer than what is left of the frame.
    expect(refusal(fromHex('81 a1 78 dc 0fa0 01 02')).message).toBe('x: declares 4000 items but the frame ends first');
  });

  it('enforces each structural limit', () => {
    const tight: CodecLimits = {
      frameBytesMax: 64,
      stringBytesMax: 4,
      binBytesMax: 2,
      arrayLengthMax: 2,
      mapSizeMax: 2,
      depthMax: 2,
      valuesMax: 9,
    };
    expect(refusal(withField(str('s'), str('12345')), tight).message).toBe('s: string of 5 bytes exceeds the limit of 4');
    expect(refusal(withField(str('b'), [0xc4, 3, 1, 2, 3]), tight).message).toBe('b: bin of 3 bytes exceeds the limit of 2');
    expect(refusal(withField(str('a'), [0x93, 1, 2, 3]), tight).message).toBe('a: array of 3 items exceeds the limit of 2');
    const threeEntries = frame(0x83, ...str('a'), 1, ...str('b'), 2, ...str('c'), 3);
    expect(refusal(threeEntries, tight).message).toBe('map of 3 entries exceeds the limit of 2');
    expect(refusal(withField(str('a'), [0x91, 0x90]), tight).message).toBe('a[0]: nesting deeper than 2');
    expect(refusal(new Uint8Array(65).fill(0x80), tight).code).toBe('frame_too_large');
    expect(decoded(withField(str('s'), str('1234')), tight)).toEqual({ v: 1, s: '1234' });
    // {a: [[], []], b: [[], []]} is 2 keys and 7 values; one more value is too many.
    const nine = frame(0x82, ...str('a'), 0x92, 0x90, 0x90, ...str('b'), 0x92, 0x90, 0x90);
    expect(decoded(nine, { ...tight, depthMax: 3 })).toEqual({ a: [[], []], b: [[], []] });
    const ten = frame(0x82, ...str('a'), 0x92, 0x90, 0x90, ...str('b'), 0x92, 0x90, 0x91, 0x01);
    expect(refusal(ten, { ...tight, depthMax: 3 }).message).toBe('b[1][0]: more than 9 keys and values in one frame');
  });

  it('refuses truncated frames: every proper prefix of every sample', () => {
    for (const sample of SAMPLES) {
      const bytes = encodeMessage(sample.message);
      for (let end = 0; end < bytes.length; end++) {
        expect(refusal(bytes.subarray(0, end)).code).toBe('malformed');
      }
    }
  });

  it('refuses extension types and the never-used byte', () => {
    const values = [
      'd6 ff 00000000', // timestamp 32
      'd4 00 00', // msgpackr's undefined
      'd4 72 40 91 a1 79', // msgpackr record definition
      'c7 01 05 00', // ext 8
      'c8 0001 05 00',
      'c9 00000001 05 00',
      'd5 05 0000',
      'd7 05 0000000000000000',
      'd8 05 00000000000000000000000000000000',
    ];
    for (const hex of values) {
      const error = refusal(fromHex(`81 a1 78 ${hex}`));
      expect(error.message, hex).toBe('x: msgpack extension types are not used by this protocol');
    }
    expect(refusal(fromHex('81 a1 78 c1')).message).toBe('x: byte 0xc1 is never used in msgpack');
  });

  it('refuses invalid UTF-8 in values and keys', () => {
    for (const bad of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80] /* a surrogate */, [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
      expect(refusal(withField(str('s'), [0xa0 | bad.length, ...bad])).message).toBe('s: string is not valid UTF-8');
      expect(refusal(withField([0xa0 | bad.length, ...bad], [0x01])).message).toBe('string is not valid UTF-8');
    }
  });

  it('refuses 64-bit integers a double cannot hold exactly', () => {
    expect(refusal(fromHex('81 a1 78 cf 0020000000000000')).message).toBe('x: integer outside ±(2^53 − 1)');
    expect(refusal(fromHex('81 a1 78 d3 ffe0000000000000')).message).toBe('x: integer outside ±(2^53 − 1)');
    expect(refusal(fromHex('81 a1 78 cf ffffffffffffffff')).code).toBe('malformed');
  });
});

describe('fuzzing', () => {
  const encoded = SAMPLES.map((sample) => encodeMessage(sample.message));

  /** Never throws, and a refusal is always one of the reader's own, never the catch-all. */
  function survives(bytes: Uint8Array): void {
    const result = decodeFrame(bytes);
    if (!result.ok) expect(result.error.message).not.toBe(UNDECODABLE);
  }

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), survives), { numRuns: 5000 });
  });

  it('random bytes behind a map header', () => {
    const headed = fc.uint8Array({ maxLength: 300 }).chain((tail) =>
      fc.constantFrom(0x81, 0x85, 0x8f, 0xde).map((head) => Uint8Array.from([head, ...tail])),
    );
    fc.assert(fc.property(headed, survives), { numRuns: 5000 });
  });

  it('mutated valid frames', () => {
    const mutated = fc
      .tuple(
        fc.constantFrom(...encoded),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
      )
      .map(([bytes, edits, cut]) => {
        const copy = Uint8Array.from(bytes);
        for (const [at, byte] of edits) copy[at % copy.length] = byte;
        return cut % 4 === 0 ? copy.subarray(0, cut % (copy.length + 1)) : copy;
      });
    fc.assert(fc.property(mutated, survives), { numRuns: 10_000 });
  });
});
