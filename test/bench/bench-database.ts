// The PostgreSQL server a benchmark runs on, with pg_stat_statements preloaded where the
// benchmark starts the server itself:
// - DATABASE_URL when it is set (its owner decides its settings and libraries);
// - for `bench:compare` without it, a throwaway PostgreSQL 15 from the Debian packages when
//   they are installed (/usr/lib/postgresql/15/bin): the figures, and those in
//   ../shared/anchors, are on that version, with initdb's defaults (durable: fsync and
//   synchronous_commit on);
// - otherwise the embedded PostgreSQL (18), chosen as a node chooses it (chooseDatabase).

import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { chooseDatabase } from '../../node/store/database-url.ts';
import { freePort } from '../../node/store/embedded.ts';
import { databaseUrl } from '../support/db-url.ts';
import { onInterrupt } from './on-interrupt.ts';

const DEBIAN_15_BIN = '/usr/lib/postgresql/15/bin';
const STATEMENT_FLAGS = ['-c', 'shared_preload_libraries=pg_stat_statements'];
const run = promisify(execFile);

export interface BenchServer {
  /** Superuser connection string to its `postgres` database. */
  connectionString: string;
  /** Where it came from and its version, for the output. */
  describe: string;
  /** A fresh database on it; returns its URL. */
  createDatabase(prefix: string): Promise<string>;
  dropDatabase(url: string): Promise<void>;
  /** Stops a server the benchmark started and deletes its data; nothing for DATABASE_URL. */
  stop(): Promise<void>;
}

export async function openBenchServer(options: { preferDebian15: boolean; log: (line: string) => void }): Promise<BenchServer> {
  const tempDir = mkdtempSync(join(tmpdir(), 'kairos-bench-pg-'));
  // mkdtemp makes it private; the server runs as the postgres user when we are root.
  chmodSync(tempDir, 0o755);
  const fromEnv = process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '';
  const server =
    !fromEnv && options.preferDebian15 && existsSync(join(DEBIAN_15_BIN, 'postgres'))
      ? await startDebian15(join(tempDir, 'pg'))
      : await chooseDatabase({ dataDir: join(tempDir, 'pg'), port: await freePort(), postgresFlags: STATEMENT_FLAGS }).then((db) => ({
          connectionString: db.connectionString,
          origin: db.embedded ? 'the embedded PostgreSQL' : 'DATABASE_URL',
          stop: db.stop,
        }));
  const stopAndRemove = async () => {
    await server.stop();
    rmSync(tempDir, { recursive: true, force: true });
  };
  const forget = onInterrupt(stopAndRemove);
  const version = await query<{ v: string; f: string }>(server.connectionString, "SELECT current_setting('server_version') AS v, current_setting('fsync') AS f");
  const describe = `${server.origin}, PostgreSQL ${version[0]!.v.split(' ')[0]}, fsync ${version[0]!.f}`;
  options.log(`on ${describe}`);
  if (options.preferDebian15 && !describe.includes('PostgreSQL 15')) options.log('not PostgreSQL 15: the figures are not comparable with the issue\'s');
  return {
    connectionString: server.connectionString,
    describe,
    async createDatabase(prefix) {
      const name = `${prefix}_${Date.now().toString(36)}`;
      await query(server.connectionString, `CREATE DATABASE ${name}`);
      // A checkpoint now, so that no run starts with a predecessor's dirty pages to flush.
      await query(server.connectionString, 'CHECKPOINT');
      return databaseUrl(server.connectionString, name);
    },
    async dropDatabase(url) {
      await query(server.connectionString, `DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`);
    },
    async stop() {
      forget();
      await stopAndRemove();
    },
  };
}

/** initdb (as the postgres OS user when we are root: PostgreSQL refuses to run as root) and
 * pg_ctl start, on a free loopback port, no Unix socket. */
async function startDebian15(dataDir: string): Promise<{ connectionString: string; origin: string; stop(): Promise<void> }> {
  const asUser = process.getuid?.() === 0 ? await postgresUser() : {};
  mkdirSync(dataDir, { mode: 0o700 });
  if ('uid' in asUser) chownSync(dataDir, asUser.uid!, asUser.gid!);
  await run(join(DEBIAN_15_BIN, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8'], asUser);
  const port = await freePort();
  const flags = ['-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', ...STATEMENT_FLAGS].join(' ');
  await run(join(DEBIAN_15_BIN, 'pg_ctl'), ['-D', dataDir, '-l', join(dataDir, 'server.log'), '-w', '-o', flags, 'start'], asUser);
  return {
    connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
    origin: `a throwaway server from ${DEBIAN_15_BIN}`,
    stop: async () => void (await run(join(DEBIAN_15_BIN, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], asUser)),
  };
}

async function postgresUser(): Promise<{ uid?: number; gid?: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** One statement on a connection of its own. */
export async function query<R extends pg.QueryResultRow>(connectionString: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}
