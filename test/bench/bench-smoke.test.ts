// A smoke run of `npm run bench` inside `npm test`: a short run, with a preload and a partition
// drop, on the test suite's PostgreSQL (global-setup.ts; the benchmark makes and drops a
// database of its own there, as it does on any DATABASE_URL). It checks that the run ends and
// prints one JSON line with every field the README documents, each plausible; the figures
// themselves mean nothing at this size (and the suite's server runs without fsync and
// without pg_stat_statements, so the statement figures are null).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, inject, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const JOBS = 300;
const LATENCY_JOBS = 20;
const PRELOAD = 3_000;
const run = promisify(execFile);

it('npm run bench with --preload and --drop-partition prints every documented field', async () => {
  // --ignore-scripts skips the prebench build: the global setup built dist/ already, and a
  // rebuild would delete it under the nodes that other test files are running.
  const { stdout } = await run('npm', ['run', '--silent', '--ignore-scripts', 'bench', '--', '--jobs', String(JOBS), '--latency-jobs', String(LATENCY_JOBS), '--preload', String(PRELOAD), '--drop-partition'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: inject('pgAdminUrl') },
    timeout: 150_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  expect(lines).toHaveLength(1);
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;

  // Every field named in the README's table of the line is there.
  for (const field of documentedFields()) expect(line, `documented field ${field}`).toHaveProperty(field);

  expect(line).toMatchObject({ system: 'kairos', jobs: JOBS, payloadBytes: 2048, chunk: 1000, nodes: 1, workers: 2, slotsPerWorker: 128, preloadedJobs: PRELOAD });
  expect(line.postgres).toMatch(/PostgreSQL \d+/);
  for (const field of ['submitPerSec', 'e2ePerSec', 'startLatencyP50Ms', 'roundTripsPerJob', 'commitsPerSec', 'walBytesPerJob', 'nodePeakRssMb']) {
    expect(line[field], field).toBeGreaterThan(0);
  }
  expect(line.startLatencyP99Ms).toBeGreaterThanOrEqual(line.startLatencyP50Ms as number);
  const cpu = line.cpuUsPerJob as Record<string, number | null>;
  for (const role of ['node', 'workers', 'producer', 'total']) expect(cpu[role], `cpuUsPerJob.${role}`).toBeGreaterThan(0);
  // Null only for a server on another machine, whose processes /proc cannot see.
  if (cpu.postgres !== null) expect(cpu.postgres).toBeGreaterThan(0);
  expect(line.otherCpuSec).toBeGreaterThanOrEqual(0);
  // From pg_stat_statements: null where the server did not preload it (this suite's does not).
  for (const field of ['statementsPerJob', 'pgExecUsPerJob', 'jobWritesPerJob', 'jobWritesPerCommit']) {
    if (line[field] !== null) expect(line[field], field).toBeGreaterThan(0);
  }

  // A job of 2 KB that PostgreSQL compresses to about 1.3 KB takes more than 1 KB of table.
  expect(line.jobsTableBytesPerJob).toBeGreaterThan(1_000);
  expect(line.jobsIndexBytesPerJob).toBeGreaterThan(0);
  expect(line.idempotencyBytesPerJob).toBeGreaterThan(0);

  // The oldest of the 30 preloaded days: 100 jobs, hence 100 keys.
  expect(line.keysDeleted).toBe(PRELOAD / 30);
  expect(line.dropMs).toBeGreaterThan(0);
  expect(line.dropMs).toBeLessThan(10_000);
  expect(line.keyDeletionMs).toBeGreaterThan(0);
  const probes = line.dropProbeCommits as { before: number; drop: number; keyDeletion: number };
  expect(probes.before).toBeGreaterThan(0);
  expect(line.commitP99BeforeDropMs).toBeGreaterThan(0);
  // A drop shorter than the probe's 10 ms gap may overlap none of its commits.
  if (probes.drop > 0) expect(line.commitP99DuringDropMs).toBeGreaterThan(0);
  if (probes.keyDeletion > 0) expect(line.commitP99DuringKeyDeletionMs).toBeGreaterThan(0);
}, 180_000);

/** The backquoted field names in the first column of the README's table of the JSON line. */
function documentedFields(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| field | meaning |'));
  const rows = table.slice(0, table.indexOf('\n\n')).split('\n').slice(2);
  const fields = rows.flatMap((row) => [...(row.split('|')[1] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1]!));
  expect(fields.length).toBeGreaterThan(20);
  return fields;
}
