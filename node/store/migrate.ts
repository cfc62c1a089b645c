// The migration runner. Migrations are immutable numbered SQL files in ./migrations
// (`0001_init.sql`), applied in order, each in its own transaction, and recorded with a
// checksum in schema_migrations. Several nodes may start at once: a session-level advisory
// lock lets exactly one of them check and apply while the others wait, then find nothing to do.

import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MIGRATION_LOCK_KEY } from './advisory-locks.ts';
import { rethrowMapped } from './pg-errors.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** An applied migration's file was edited (or the database was migrated by other code). */
export class MigrationChecksumError extends Error {
  override readonly name = 'MigrationChecksumError';
}

/** The database has a migration this code does not know: it was migrated by a newer version. */
export class UnknownMigrationError extends Error {
  override readonly name = 'UnknownMigrationError';
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => FILE_PATTERN.test(file)).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = FILE_PATTERN.exec(file)!;
    const sql = await readFile(join(dir, file), 'utf8');
    const version = Number(match[1]);
    if (migrations.at(-1)?.version === version) throw new Error(`two migrations numbered ${version} in ${dir}`);
    migrations.push({ version, name: match[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

/** Applies pending migrations; returns the versions applied by this call. */
export async function migrate(connectionString: string, options: { dir?: string } = {}): Promise<number[]> {
  const migrations = await readMigrations(options.dir);
  const client = new pg.Client({ connectionString });
  // A connection that dies while idle must not crash the process; the next query reports it.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    rethrowMapped(error, 'migrate: connect');
  }
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version int PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const applied = await client.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    checkApplied(applied.rows, migrations);
    const done = new Set(applied.rows.map((row) => row.version));
    const appliedNow: number[] = [];
    for (const migration of migrations.filter((m) => !done.has(m.version))) {
      await applyOne(client, migration);
      appliedNow.push(migration.version);
    }
    return appliedNow;
  } catch (error) {
    rethrowMapped(error, 'migrate');
  } finally {
    // Ending the session releases the advisory lock too; unlocking first just frees waiters
    // sooner.
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    await client.end().catch(() => {});
  }
}

function checkApplied(applied: { version: number; name: string; checksum: string }[], migrations: Migration[]): void {
  const byVersion = new Map(migrations.map((m) => [m.version, m]));
  for (const row of applied) {
    const file = byVersion.get(row.version);
    if (file === undefined) {
      throw new UnknownMigrationError(
        `the database has migration ${row.version} (${row.name}), which this version of Kairos does not know`,
      );
    }
    if (file.checksum !== row.checksum) {
      throw new MigrationChecksumError(
        `migration ${row.version} (${row.name}) changed after it was applied ` +
          `(checksum ${row.checksum.slice(0, 12)}… in the database, ${file.checksum.slice(0, 12)}… on disk); ` +
          'applied migrations are immutable: restore the file and add a new migration instead',
      );
    }
  }
}

async function applyOne(client: pg.Client, migration: Migration): Promise<void> {
  await client.query('BEGIN');
  try {
    // The simple query protocol (no parameters) runs the whole multi-statement file.
    await client.query(migration.sql);
    await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
      migration.version,
      migration.name,
      migration.checksum,
    ]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
