// Postgres advisory lock keys, in one place so that no two uses collide. The values are
// arbitrary; they only have to differ from each other and from other applications' keys.

/** Held (session-level) while migrations are checked and applied. */
export const MIGRATION_LOCK_KEY = 4_919_238_001;
/** Held (transaction-level, try-only) by the retention pass. */
export const RETENTION_LOCK_KEY = 4_919_238_002;
