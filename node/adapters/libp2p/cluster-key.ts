// The cluster key: a libp2p pre-shared key (the "swarm key" of a private network). Every
// connection is encrypted with it underneath noise, so a node without the key can neither
// complete a handshake with the cluster nor read its traffic. The format is the one other
// libp2p tools write:
//
//   /key/swarm/psk/1.0.0/
//   /base16/
//   <64 hex digits: 32 random bytes>
//
// @libp2p/pnet checks only the third line; this module checks all three, so a truncated or
// mistyped key fails here, with a message that says where it came from, instead of as a
// handshake timeout against every peer. Errors never quote the key.

import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';

const HEADER = '/key/swarm/psk/1.0.0/';
const CODEC = '/base16/';
const KEY_BYTES = 32;
const HEX_KEY = new RegExp(`^[0-9a-fA-F]{${2 * KEY_BYTES}}$`);

export const CLUSTER_KEY_FILE_ENV = 'KAIROS_CLUSTER_KEY_FILE';
export const CLUSTER_KEY_ENV = 'KAIROS_CLUSTER_KEY';

export class ClusterKeyError extends Error {
  override name = 'ClusterKeyError';
}

/** A new key in the swarm key format, as the bytes @libp2p/pnet takes. */
export function generateClusterKey(): Uint8Array {
  return swarmKey(randomBytes(KEY_BYTES).toString('hex'));
}

/** Reads a key in the swarm key format, or its 64 hex digits alone (which fit in an
 * environment variable). Returns the canonical swarm key bytes. `source` names where the text
 * came from, for the error message. */
export function parseClusterKey(text: string, source: string): Uint8Array {
  const lines = text.trim().split(/\r?\n/).map((line) => line.trim());
  if (lines.length === 1) return swarmKey(hexKey(lines[0] ?? '', source));
  if (lines.length !== 3) {
    throw new ClusterKeyError(`${source}: expected 3 lines (${HEADER}, ${CODEC}, the key), found ${lines.length}`);
  }
  const [header, codec, key] = lines as [string, string, string];
  if (header !== HEADER) throw new ClusterKeyError(`${source}: the first line must be ${HEADER}`);
  if (codec !== CODEC) throw new ClusterKeyError(`${source}: the second line must be ${CODEC} (no other encoding is supported)`);
  return swarmKey(hexKey(key, source));
}

/** The cluster key from, in order: `file` (a CLI flag), the file named by
 * KAIROS_CLUSTER_KEY_FILE, or KAIROS_CLUSTER_KEY itself. Null when none is given. Setting both
 * variables is refused: one of them would be silently ignored. */
export async function loadClusterKey(options: { file?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Uint8Array | null> {
  const env = options.env ?? process.env;
  const fileFromEnv = env[CLUSTER_KEY_FILE_ENV];
  const inline = env[CLUSTER_KEY_ENV];
  if (options.file !== undefined) return readKeyFile(options.file, options.file);
  if (fileFromEnv !== undefined && inline !== undefined) {
    throw new ClusterKeyError(`set ${CLUSTER_KEY_FILE_ENV} or ${CLUSTER_KEY_ENV}, not both`);
  }
  if (fileFromEnv !== undefined) return readKeyFile(fileFromEnv, `${fileFromEnv} (from ${CLUSTER_KEY_FILE_ENV})`);
  if (inline !== undefined) return parseClusterKey(inline, CLUSTER_KEY_ENV);
  return null;
}

/** Writes a new key to `path`, readable by its owner only (what `kairos keygen` does). Refuses
 * to overwrite a file: replacing a cluster's key locks every node that has the old one out. */
export async function writeClusterKeyFile(path: string): Promise<void> {
  try {
    await writeFile(path, generateClusterKey(), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    throw new ClusterKeyError(`cannot write cluster key file ${path}: ${describe(error)}`);
  }
}

/** The rule `kairos start` applies: a node that joins others (it has seeds) or that others can
 * reach (it listens beyond loopback) needs a key, unless the operator says it is for
 * development. Throws the message to show the operator. */
export function requireClusterKey(options: {
  key: Uint8Array | null;
  listen: readonly string[];
  seeds: readonly string[];
  development: boolean;
}): void {
  if (options.key !== null || options.development) return;
  const reachable = options.seeds.length > 0 || options.listen.some((addr) => !isLoopback(addr));
  if (!reachable) return;
  throw new ClusterKeyError(
    'a multi-node cluster needs a cluster key: run `kairos keygen <file>`, give every node the file ' +
      `(--cluster-key <file> or ${CLUSTER_KEY_FILE_ENV}=<file>), or start with --insecure-dev-cluster for development only`,
  );
}

async function readKeyFile(path: string, source: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ClusterKeyError(`cannot read cluster key file ${source}: ${describe(error)}`);
  }
  return parseClusterKey(text, source);
}

function hexKey(text: string, source: string): string {
  if (!HEX_KEY.test(text)) throw new ClusterKeyError(`${source}: the key must be ${2 * KEY_BYTES} hex digits`);
  return text.toLowerCase();
}

function swarmKey(hex: string): Uint8Array {
  return new TextEncoder().encode(`${HEADER}\n${CODEC}\n${hex}\n`);
}

function isLoopback(addr: string): boolean {
  return /^\/(ip4\/127\.|ip6\/::1\/|dns4?\/localhost\/)/.test(addr);
}

function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EEXIST') return 'the file exists (a cluster key is never overwritten)';
  if (code === 'EACCES') return 'permission denied';
  return error instanceof Error ? error.message : String(error);
}
