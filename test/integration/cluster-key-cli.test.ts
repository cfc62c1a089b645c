// The CLI around the cluster key: `kairos start` refuses to join a cluster without one, in one
// line and before it starts anything, and `kairos keygen` writes a private key file once.

import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKairos, type KairosRun } from '../support/run-kairos.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kairos-key-cli-'));
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function kairos(args: string[], env: Record<string, string> = {}): Promise<KairosRun> {
  // No key from the environment this test runs in.
  const { KAIROS_CLUSTER_KEY: _key, KAIROS_CLUSTER_KEY_FILE: _file, KAIROS_INSECURE_DEV_CLUSTER: _dev, ...inherited } = process.env;
  return runKairos(args, { env: { ...inherited, ...env }, replaceEnv: true });
}

describe('kairos start without a cluster key', () => {
  it('refuses --join in one line, before it starts anything', async () => {
    const dataDir = join(dir, 'node');
    const seed = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';
    const result = await kairos(['start', '--data-dir', dataDir, '--join', seed]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toBe(
      'kairos: a multi-node cluster needs a cluster key: run `kairos keygen <file>`, give every node the file ' +
        '(--cluster-key <file> or KAIROS_CLUSTER_KEY_FILE=<file>), or start with --insecure-dev-cluster for development only\n',
    );
    // Neither a node key nor the embedded database was made.
    await expect(readdir(dataDir)).rejects.toThrow('ENOENT');
  });
});

describe('kairos start --advertise-url', () => {
  it('refuses a URL that is not ws:// or wss://, before it starts anything', async () => {
    const dataDir = join(dir, 'advertise');
    const result = await kairos(['start', '--data-dir', dataDir, '--advertise-url', 'http://10.0.0.5:7070']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("kairos: --advertise-url takes a ws:// or wss:// URL, got 'http://10.0.0.5:7070'\n");
    await expect(readdir(dataDir)).rejects.toThrow('ENOENT');
  });
});

describe('kairos usage errors', () => {
  it('exit with status 2 for an option the command does not know', async () => {
    const result = await kairos(['submit', 'emails', '--bogus', '1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^kairos: Unknown option '--bogus'/);
  });
});

describe('kairos keygen', () => {
  it('writes a key only its owner can read, and never overwrites one', async () => {
    const file = join(dir, 'cluster.key');
    const first = await kairos(['keygen', file]);
    expect(first.code).toBe(0);
    const written = await readFile(file, 'utf8');
    expect(written).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const second = await kairos(['keygen', file]);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`kairos: cannot write cluster key file ${file}: the file exists (a cluster key is never overwritten)\n`);
    expect(await readFile(file, 'utf8')).toBe(written);
  });
});
