// Shared option handling for the CLI: every option can also come from the environment, and a
// bad value is one clear line, not a stack trace.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function intOption(value: string | undefined, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === '') return fallback;
  // Digits only: Number() would also take '1e2', '0x20' and ' 50'.
  const n = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be an integer in [${min}, ${max}], got '${value}'`);
  return n;
}

export function oneOfOption<T extends string>(value: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === '') return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${name} must be one of ${allowed.join(', ')}, got '${value}'`);
  return value as T;
}

/** A repeatable option whose values may also be comma-separated, or else the environment's
 * comma-separated list, or else `fallback`. */
export function listOption(values: string[] | undefined, envValue: string | undefined, fallback: string[]): string[] {
  const given = values !== undefined && values.length > 0 ? values : [envValue ?? ''];
  const items = given.flatMap((value) => value.split(',')).map((item) => item.trim()).filter((item) => item !== '');
  return items.length > 0 ? items : fallback;
}
