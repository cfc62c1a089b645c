// fast-check arbitraries derived from the protocol's schemas (their `meta`), so the property
// tests cover every message type, and every field of it, without a generator per type. Sizes
// are kept small: the properties are about structure, the limit tests are about size.

import fc from 'fast-check';
import { formatJobId } from '../../protocol/job-id.ts';
import { jobIdSchema } from '../../protocol/job-view.ts';
import { Invalid, type AnySchema, type Meta } from '../../protocol/schema.ts';

const JOB_ID_FORMAT = (jobIdSchema.meta as Extract<Meta, { kind: 'str' }>).format;

const jobIds = fc
  .record({
    shard: fc.integer({ min: 0, max: 0xffff }),
    scheduledAtMs: fc.integer({ min: 0, max: 4_102_444_800_000 }),
    epoch: fc.integer({ min: 0, max: 2 ** 40 }),
    seq: fc.integer({ min: 0, max: 2 ** 40 }),
  })
  .map(formatJobId);

export function arbitraryOf(schema: AnySchema): fc.Arbitrary<unknown> {
  const meta = schema.meta;
  switch (meta.kind) {
    case 'str':
      if (meta.format !== null) {
        if (meta.format !== JOB_ID_FORMAT) throw new Error(`no arbitrary for format ${meta.format.name}`);
        return jobIds;
      }
      return fc.string({ unit: 'binary', minLength: meta.minChars, maxLength: Math.min(meta.maxChars, 12) });
    case 'int':
      return fc.integer({ min: meta.min, max: meta.max });
    case 'num':
      // -0 encodes as 0; the protocol does not keep the sign of zero.
      return fc.double({ min: meta.min, max: meta.max, noNaN: true }).map((n) => (n === 0 ? 0 : n));
    case 'bool':
      return fc.boolean();
    case 'bin':
      return fc.uint8Array({ maxLength: Math.min(meta.maxBytes, 24) });
    case 'oneOf':
      return fc.constantFrom(...meta.values);
    case 'arr':
      return fc.array(arbitraryOf(meta.item), { maxLength: Math.min(meta.maxLength, 3) });
    case 'nullable':
      return fc.option(arbitraryOf(meta.inner), { nil: null });
    case 'obj': {
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      const requiredKeys: string[] = [];
      for (const [name, field] of Object.entries(meta.fields)) {
        model[name] = arbitraryOf(field.schema);
        if (!field.optional) requiredKeys.push(name);
      }
      return fc.record(model, { requiredKeys });
    }
    case 'refine':
      return arbitraryOf(meta.inner).filter((value) => !(schema.check(value) instanceof Invalid));
    case 'keyed':
      return fc.oneof(arbitraryOf(meta.withKey), arbitraryOf(meta.withoutKey));
    case 'tagged':
      return fc.oneof(...[...meta.variants.values()].map(arbitraryOf));
  }
}
