// A queue's circuit breaker as clients set it (BreakerSpec) and read it (BreakerView), with the
// settings both sides share (BreakerConfig, its defaults and bounds); the record itself and its
// state machine are the node's (node/core/breaker/). Instants are `…At`, ms since the Unix
// epoch.

import { countSchema, queueSchema, timeSchema } from './job-view.ts';
import { bool, int, Invalid, nullable, obj, oneOf, opt, refine, type Schema } from './schema.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerConfig {
  /** Off: the queue has no breaker, whatever the node's default says. */
  enabled: boolean;
  /** Opens when at least this share of the attempts in the window failed, in percent (1-100). */
  failureRatePct: number;
  /** ...and at least this many attempts ended in the window. */
  minAttempts: number;
  /** The rolling window outcomes are counted over. */
  windowMs: number;
  /** The first cool-down: how long it stays open before probing. */
  cooldownMs: number;
  /** Each reopening doubles the cool-down, up to this. */
  cooldownMaxMs: number;
  /** Jobs each node may lease per half-open round. */
  probes: number;
  /** While open (or half-open), refuse submissions of the queue with `circuit_open` instead of
   * accepting them to wait. */
  refuseWhenOpen: boolean;
}

export const BREAKER_DEFAULTS: BreakerConfig = {
  enabled: true,
  failureRatePct: 50,
  minAttempts: 20,
  windowMs: 30_000,
  cooldownMs: 5_000,
  cooldownMaxMs: 300_000,
  probes: 1,
  refuseWhenOpen: false,
};

/** Bounds of each setting, for validation at every edge (protocol, CLI, node flags). */
export const BREAKER_LIMITS = {
  failureRatePct: [1, 100],
  minAttempts: [1, 1_000_000],
  windowMs: [1_000, 3_600_000],
  cooldownMs: [100, 3_600_000],
  cooldownMaxMs: [100, 86_400_000],
  probes: [1, 100],
} as const satisfies Record<string, readonly [number, number]>;

export const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];
export type BreakerSource = 'queue' | 'default';
export const BREAKER_SOURCES: readonly BreakerSource[] = ['queue', 'default'];

/** What a client sets for one queue (`breaker_set`). Omitted fields take BREAKER_DEFAULTS. */
export interface BreakerSpec {
  queue: string;
  /** Default true. False: the queue has no breaker, even if the node has a default one. */
  enabled?: boolean;
  /** Opens when at least this share of the attempts in the window failed, in percent. */
  failureRatePct?: number;
  /** ...and at least this many attempts ended in the window. */
  minAttempts?: number;
  /** The rolling window outcomes are counted over. */
  windowMs?: number;
  /** The first cool-down: how long it stays open before probing. */
  cooldownMs?: number;
  /** Each reopening doubles the cool-down, up to this; at least cooldownMs (after defaults are
   * applied). */
  cooldownMaxMs?: number;
  /** Jobs each node may lease per half-open round. */
  probes?: number;
  /** While open, refuse submissions of the queue with `circuit_open` instead of accepting them
   * to wait. */
  refuseWhenOpen?: boolean;
}

/** A queue's breaker as clients see it (replies `breaker` and `breaker_page`). */
export interface BreakerView {
  queue: string;
  /** Its own settings (`queue`), or the node's default breaker (`default`). */
  source: BreakerSource;
  enabled: boolean;
  failureRatePct: number;
  minAttempts: number;
  windowMs: number;
  cooldownMs: number;
  cooldownMaxMs: number;
  probes: number;
  refuseWhenOpen: boolean;
  state: BreakerState;
  /** When it entered its state. */
  since: number;
  /** While open: when it goes half-open. Else null. */
  nextProbeAt: number | null;
  /** The cool-down of the current or next opening: doubles with each reopening. */
  currentCooldownMs: number;
  /** The window when it last opened; zero before it ever opened. */
  openedAttempts: number;
  openedFailures: number;
  /** The live window (attempts and failures counted now), in a `breaker` reply (the reply to
   * `breaker_get`, `breaker_set`, `breaker_clear`); null in `breaker_page`. */
  window: { attempts: number; failures: number } | null;
  updatedAt: number;
}

/** The settings a spec stands for: BREAKER_DEFAULTS with the fields the spec sets. */
export function breakerConfigOf(spec: BreakerSpec): BreakerConfig {
  return {
    enabled: spec.enabled ?? BREAKER_DEFAULTS.enabled,
    failureRatePct: spec.failureRatePct ?? BREAKER_DEFAULTS.failureRatePct,
    minAttempts: spec.minAttempts ?? BREAKER_DEFAULTS.minAttempts,
    windowMs: spec.windowMs ?? BREAKER_DEFAULTS.windowMs,
    cooldownMs: spec.cooldownMs ?? BREAKER_DEFAULTS.cooldownMs,
    cooldownMaxMs: spec.cooldownMaxMs ?? BREAKER_DEFAULTS.cooldownMaxMs,
    probes: spec.probes ?? BREAKER_DEFAULTS.probes,
    refuseWhenOpen: spec.refuseWhenOpen ?? BREAKER_DEFAULTS.refuseWhenOpen,
  };
}


/** One setting's schema, its range from BREAKER_LIMITS. */
function limited(name: keyof typeof BREAKER_LIMITS): Schema<number> {
  const [min, max] = BREAKER_LIMITS[name];
  return int(min, max);
}

export const failureRatePctSchema = limited('failureRatePct');
export const minAttemptsSchema = limited('minAttempts');
export const windowMsSchema = limited('windowMs');
export const cooldownMsSchema = limited('cooldownMs');
export const cooldownMaxMsSchema = limited('cooldownMaxMs');
export const probesSchema = limited('probes');
export const breakerStateSchema = oneOf(BREAKER_STATES);

/** The problem with a spec's settings taken together, once defaults are filled in; null when
 * there is none. */
export function breakerSpecProblem(spec: BreakerSpec): Invalid | null {
  const config = breakerConfigOf(spec);
  if (config.cooldownMaxMs < config.cooldownMs) {
    const field = spec.cooldownMaxMs === undefined ? 'cooldownMs' : 'cooldownMaxMs';
    return new Invalid(field, `cooldownMaxMs (${config.cooldownMaxMs}) must be at least cooldownMs (${config.cooldownMs})`);
  }
  return null;
}

export const breakerSpecSchema: Schema<BreakerSpec> = refine(
  obj({
    queue: queueSchema,
    enabled: opt(bool),
    failureRatePct: opt(failureRatePctSchema),
    minAttempts: opt(minAttemptsSchema),
    windowMs: opt(windowMsSchema),
    cooldownMs: opt(cooldownMsSchema),
    cooldownMaxMs: opt(cooldownMaxMsSchema),
    probes: opt(probesSchema),
    refuseWhenOpen: opt(bool),
  }),
  breakerSpecProblem,
);

export const breakerWindowSchema = obj({ attempts: countSchema, failures: countSchema });

export const breakerViewSchema: Schema<BreakerView> = obj({
  queue: queueSchema,
  source: oneOf(BREAKER_SOURCES),
  enabled: bool,
  failureRatePct: failureRatePctSchema,
  minAttempts: minAttemptsSchema,
  windowMs: windowMsSchema,
  cooldownMs: cooldownMsSchema,
  cooldownMaxMs: cooldownMaxMsSchema,
  probes: probesSchema,
  refuseWhenOpen: bool,
  state: breakerStateSchema,
  since: timeSchema,
  nextProbeAt: nullable(timeSchema),
  currentCooldownMs: countSchema,
  openedAttempts: countSchema,
  openedFailures: countSchema,
  window: nullable(breakerWindowSchema),
  updatedAt: timeSchema,
});
