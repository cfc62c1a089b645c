// Which pg failures are infrastructure failures (the outcome is unknown; retry later) as
// opposed to programmer errors (bad SQL, violated constraints), which must surface as they are.

import pg from 'pg';
import { StoreUnavailableError } from '../core/store.ts';

/** SQLSTATE classes and codes that mean "the database could not do it right now". */
const UNAVAILABLE_CLASSES = ['08', '53', '57', '58']; // connection, resources, operator intervention, system
const LOCK_NOT_AVAILABLE = '55P03'; // a lock_timeout expired
const UNAVAILABLE_CODES = new Set([
  LOCK_NOT_AVAILABLE,
  '25P03', // idle_in_transaction_session_timeout: the server ended a session left idle in a transaction
]);
const TRANSIENT_CODES = new Set(['40001', '40P01']); // serialization failure, deadlock detected

/** Socket-level failures node-postgres reports without a SQLSTATE. */
const UNAVAILABLE_MESSAGES = [/connection terminated/i, /timeout/i, /connection.*(closed|ended|error)/i, /not queryable/i];

/** A deadlock or serialization failure: the transaction was rolled back whole and may simply
 * run again. */
export function isTransientConflict(error: unknown): boolean {
  const state = sqlState(error);
  return state !== null && TRANSIENT_CODES.has(state);
}

export function isUnavailable(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  const state = sqlState(error);
  if (state !== null) return UNAVAILABLE_CLASSES.includes(state.slice(0, 2)) || UNAVAILABLE_CODES.has(state) || TRANSIENT_CODES.has(state);
  if (!(error instanceof Error)) return false;
  if ('errno' in error || 'syscall' in error) return true; // ECONNREFUSED, ECONNRESET, EPIPE, ...
  return UNAVAILABLE_MESSAGES.some((pattern) => pattern.test(error.message));
}

/** A lock not granted within the session's lock_timeout. */
export function isLockNotAvailable(error: unknown): boolean {
  return sqlState(error) === LOCK_NOT_AVAILABLE;
}

/** Rethrows an infrastructure failure as StoreUnavailableError and anything else unchanged. */
export function rethrowMapped(error: unknown, operation: string): never {
  if (error instanceof StoreUnavailableError) throw error;
  if (isUnavailable(error)) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new StoreUnavailableError(`${operation}: ${detail}`, { cause: error });
  }
  throw error;
}

/** The SQLSTATE of an error the server sent; null for client-side (socket) errors, whose
 * `code` is an errno name such as EPIPE. */
function sqlState(error: unknown): string | null {
  return error instanceof pg.DatabaseError ? (error.code ?? null) : null;
}
