// Postgres advisory lock keys, in one place so that no two uses collide. The values are
// arbitrary; they only have to differ from each other and from other applications' keys.

/** Held (session-level) while migrations are checked and applied. */
export const MIGRATION_LOCK_KEY = 4_919_238_001;
/** Held (transaction-level, try-only) by the retention pass. */
export const RETENTION_LOCK_KEY = 4_919_238_002;
/** The first key of the two-int advisory locks (transaction-level) that serialise a tenant's
 * schedule creations (pg-schedules.ts), the second being a hash of the tenant. The two-int form
 * is a key space of its own, apart from the one-bigint keys above. */
export const SCHEDULE_CREATIONS_LOCK_CLASS = 1_262_698_806;
/** The same for a tenant's breaker creations (pg-breakers.ts): a class of its own, so that the
 * two kinds of creation, counted against limits of their own, never wait for each other. */
export const BREAKER_CREATIONS_LOCK_CLASS = 1_262_698_807;
