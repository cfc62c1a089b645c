// setTimeout for delays of any length. setTimeout holds at most 2^31-1 ms (about 24.9 days);
// Node clamps a longer delay to 1 ms with a TimeoutOverflowWarning (browsers fire at once), and
// a job may be due up to 100 years ahead (DELAY_MS_MAX): a shard owner whose next job was 25
// days away once re-armed its wake every millisecond. Used by the node's timers and the SDK's,
// which runs in browsers too, so only setTimeout and clearTimeout.

/** The longest delay setTimeout holds. */
export const TIMEOUT_MS_MAX = 2 ** 31 - 1;

export interface LongTimeout {
  cancel(): void;
}

/** Calls `fire` once after `delayMs`, waiting in steps of at most TIMEOUT_MS_MAX. */
export function setLongTimeout(delayMs: number, fire: () => void): LongTimeout {
  let handle: ReturnType<typeof setTimeout>;
  const wait = (remainingMs: number): void => {
    const stepMs = Math.min(remainingMs, TIMEOUT_MS_MAX);
    handle = setTimeout(() => (stepMs < remainingMs ? wait(remainingMs - stepMs) : fire()), stepMs);
  };
  wait(delayMs);
  return { cancel: () => clearTimeout(handle) };
}
