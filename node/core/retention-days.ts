// Daily partitions of the jobs table, named after their UTC day: jobs_p20261128 holds the
// jobs scheduled on 2026-11-28. Shared by every store so that their reports agree.

export const DAY_MS = 86_400_000;

/** Days since the Unix epoch (UTC) of an instant. */
export function partitionDay(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

export function partitionName(day: number): string {
  const { year, month, dayOfMonth } = civilFromDays(day);
  return `jobs_p${String(year).padStart(4, '0')}${String(month).padStart(2, '0')}${String(dayOfMonth).padStart(2, '0')}`;
}

/** The proleptic Gregorian date of a day number: Howard Hinnant's `civil_from_days`, done by
 * hand because actor code may not touch the Date global (the determinism guard). */
export function civilFromDays(days: number): { year: number; month: number; dayOfMonth: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1_460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const dayOfMonth = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, dayOfMonth };
}
