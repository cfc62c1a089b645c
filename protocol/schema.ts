// A small schema toolkit for checking decoded frames. A schema checks one value and returns it
// typed, or an `Invalid` naming the field path and what is wrong with it. Checks return rather
// than throw: a bad frame is an expected outcome, and returning keeps the combinators plain.
//
// Every schema also carries `meta`, a description of what it accepts. The property tests turn
// it into random valid messages, so every message type is covered without a hand-written
// generator for each.
//
// String lengths are counted in Unicode code points (what Python's len, Go's
// utf8.RuneCountInString and Postgres' char_length count), so a client in any language can
// check them before sending.

import { joinKey, type WireMap } from './msgpack-read.ts';

export class Invalid {
  constructor(
    /** Path of the offending value from the value checked, e.g. `jobs[3].priority`; '' for
     * that value itself. */
    readonly field: string,
    readonly problem: string,
  ) {}

  get message(): string {
    return this.field === '' ? this.problem : `${this.field}: ${this.problem}`;
  }

  /** The same problem as the map or array holding the value sees it: under its field `step`
   * (a key, which may come from the sender) or item index `step`. Paths are built this way,
   * from the bottom, so that a valid message, by far the common case, builds none. */
  within(step: string | number): Invalid {
    const head = typeof step === 'number' ? `[${step}]` : joinKey('', step);
    const field = this.field === '' ? head : this.field.startsWith('[') ? `${head}${this.field}` : `${head}.${this.field}`;
    return new Invalid(field, this.problem);
  }
}

/** A named check on strings beyond their length, e.g. that a string is a job id. */
export interface StringFormat {
  readonly name: string;
  test(value: string): boolean;
}

export type Meta =
  | { kind: 'str'; minChars: number; maxChars: number; format: StringFormat | null }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'num'; min: number; max: number }
  | { kind: 'bool' }
  | { kind: 'bin'; maxBytes: number }
  | { kind: 'oneOf'; values: readonly string[] }
  | { kind: 'arr'; item: AnySchema; maxLength: number }
  | { kind: 'nullable'; inner: AnySchema }
  | { kind: 'obj'; fields: Readonly<Record<string, FieldSpec>> }
  | { kind: 'refine'; inner: AnySchema }
  | { kind: 'keyed'; key: string; withKey: AnySchema; withoutKey: AnySchema }
  | { kind: 'tagged'; variants: ReadonlyMap<string, AnySchema> };

/** Invariant in T, so `const s: Schema<Submit> = obj({...})` fails to compile when the fields
 * and the declared type disagree. */
export interface Schema<in out T> {
  readonly meta: Meta;
  check(value: unknown): T | Invalid;
}

/** A schema of any type: under invariance only `any` can name it. */
export type AnySchema = Schema<any>;

export interface FieldSpec {
  readonly schema: AnySchema;
  readonly optional: boolean;
}

/** Marks a field of `obj` that may be absent. Absent means absent: nil is not accepted in its
 * place unless the field's schema is `nullable`. */
export interface Optional<in out T> {
  readonly optionalOf: Schema<T>;
}

export function opt<T>(schema: Schema<T>): Optional<T> {
  return { optionalOf: schema };
}

function schema<T>(meta: Meta, check: (value: unknown) => T | Invalid): Schema<T> {
  return { meta, check };
}

export function str(maxChars: number, options: { minChars?: number; format?: StringFormat } = {}): Schema<string> {
  const minChars = options.minChars ?? 0;
  const format = options.format ?? null;
  const range = minChars > 0 ? `${minChars} to ${maxChars} characters` : `at most ${maxChars} characters`;
  return schema({ kind: 'str', minChars, maxChars, format }, (value) => {
    if (typeof value !== 'string') return new Invalid('', 'must be a string');
    // A string has at least length/2 and at most length code points: count only when that
    // range does not settle it.
    if (value.length > maxChars || value.length < 2 * minChars) {
      const chars = codePoints(value);
      if (chars > maxChars || chars < minChars) return new Invalid('', `must be ${range}`);
    }
    if (format !== null && !format.test(value)) return new Invalid('', `must be ${format.name}`);
    return value;
  });
}

function codePoints(value: string): number {
  let count = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

export function int(min: number, max: number): Schema<number> {
  return schema({ kind: 'int', min, max }, (value) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return new Invalid('', `must be an integer in [${min}, ${max}]`);
    }
    return value;
  });
}

/** Any finite number in [min, max], integer or not. */
export function num(min: number, max: number): Schema<number> {
  return schema({ kind: 'num', min, max }, (value) => {
    if (typeof value !== 'number' || !(value >= min && value <= max)) {
      return new Invalid('', `must be a number in [${min}, ${max}]`);
    }
    return value;
  });
}

export const bool: Schema<boolean> = schema({ kind: 'bool' }, (value) =>
  typeof value === 'boolean' ? value : new Invalid('', 'must be a boolean'),
);

export function bin(maxBytes: number): Schema<Uint8Array> {
  return schema({ kind: 'bin', maxBytes }, (value) => {
    if (!(value instanceof Uint8Array)) return new Invalid('', 'must be bytes (msgpack bin)');
    if (value.length > maxBytes) return new Invalid('', `must be at most ${maxBytes} bytes`);
    return value;
  });
}

export function oneOf<const L extends string>(values: readonly L[]): Schema<L> {
  const expected = values.map((v) => `"${v}"`).join(', ');
  return schema({ kind: 'oneOf', values }, (value) => {
    if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
      return new Invalid('', values.length === 1 ? `must be ${expected}` : `must be one of ${expected}`);
    }
    return value as L;
  });
}

export function literal<const L extends string>(value: L): Schema<L> {
  return oneOf([value]);
}

export function arr<T>(item: Schema<T>, maxLength: number): Schema<T[]> {
  return schema({ kind: 'arr', item, maxLength }, (value) => {
    if (!Array.isArray(value)) return new Invalid('', 'must be an array');
    if (value.length > maxLength) return new Invalid('', `must have at most ${maxLength} items`);
    const out: T[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const checked = item.check(value[i]);
      if (checked instanceof Invalid) return checked.within(i);
      out[i] = checked;
    }
    return out;
  });
}

export function nullable<T>(inner: Schema<T>): Schema<T | null> {
  return schema({ kind: 'nullable', inner }, (value) => (value === null ? null : inner.check(value)));
}

type Fields = Record<string, AnySchema | Optional<any>>;
type RequiredPart<F> = {
  [K in keyof F as F[K] extends Optional<any> ? never : K]: F[K] extends Schema<infer T> ? T : never;
};
type OptionalPart<F> = {
  [K in keyof F as F[K] extends Optional<any> ? K : never]?: F[K] extends Optional<infer T> ? T : never;
};
export type ObjOf<F> = { [K in keyof (RequiredPart<F> & OptionalPart<F>)]: (RequiredPart<F> & OptionalPart<F>)[K] };

/** A map with exactly these fields: a missing required field and any field not listed are
 * refused. The value returned is a fresh plain object holding only the listed fields, in the
 * listed order. */
export function obj<const F extends Fields>(fields: F): Schema<ObjOf<F>> {
  const specs: Record<string, FieldSpec> = {};
  for (const [name, field] of Object.entries(fields)) {
    specs[name] =
      'optionalOf' in field ? { schema: field.optionalOf, optional: true } : { schema: field, optional: false };
  }
  const names = Object.keys(specs);
  const fieldSpecs = names.map((name) => specs[name]!);
  return schema({ kind: 'obj', fields: specs }, (value) => {
    if (!isMap(value)) return new Invalid('', 'must be a map');
    const keys = Object.keys(value);
    let known = 0;
    for (const name of names) if (Object.hasOwn(value, name)) known++;
    if (known !== keys.length) {
      const unknown = keys.find((key) => !Object.hasOwn(specs, key))!;
      return new Invalid(joinKey('', unknown), 'unknown field');
    }
    const out: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const field = value[name];
      if (field === undefined) {
        if (fieldSpecs[i]!.optional) continue;
        return new Invalid(name, 'is required');
      }
      const checked = fieldSpecs[i]!.schema.check(field);
      if (checked instanceof Invalid) return checked.within(name);
      out[name] = checked;
    }
    return out as ObjOf<F>;
  });
}

/** Adds a check across fields, run after `inner` accepted the value. */
export function refine<T>(inner: Schema<T>, problem: (value: T) => Invalid | null): Schema<T> {
  return schema({ kind: 'refine', inner }, (value) => {
    const checked = inner.check(value);
    if (checked instanceof Invalid) return checked;
    return problem(checked) ?? checked;
  });
}

/** One of two map shapes, told apart by whether `key` is present. */
export function keyed<A, B>(key: string, withKey: Schema<A>, withoutKey: Schema<B>): Schema<A | B> {
  return schema({ kind: 'keyed', key, withKey, withoutKey }, (value) => {
    if (!isMap(value)) return new Invalid('', 'must be a map');
    return Object.hasOwn(value, key) ? withKey.check(value) : withoutKey.check(value);
  });
}

/** A schema for every message of a family, keyed by `t`: the compiler insists on all of them. */
export type SchemaTable<T extends { t: string }> = { [K in T['t']]: Schema<Extract<T, { t: K }>> };

/** One of several messages, told apart by their `t`. */
export function tagged<T extends { t: string }>(variants: SchemaTable<T>): Schema<T> {
  // A Map, not the object: `t` comes from outside and must not find `constructor` and friends.
  const table = new Map<string, AnySchema>(Object.entries(variants));
  return schema({ kind: 'tagged', variants: table }, (value) => {
    if (!isMap(value)) return new Invalid('', 'must be a map');
    const t = value['t'];
    const variant = typeof t === 'string' ? table.get(t) : undefined;
    if (variant === undefined) {
      const names = [...table.keys()].map((k) => `"${k}"`).join(', ');
      return new Invalid('t', `must be one of ${names}`);
    }
    return variant.check(value) as T | Invalid;
  });
}

function isMap(value: unknown): value is WireMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
