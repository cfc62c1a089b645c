// Running statements on the pool with the store's error policy: infrastructure failures become
// StoreUnavailableError, a deadlock or serialization failure reruns the whole transaction (it
// was rolled back whole, and every write in it is conditional), anything else is a bug and
// surfaces unchanged.

import type pg from 'pg';
import { isTransientConflict, isUnavailable, rethrowMapped } from './pg-errors.ts';

/** Deadlocks need two transactions locking shared rows in opposite orders; the store orders
 * its locks, so this is a backstop, not a path taken in normal operation. */
const TRANSIENT_ATTEMPTS_MAX = 3;

export interface TransactionEnd<T> {
  /** False rolls back (an expected refusal such as a stale epoch): nothing is written. */
  commit: boolean;
  value: T;
}

export async function inTransaction<T>(
  pool: pg.Pool,
  operation: string,
  body: (client: pg.PoolClient) => Promise<TransactionEnd<T>>,
  begin = 'BEGIN',
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      rethrowMapped(error, operation);
    }
    try {
      await client.query(begin);
      const end = await body(client);
      await client.query(end.commit ? 'COMMIT' : 'ROLLBACK');
      client.release();
      return end.value;
    } catch (error) {
      // A connection that failed must not go back to the pool; one that merely saw an error
      // is rolled back and reused.
      const broken = isUnavailable(error) && !isTransientConflict(error);
      const rolledBack = !broken && (await client.query('ROLLBACK').then(() => true, () => false));
      client.release(rolledBack ? undefined : asError(error));
      if (isTransientConflict(error) && attempt < TRANSIENT_ATTEMPTS_MAX) continue;
      rethrowMapped(error, operation);
    }
  }
}

/** One statement in its own (implicit) transaction, rerun like inTransaction on a deadlock. */
export async function query<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  operation: string,
  text: string,
  values: unknown[],
): Promise<R[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await pool.query<R>(text, values)).rows;
    } catch (error) {
      if (isTransientConflict(error) && attempt < TRANSIENT_ATTEMPTS_MAX) continue;
      rethrowMapped(error, operation);
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
