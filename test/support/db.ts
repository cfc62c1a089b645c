// A database of its own for each test that needs one, cloned from the migrated template that
// global-setup.ts made, and dropped afterwards.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { databaseUrl } from './db-url.ts';

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database. */
export function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase(`TEMPLATE ${inject('pgTemplateDatabase')}`);
}

/** A fresh database with no schema at all (for migration tests). */
export function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase('TEMPLATE template0');
}

/** Runs one statement as the server's superuser. */
export async function adminQuery<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], database?: string): Promise<R[]> {
  const admin = inject('pgAdminUrl');
  const client = new pg.Client({ connectionString: database === undefined ? admin : databaseUrl(admin, database) });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

async function createDatabase(source: string): Promise<TestDatabase> {
  const name = `kairos_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name} ${source}`);
  return {
    name,
    url: databaseUrl(inject('pgAdminUrl'), name),
    drop: async () => {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}
