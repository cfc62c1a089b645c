// Running statements on the pool with the store's error policy: infrastructure failures become
// StoreUnavailableError, a deadlock or serialization failure reruns the whole transaction (it
// was rolled back whole, and every write in it is conditional), anything else is a bug and
// surfaces unchanged.

import type pg from 'pg';
import { StoreUnavailableError } from '../core/store.ts';
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
    // pg-pool listens for a client's 'error' events only while the client is idle in the pool.
    // A session the server ends while it is checked out but between two statements (a
    // restart, pg_terminate_backend, idle_in_transaction_session_timeout: FATAL 57P01 and
    // similar, then the socket's end) is reported as an 'error' event with no query to
    // reject, and an unhandled 'error' event ends the process. So listen for as long as the
    // client is out; the next statement then fails ("not queryable") and the failure we
    // recorded, the real cause, is what the call rejects with.
    let lost: unknown = null;
    const onError = (error: unknown): void => {
      lost ??= error;
    };
    client.on('error', onError);
    const release = (error?: Error): void => {
      // Synchronously before release: the pool attaches its idle listener inside release().
      client.removeListener('error', onError);
      client.release(error);
    };
    try {
      await client.query(begin);
      const end = await body(client);
      await client.query(end.commit ? 'COMMIT' : 'ROLLBACK');
      // The transaction ended as asked; a session that died after the reply is not reused.
      release(lost === null ? undefined : asError(lost));
      return end.value;
    } catch (thrown) {
      const error = lost ?? thrown;
      // A connection that failed must not go back to the pool; one that merely saw an error
      // is rolled back and reused.
      const broken = lost !== null || (isUnavailable(error) && !isTransientConflict(error));
      const rolledBack = !broken && (await client.query('ROLLBACK').then(() => true, () => false));
      release(rolledBack && lost === null ? undefined : asError(error));
      if (isTransientConflict(error) && attempt < TRANSIENT_ATTEMPTS_MAX) continue;
      // Whatever the server said as it ended the session, the connection is gone.
      if (lost !== null && !isUnavailable(lost)) throw new StoreUnavailableError(`${operation}: ${asError(lost).message}`, { cause: lost });
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
