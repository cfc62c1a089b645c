// The Store conformance suite against PostgreSQL (each test in a database of its own, cloned
// from the migrated template), then what only PostgreSQL has: migrations, the schema dump,
// partitions, transactions, error mapping.

import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError, type Store } from '../../node/core/store.ts';
import { RETENTION_LOCK_KEY } from '../../node/store/advisory-locks.ts';
import { binaryArray } from '../../node/store/pg-arrays.ts';
import { MIGRATIONS_DIR, MigrationChecksumError, UnknownMigrationError, migrate, readMigrations } from '../../node/store/migrate.ts';
import { ShardCountMismatchError } from '../../node/store/pg-cluster.ts';
import { createPgStore } from '../../node/store/pg-store.ts';
import { inTransaction } from '../../node/store/pg-tx.ts';
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from '../support/db.ts';
import { insertOf, newJob } from '../support/jobs.ts';
import { dumpSchema } from '../support/schema-dump.ts';
import { CONFORMANCE_BASE_MS, describeStoreConformance } from './store-conformance.ts';

/** Far below the real limits: a tenant's creations run one at a time, and a thousand take seconds. */
const SCHEDULES_LIMIT = 20;
const BREAKERS_LIMIT = 20;

describeStoreConformance('PostgreSQL', async (shardCount) => {
  const db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  // Partitions for the suite's day, so its jobs live in daily partitions as in production
  // (the retention cases use other days).
  const setup = await createPgStore({ connectionString: db.url, shardCount, poolSize: 1 });
  await setup.retention({ daysAhead: 2, keepDays: 100_000 }, CONFORMANCE_BASE_MS);
  await setup.close();
  return {
    open: () =>
      createPgStore({ connectionString: db.url, shardCount, poolSize: 4, schedulesPerTenantMax: SCHEDULES_LIMIT, breakersPerTenantMax: BREAKERS_LIMIT }),
    schedulesPerTenantMax: SCHEDULES_LIMIT,
    breakersPerTenantMax: BREAKERS_LIMIT,
    lapseLeases: async (shards) => {
      await admin.query("UPDATE shard_leases SET lease_until = now() - interval '1 second' WHERE id = ANY($1) AND lease_until IS NOT NULL", [shards]);
    },
    checkInvariants: async () => {
      // Every key names its job, and every job with a key is the one its key names.
      const dangling = await admin.query(`
        SELECT k.key FROM idempotency k LEFT JOIN jobs j ON j.id = k.job_id AND j.scheduled_at = k.scheduled_at
        WHERE j.id IS NULL OR j.tenant <> k.tenant OR j.idempotency_key IS DISTINCT FROM k.key`);
      const unclaimed = await admin.query(`
        SELECT j.id FROM jobs j WHERE j.idempotency_key IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM idempotency k WHERE k.tenant = j.tenant AND k.key = j.idempotency_key AND k.job_id = j.id)`);
      expect(dangling.rows).toEqual([]);
      expect(unclaimed.rows).toEqual([]);
    },
    dispose: async () => {
      await admin.end();
      await db.drop();
    },
  };
});

describe('PostgreSQL store specifics', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  const database = async (empty = false): Promise<TestDatabase> => {
    const db = empty ? await createEmptyDatabase() : await createTestDatabase();
    cleanups.push(() => db.drop());
    return db;
  };
  const client = async (url: string): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    cleanups.push(() => c.end());
    return c;
  };
  const store = async (url: string, shardCount = 4): Promise<Store> => {
    const s = await createPgStore({ connectionString: url, shardCount, poolSize: 2 });
    cleanups.push(() => s.close());
    return s;
  };

  it('the migrated schema matches node/store/schema.sql', async () => {
    const db = await database();
    const dump = await dumpSchema(await client(db.url));
    const path = fileURLToPath(new URL('../../node/store/schema.sql', import.meta.url));
    if (process.env.UPDATE_SCHEMA_DUMP === '1') await writeFile(path, dump);
    expect(dump, 'schema changed: regenerate node/store/schema.sql (see its header)').toBe(await readFile(path, 'utf8'));
  });

  it('migrations run concurrently from several nodes apply once', async () => {
    const db = await database(true);
    const applied = await Promise.all(Array.from({ length: 6 }, () => migrate(db.url)));
    const all = (await readMigrations()).map((m) => m.version);
    expect(applied.flat().sort((a, b) => a - b)).toEqual(all);
    const rows = await (await client(db.url)).query('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.rows.map((r) => r.version)).toEqual(all);
  });

  it('refuses to start when an applied migration changed, or is unknown to this code', async () => {
    const db = await database();
    const dir = await mkdtemp(join(tmpdir(), 'kairos-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await writeFile(join(dir, '0001_init.sql'), `${await readFile(join(dir, '0001_init.sql'), 'utf8')}\n-- edited\n`);
    await expect(migrate(db.url, { dir })).rejects.toThrow(MigrationChecksumError);

    const admin = await client(db.url);
    await admin.query("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1");
    await expect(createPgStore({ connectionString: db.url, shardCount: 4 })).rejects.toThrow(MigrationChecksumError);
    await admin.query('UPDATE schema_migrations SET checksum = $1 WHERE version = 1', [(await readMigrations())[0]!.checksum]);

    await admin.query("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')");
    await expect(migrate(db.url)).rejects.toThrow(UnknownMigrationError);
  });

  it('applies a new migration file after the applied ones', async () => {
    const db = await database();
    const dir = await mkdtemp(join(tmpdir(), 'kairos-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await writeFile(join(dir, '9000_add_note.sql'), 'ALTER TABLE cluster ADD COLUMN note text;');
    expect(await migrate(db.url, { dir })).toEqual([9000]);
    expect(await migrate(db.url, { dir })).toEqual([]);
  });

  it('migration 0003 moves shard owners and leases into shard_leases, epochs kept', async () => {
    const db = await database(true);
    const dir = await mkdtemp(join(tmpdir(), 'kairos-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await rm(join(dir, '0003_shard_leases.sql'));
    await migrate(db.url, { dir });
    const admin = await client(db.url);
    await admin.query(`INSERT INTO shards (id, owner, epoch, lease_until) VALUES
      (0, 'node-a', 3, now() + interval '1 minute'), (1, NULL, 5, NULL), (2, 'node-b', 1, now() - interval '1 minute')`);
    expect(await migrate(db.url)).toContain(3);
    const s = await store(db.url, 3);
    const rows = await s.listShards();
    expect(rows.map(({ shard, owner, epoch }) => ({ shard, owner, epoch }))).toEqual([
      { shard: 0, owner: 'node-a', epoch: 3 },
      { shard: 1, owner: null, epoch: 5 },
      { shard: 2, owner: 'node-b', epoch: 1 },
    ]);
    expect(rows[1]!.leaseUntilMs).toBeNull();
    // node-a still holds shard 0; shard 1 is free and shard 2's lease lapsed.
    expect(await s.acquireShards('node-c', [0, 1, 2], 60_000)).toEqual([
      { shard: 1, epoch: 6 },
      { shard: 2, epoch: 2 },
    ]);
    expect(await s.renewShards('node-a', [{ shard: 0, epoch: 3 }], 60_000)).toEqual([0]);
  });

  it('a node started with another shard count gets a clear error', async () => {
    const db = await database();
    await store(db.url, 16);
    await expect(createPgStore({ connectionString: db.url, shardCount: 32 })).rejects.toThrow(ShardCountMismatchError);
    await expect(createPgStore({ connectionString: db.url, shardCount: 32 })).rejects.toThrow(/created with 16 shards/);
  });

  it('binary array parameters arrive as sent', async () => {
    const db = await database();
    const c = await client(db.url);
    const bytes = new Uint8Array([0, 92, 34, 255]);
    const big = Number.MAX_SAFE_INTEGER;
    const row = (
      await c.query('SELECT $1::text[] AS t, $2::int[] AS i, $3::bigint[] AS b, $4::float8[] AS f, $5::bytea[] AS y, $6::text[] AS e', [
        binaryArray('text', ['a', 'ü"\\{}, ', null, '']),
        binaryArray('int', [-2147483648, 0, 2147483647, null]),
        binaryArray('bigint', [big, -big, 0, null, 4_294_967_296]),
        binaryArray('float8', [1764352800123, 0.3, -0, null]),
        binaryArray('bytea', [bytes, new Uint8Array(0), null]),
        binaryArray('text', []),
      ])
    ).rows[0];
    expect(row.t).toEqual(['a', 'ü"\\{}, ', null, '']);
    expect(row.i).toEqual([-2147483648, 0, 2147483647, null]);
    expect(row.b).toEqual([String(big), String(-big), '0', null, '4294967296']);
    expect(row.f).toEqual([1764352800123, 0.3, -0, null]);
    expect(row.y.map((b: Buffer | null) => (b === null ? null : [...b]))).toEqual([[0, 92, 34, 255], [], null]);
    expect(row.e).toEqual([]);
  });

  it('a 1,000-insert batch is one transaction (one xmin)', async () => {
    const db = await database();
    const s = await store(db.url);
    const leases = await s.acquireShards('node-a', [1], 60_000);
    const jobs = Array.from({ length: 1000 }, (_, i) => newJob({ shard: 1, scheduledAtMs: CONFORMANCE_BASE_MS + i, idempotencyKey: `k${i}` }));
    await s.commit({ shards: leases, writes: jobs.map(insertOf) });
    const rows = await (await client(db.url)).query(`
      SELECT (SELECT count(DISTINCT xmin::text) FROM jobs) AS job_xmins, (SELECT count(*) FROM jobs) AS jobs,
             (SELECT count(DISTINCT xmin::text) FROM idempotency) AS key_xmins,
             (SELECT min(xmin::text) FROM jobs) = (SELECT min(xmin::text) FROM idempotency) AS same`);
    expect(rows.rows[0]).toEqual({ job_xmins: '1', jobs: '1000', key_xmins: '1', same: true });
  });

  it('an insert that meets a key claimed by a transaction in flight waits, then reports the winner', async () => {
    const db = await database();
    const s = await store(db.url);
    const other = await client(db.url);
    const leases = await s.acquireShards('node-a', [3], 60_000);
    const winner = newJob({ shard: 3, scheduledAtMs: CONFORMANCE_BASE_MS, idempotencyKey: 'contended' });
    const loser = newJob({ shard: 3, scheduledAtMs: CONFORMANCE_BASE_MS + 1, idempotencyKey: 'contended' });
    // Another node's commit has claimed the key and not committed yet.
    await other.query('BEGIN');
    await other.query(
      "INSERT INTO idempotency (tenant, key, job_id, scheduled_at) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000))",
      [winner.tenant, 'contended', winner.id, winner.scheduledAtMs],
    );
    const pending = s.commit({ shards: leases, writes: [insertOf(loser)] });
    await waitFor(async () => (await other.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kairos' AND wait_event_type = 'Lock'")).rowCount === 1);
    await other.query('COMMIT');
    expect(await pending).toEqual({ status: 'committed', outcomes: [{ ok: false, reason: 'duplicate', existingJobId: winner.id }] });
    expect(await s.getJob(loser.id)).toBeNull();
  });

  it('moves DEFAULT-partition rows into a partition created for their day', async () => {
    const db = await database();
    const s = await store(db.url);
    const admin = await client(db.url);
    const leases = await s.acquireShards('node-a', [0], 60_000);
    const day = Date.UTC(2027, 5, 1);
    const jobs = [newJob({ shard: 0, scheduledAtMs: day + 5, idempotencyKey: 'k' }), newJob({ shard: 0, scheduledAtMs: day + 7 })];
    const elsewhere = newJob({ shard: 0, scheduledAtMs: day + 86_400_000 + 1 });
    await s.commit({ shards: leases, writes: [...jobs, elsewhere].map(insertOf) });
    const where = async () =>
      (await admin.query('SELECT id, tableoid::regclass::text AS part FROM jobs ORDER BY id')).rows.map((r) => `${r.id}@${r.part}`);
    expect(await where()).toEqual([...jobs, elsewhere].map((j) => `${j.id}@jobs_default`).sort());

    expect((await s.retention({ daysAhead: 1, keepDays: 1 }, day)).created).toEqual(['jobs_p20270601']);
    expect(await where()).toEqual([...jobs.map((j) => `${j.id}@jobs_p20270601`), `${elsewhere.id}@jobs_default`].sort());
    for (const job of [...jobs, elsewhere]) expect(await s.getJob(job.id)).toEqual(job);
    expect(await s.findByIdempotencyKey('tenant-a', 'k')).toBe(jobs[0]!.id);
  });


  it('payloads and results compress with lz4 on the parent and every partition, where the server has lz4', async () => {
    const db = await database();
    const s = await store(db.url);
    const admin = await client(db.url);
    await s.retention({ daysAhead: 1, keepDays: 1 }, Date.UTC(2027, 5, 1));
    const hasLz4 = (await admin.query("SELECT 'lz4' = ANY(enumvals) AS yes FROM pg_settings WHERE name = 'default_toast_compression'")).rows[0].yes;
    const columns = await admin.query<{ rel: string; attname: string; attcompression: string }>(
      `SELECT a.attrelid::regclass::text AS rel, a.attname, a.attcompression FROM pg_attribute a
       WHERE a.attname IN ('payload', 'result')
         AND (a.attrelid = 'jobs'::regclass OR a.attrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'jobs'::regclass))
       ORDER BY 1, 2`,
    );
    // The parent, the DEFAULT partition (made by migration 0001) and the days retention made.
    expect(columns.rows.map((c) => c.rel)).toEqual(expect.arrayContaining(['jobs', 'jobs_default', 'jobs_p20270601']));
    // Without lz4 the migration leaves the server's default (pglz, shown as no setting).
    for (const c of columns.rows) expect(`${c.rel}.${c.attname}:${c.attcompression}`).toBe(`${c.rel}.${c.attname}:${hasLz4 ? 'l' : ''}`);
  });
  it('retention does nothing while another node holds its lock', async () => {
    const db = await database();
    const s = await store(db.url);
    const other = await client(db.url);
    await other.query('BEGIN');
    await other.query('SELECT pg_advisory_xact_lock($1)', [RETENTION_LOCK_KEY]);
    expect(await s.retention({ daysAhead: 1, keepDays: 1 }, Date.UTC(2027, 0, 1))).toEqual({ created: [], dropped: [], keptLive: [], ran: false });
    await other.query('ROLLBACK');
    expect((await s.retention({ daysAhead: 1, keepDays: 1 }, Date.UTC(2027, 0, 1))).created).toEqual(['jobs_p20270101']);
  });

  it('retention gives up on a lock it cannot get soon, instead of stalling every write behind it', async () => {
    const db = await database();
    const s = await store(db.url);
    const other = await client(db.url);
    await other.query('BEGIN');
    await other.query('LOCK TABLE jobs IN ROW EXCLUSIVE MODE'); // a long transaction that wrote jobs
    await expect(s.retention({ daysAhead: 1, keepDays: 1 }, Date.UTC(2027, 0, 1))).rejects.toThrow(StoreUnavailableError);
    await other.query('ROLLBACK');
  });

  it('maps a lost connection to StoreUnavailableError', async () => {
    await expect(createPgStore({ connectionString: 'postgres://nobody:x@127.0.0.1:1/none', shardCount: 4 })).rejects.toThrow(StoreUnavailableError);

    const db = await database();
    const s = await store(db.url);
    const admin = await client(db.url);
    const leases = await s.acquireShards('node-a', [2], 60_000);
    // Hold the shard row so the commit blocks inside its transaction, then kill its session.
    await admin.query('BEGIN');
    await admin.query('SELECT 1 FROM shards WHERE id = 2 FOR UPDATE');
    // Settled into a value at once: the rejection may come before the assertion below is
    // attached, and an unobserved rejection fails the run.
    const pending = s.commit({ shards: leases, writes: [insertOf(newJob({ shard: 2, scheduledAtMs: CONFORMANCE_BASE_MS }))] }).then(
      () => null,
      (error: unknown) => error,
    );
    await waitFor(async () => (await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = 'kairos'")).rowCount === 1);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kairos' AND wait_event_type = 'Lock'");
    expect(await pending).toBeInstanceOf(StoreUnavailableError);
    await admin.query('ROLLBACK');
    // The pool replaces the dead connection.
    expect(await s.getJob('000-0-0-0')).toBeNull();
  });

  it("renewal and release do not wait for commits in flight on their shards; acquisition does", async () => {
    const db = await database();
    const s = await store(db.url);
    const other = await store(db.url);
    const admin = await client(db.url);
    const leases = await s.acquireShards('node-a', [1, 2], 60_000);
    // A commit in flight on both shards: its first statement, then held open for 2 s.
    await admin.query('BEGIN');
    await admin.query('SELECT id, epoch FROM shards WHERE id = ANY($1::int[]) ORDER BY id FOR SHARE', [[1, 2]]);
    const held = setTimeout(() => void admin.query('ROLLBACK'), 2_000);
    cleanups.push(async () => clearTimeout(held));

    const renewStart = performance.now();
    expect(await s.renewShards('node-a', leases, 60_000)).toEqual([1, 2]);
    expect(performance.now() - renewStart).toBeLessThan(200);
    const releaseStart = performance.now();
    await s.releaseShards('node-a', [leases[1]!]);
    expect(performance.now() - releaseStart).toBeLessThan(200);

    // Acquiring the released shard bumps its epoch, so it must wait for the commit (the fence).
    const acquireStart = performance.now();
    expect(await other.acquireShards('node-b', [2], 60_000)).toEqual([{ shard: 2, epoch: 2 }]);
    expect(performance.now() - acquireStart).toBeGreaterThan(1_000);
    expect((await s.listShards()).slice(1, 3)).toEqual([
      { shard: 1, owner: 'node-a', epoch: 1, leaseUntilMs: expect.any(Number) },
      { shard: 2, owner: 'node-b', epoch: 2, leaseUntilMs: expect.any(Number) },
    ]);
  });

  it('an acquisition or renewal that cannot lock its lease rows within 2 s fails as unavailable instead of waiting', async () => {
    const db = await database();
    const s = await store(db.url);
    const admin = await client(db.url);
    const [lease] = await s.acquireShards('node-a', [1], 60_000);
    await admin.query('BEGIN');
    await admin.query('SELECT 1 FROM shard_leases WHERE id = 1 FOR UPDATE'); // e.g. a paused acquirer
    for (const call of [() => s.acquireShards('node-a', [1], 60_000), () => s.renewShards('node-a', [lease!], 60_000)]) {
      const start = performance.now();
      await expect(call()).rejects.toThrow(StoreUnavailableError);
      expect(performance.now() - start).toBeLessThan(3_000);
    }
    await admin.query('ROLLBACK');
    expect(await s.renewShards('node-a', [lease!], 60_000)).toEqual([1]);
  });

  it('a transaction the server ends for idling (idle_in_transaction_session_timeout) fails as unavailable', async () => {
    const db = await database();
    const pool = new pg.Pool({ connectionString: db.url, max: 1, idle_in_transaction_session_timeout: 200 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const pending = inTransaction(pool, 'paused', async (c) => {
      await c.query('SELECT 1 FROM shards WHERE id = 0 FOR SHARE');
      await new Promise((resolve) => setTimeout(resolve, 600)); // a node paused mid-transaction
      await c.query('SELECT 1');
      return { commit: true, value: null };
    });
    await expect(pending).rejects.toThrow(StoreUnavailableError);
  });

  it('a session the server ends between two statements of a transaction is an error of the call, not a crash', async () => {
    const db = await database();
    const admin = await client(db.url);
    const pool = new pg.Pool({ connectionString: db.url, max: 1, application_name: 'kairos-victim' });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    // An 'error' event nobody handles would end the process; vitest traps it, so trap it here
    // too and fail the test by name.
    const uncaught: unknown[] = [];
    const trap = (error: unknown) => void uncaught.push(error);
    process.on('uncaughtException', trap);
    cleanups.push(async () => void process.off('uncaughtException', trap));

    let terminated!: () => void;
    const afterTermination = new Promise<void>((resolve) => (terminated = resolve));
    const pending = inTransaction(pool, 'victim', async (c) => {
      await c.query('SELECT 1 FROM shards WHERE id = 0 FOR SHARE');
      await afterTermination; // idle in transaction: no statement in flight when the session ends
      await c.query('SELECT 1');
      return { commit: true, value: 'committed' };
    }).then(
      () => null,
      (error: unknown) => error,
    );
    await waitFor(async () => (await admin.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'kairos-victim' AND state = 'idle in transaction'")).rowCount === 1);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kairos-victim'");
    await new Promise((resolve) => setTimeout(resolve, 200)); // let the FATAL message and the socket's end arrive
    terminated();
    const error = await pending;
    expect(uncaught).toEqual([]);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/terminat/i);
    // The pool replaces the dead connection.
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('condition not met in 5 s');
}
