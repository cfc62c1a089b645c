// The package as a user gets it: `npm pack`, installed into a new project in a temporary
// directory, then used the way the README says, from plain JavaScript and from TypeScript
// (types resolve), with `npx kairos start` and `npx kairos submit` against a real PostgreSQL.
// And the SDK's layering: nothing of the node or the store is in its import graph.

import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

/** Every module `entry` imports, transitively, by relative specifiers (the compiled files use
 * no others for the project's own code). */
async function importGraph(entry: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = await readFile(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]/g)) await visit(resolve(dirname(file), spec!));
  };
  await visit(entry);
  return seen;
}

describe('the package', () => {
  it('kairos/sdk imports the protocol and nothing of the node', async () => {
    const graph = [...(await importGraph(join(ROOT, 'dist/protocol/sdk/index.js')))].map((f) => f.slice(ROOT.length + 1));
    expect(graph.length).toBeGreaterThan(5);
    expect(graph.filter((f) => !f.startsWith('dist/protocol/'))).toEqual([]);
  });

  describe('installed from its tarball into a new project', () => {
    let dir: string;
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase();
      dir = await mkdtemp(join(tmpdir(), 'kairos-user-'));
      // dist/ is this checkout's build (the test run's setup made it): no scripts, no rebuild
      // under the feet of the other tests.
      const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT });
      const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
      await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'a-user', private: true, type: 'module' }));
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
    }, 300_000);
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
      await db?.drop();
    });

    it('is used from plain JavaScript and from TypeScript, whose types resolve', async () => {
      await writeFile(
        join(dir, 'use.mjs'),
        `import { connect, DownstreamError } from 'kairos/sdk';
import { encodeMessage, decodeFromNode } from 'kairos/protocol';
import { startNodeProcess, inProcessDial } from 'kairos';
console.log(typeof connect, typeof DownstreamError, typeof encodeMessage, typeof decodeFromNode, typeof startNodeProcess, typeof inProcessDial);
`,
      );
      expect((await run(process.execPath, ['use.mjs'], { cwd: dir })).stdout.trim()).toBe('function function function function function function');

      await writeFile(
        join(dir, 'use.ts'),
        `import { connect, type KairosClient, type JobView } from 'kairos/sdk';
import type { ClientRequest } from 'kairos/protocol';
export async function send(url: string): Promise<string> {
  const client: KairosClient = await connect({ url, token: 'dev-token' });
  const request: ClientRequest = { t: 'get', rid: 1, jobId: 'x' };
  const { jobId } = await client.submit({ queue: 'emails', payload: new Uint8Array([request.rid]) });
  const job: JobView = await client.get(jobId);
  return job.state;
}
// @ts-expect-error: a queue is a string
export const wrong: Parameters<KairosClient['submit']>[0] = { queue: 42, payload: new Uint8Array() };
`,
      );
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true }, files: ['use.ts'] }),
      );
      await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: dir });
    }, 60_000);

    it('runs `npx kairos start` and `npx kairos submit` against it', async () => {
      const env = { ...process.env, DATABASE_URL: db.url, KAIROS_PORT: '0', KAIROS_DATA_DIR: join(dir, '.kairos'), KAIROS_SHARDS: '4' };
      const node = spawn('npx', ['--no-install', 'kairos', 'start'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      try {
        let out = '';
        const url = await new Promise<string>((resolveUrl, reject) => {
          const timer = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 60_000);
          node.stdout!.on('data', (chunk: Buffer) => {
            out += chunk.toString();
            const match = /ready at (ws:\/\/\S+)/.exec(out);
            if (match !== null) {
              clearTimeout(timer);
              resolveUrl(match[1]!);
            }
          });
          node.once('exit', (code) => reject(new Error(`kairos start exited with ${code}: ${out}`)));
        });
        const submitted = await run('npx', ['--no-install', 'kairos', 'submit', 'emails', '--payload', '{"to":"a@b.c"}'], { cwd: dir, env: { ...env, KAIROS_URL: url } });
        expect(JSON.parse(submitted.stdout)).toMatchObject({ jobId: expect.any(String) });
      } finally {
        process.kill(-node.pid!, 'SIGTERM');
        await new Promise((r) => node.once('exit', r));
      }
    }, 90_000);
  });
});
