// A store on a fresh database, for the PostgreSQL tests that go past the shared conformance
// suite: the store (4 shards, a pool of two connections, so that one may wait on a lock while
// a commit takes the other) and two plain clients of the same database, one to look and one to
// hold locks or transactions against the store. Everything is closed, and the database
// dropped, after each test.

import pg from 'pg';
import { afterEach } from 'vitest';
import type { Store } from '../../node/core/store.ts';
import { createPgStore } from '../../node/store/pg-store.ts';
import { createTestDatabase } from './db.ts';

export interface PgStoreFixture {
  s: Store;
  admin: pg.Client;
  other: pg.Client;
  /** Runs `cleanup` after the test, before what was set up earlier is closed. */
  onCleanup(cleanup: () => Promise<unknown>): void;
}

/** Call inside a `describe`: registers the cleanup, and returns the function that sets up. */
export function usePgStore(): () => Promise<PgStoreFixture> {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const onCleanup = (cleanup: () => Promise<unknown>): void => void cleanups.push(cleanup);
  return async () => {
    const db = await createTestDatabase();
    onCleanup(() => db.drop());
    const connect = async (): Promise<pg.Client> => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      onCleanup(() => client.end());
      return client;
    };
    const [admin, other] = [await connect(), await connect()];
    const s = await createPgStore({ connectionString: db.url, shardCount: 4, poolSize: 2 });
    onCleanup(() => s.close());
    return { s, admin, other, onCleanup };
  };
}
