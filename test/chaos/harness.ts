// The chaos harness: real `kairos start` node processes on one real (embedded) PostgreSQL, each
// node behind a TCP proxy of its own, producer and worker processes through the SDK, and faults
// injected from outside on a seeded schedule, one at a time: kill -9 of a node (restarted in its
// data dir), SIGSTOP/SIGCONT of a node, kill -9 of a worker (restarted), a PostgreSQL restart
// (same data dir and port), pg_terminate_backend of the nodes' backends, and the proxy resetting
// or delaying a node's database connections. Then it heals, drains, and audits in SQL.
//
// Safety (what must never happen): an acknowledged job missing; a job committed terminal twice
// (a trigger of the harness's own logs every commit into a terminal status); attempts above the
// job's maximum; two jobs for one (tenant, idempotency key), or a key acknowledged with another
// job than the one stored under it.
// Liveness (reported): jobs not terminal by the end of the drain, failover time per fault (from
// the fault until a probe submission on each affected shard is acknowledged), throughput dips,
// `internal` answers, 'deadlock detected' in PostgreSQL's log, node or worker processes that
// exited without the harness killing them.

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { connect, ConnectionClosedError, KairosError, OutcomeUnknownError, type KairosClient } from '../../protocol/sdk/index.ts';
import { shardForSubmission } from '../../protocol/job-id.ts';
import { writeClusterKeyFile } from '../../node/adapters/libp2p/cluster-key.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../node/store/embedded.ts';
import { migrate } from '../../node/store/migrate.ts';
import { databaseUrl } from '../support/db-url.ts';
import { spawnNode, TEST_TOKEN, type SpawnedNode } from '../support/spawn-node.ts';
import { spawnWorker, type SpawnedWorker } from '../support/spawn-worker.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const TENANT = 'tenant-a';
const QUEUE = 'chaos';
const DB = 'kairos_chaos';

export const FAULT_KINDS = ['kill-node', 'stop-node', 'kill-worker', 'pg-restart', 'pg-terminate', 'proxy-reset', 'proxy-delay'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  nodes: number;
  /** How long faults are injected (the fault under way when it ends runs to its end). */
  seconds: number;
  faults: FaultKind[];
  seed: number;
  /** Submissions a second, over all producers. */
  rate: number;
  shards?: number;
  /** Time allowed, after healing, for every acknowledged job to turn terminal. */
  drainMs?: number;
  /** Keep the run's directory (logs, acks) even when the run passes. */
  keep?: boolean;
  /** The nodes' log level (default warn; info logs ring changes and shard moves). */
  nodeLogLevel?: string;
  log?: (line: string) => void;
}

export interface FaultRecord {
  kind: FaultKind;
  /** ms from the start of the fault phase. */
  atMs: number;
  victim: string;
  detail: string;
  /** Shards probed after the fault (the victim's, or all). */
  shards: number;
  /** From the fault until every probed shard acknowledged a submission; null: not within the cap. */
  failoverMs: number | null;
  /** Probe submissions that failed before the shards came back. */
  probesFailed: number;
  /** Acknowledgements a second: median before the fault phase, lowest 1 s bucket during the fault. */
  minRate: number;
}

export interface ChaosReport {
  seed: number;
  options: Omit<ChaosOptions, 'log'>;
  dir: string;
  faults: FaultRecord[];
  safety: string[];
  liveness: string[];
  acked: number;
  unresolved: number;
  refusals: Record<string, number>;
  baselineRate: number;
  deadlocks: number;
  nodeDeaths: string[];
  workerDeaths: string[];
  notTerminal: number;
  drainMs: number;
  queueWait: Array<{ node: string; jobs: number; p50Ms: number; p99Ms: number; maxMs: number }>;
  summary: string;
}

/** mulberry32: a small seeded random source. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface NodeSlot {
  name: string;
  dataDir: string;
  port: number;
  proxy: TcpProxy;
  node: SpawnedNode | null;
  /** The harness is stopping it (kill -9 or the end of the run): its exit is no death. */
  expectingExit: boolean;
  client: KairosClient | null;
}

interface WorkerSlot {
  name: string;
  behaviour: string;
  concurrency: number;
  sleepMs: number;
  worker: SpawnedWorker | null;
  expectingExit: boolean;
}

interface ProducerProc {
  name: string;
  child: ChildProcess;
  done: Promise<void>;
  expectingExit: boolean;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? ((line: string) => process.stderr.write(`chaos: ${line}\n`));
  const shards = options.shards ?? 32;
  const drainMs = options.drainMs ?? 120_000;
  const random = rng(options.seed);
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;

  const dir = mkdtempSync(join(tmpdir(), 'kairos-chaos-'));
  chmodSync(dir, 0o755); // the embedded server runs as the postgres OS user when we are root
  const pgLogFile = join(dir, 'pg.log');
  const acksFile = join(dir, 'acks.jsonl');
  log(`run dir ${dir}, seed ${options.seed}`);

  // ---- PostgreSQL, its log, and SQL of our own (straight to the server, never via a proxy).
  const pgPort = await freePort();
  let pgLogText = '';
  const onLog = (line: string) => {
    pgLogText += line;
    appendFileSync(pgLogFile, line);
  };
  const startPg = () =>
    startEmbeddedPostgres({
      dataDir: join(dir, 'pg'),
      port: pgPort,
      onLog,
      postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=300', '-c', 'log_line_prefix=%m [%p] %a: '],
    });
  let pgServer: EmbeddedPostgresHandle | null = await startPg();
  const adminUrl = pgServer.connectionString;
  const dbUrl = databaseUrl(adminUrl, DB);
  async function sql<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], url = dbUrl): Promise<R[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }
  await sql(`CREATE DATABASE ${DB}`, [], adminUrl);
  await migrate(dbUrl);
  await sql(TERMINAL_LOG_SQL);

  const keyFile = join(dir, 'cluster.key');
  await writeClusterKeyFile(keyFile);
  const nodeSlots: NodeSlot[] = [];
  const workerSlots: WorkerSlot[] = [];
  const producers: ProducerProc[] = [];
  const nodeDeaths: string[] = [];
  const workerDeaths: string[] = [];
  const harnessErrors: string[] = [];
  let shuttingDown = false;
  const runStart = Date.now();
  const rel = () => ((Date.now() - runStart) / 1000).toFixed(1);

  async function startNode(slot: NodeSlot): Promise<void> {
    for (let tries = 1; ; tries++) {
      const peers = nodeSlots.filter((s) => s !== slot && s.node !== null).map((s) => s.node!.peerAddress);
      try {
        const proxied = new URL(dbUrl);
        proxied.port = String(slot.proxy.port);
        const node = await spawnNode({ databaseUrl: proxied.toString(), dataDir: slot.dataDir, port: slot.port, shards, join: peers, clusterKeyFile: keyFile, logLevel: options.nodeLogLevel ?? 'warn' });
        slot.node = node;
        slot.expectingExit = false;
        node.child.once('exit', (code, signal) => {
          appendFileSync(join(dir, `${slot.name}.log`), `--- ${slot.name} (${node.nodeId}) exited at ${rel()} s, code ${code}, signal ${signal}\n${node.log()}`);
          if (slot.node === node) slot.node = null;
          if (slot.expectingExit || shuttingDown) return;
          const lines = node.log().trim().split('\n');
          const tail = (lines.find((l) => /^\w*Error\b|Unhandled|FATAL|uncaught/i.test(l.trim())) ?? lines.at(-1) ?? '').trim().slice(0, 300);
          nodeDeaths.push(`${slot.name} exited on its own at ${rel()} s (code ${code}, signal ${signal}); first error line: ${tail} (full log: ${slot.name}.log)`);
          log(`node ${slot.name} DIED (code ${code}, signal ${signal}); restarting it`);
          void sleep(1_000).then(() => (shuttingDown ? undefined : startNode(slot)));
        });
        return;
      } catch (error) {
        if (tries >= 5 || shuttingDown) {
          harnessErrors.push(`${slot.name} did not start: ${String(error).slice(0, 500)}`);
          return;
        }
        log(`node ${slot.name} did not start (try ${tries}): ${String(error).split('\n').slice(0, 3).join(' | ').slice(0, 400)}; again in 2 s`);
        appendFileSync(join(dir, `${slot.name}.log`), `--- ${slot.name} failed start at ${rel()} s\n${String(error)}\n`);
        // Its client port comes from the ephemeral range: an outgoing connection may hold it now.
        if (String(error).includes('EADDRINUSE')) slot.port = await freePort();
        await sleep(2_000);
      }
    }
  }

  function liveUrl(avoid?: NodeSlot): string {
    const live = nodeSlots.filter((s) => s.node !== null && s !== avoid);
    return (live[0] ?? nodeSlots[0]!).node?.url ?? `ws://127.0.0.1:${nodeSlots[0]!.port}`;
  }

  async function startWorker(slot: WorkerSlot, url: string): Promise<void> {
    try {
      const worker = await spawnWorker({ url, token: TEST_TOKEN, queue: QUEUE, concurrency: slot.concurrency, behaviour: slot.behaviour, sleepMs: slot.sleepMs });
      slot.worker = worker;
      slot.expectingExit = false;
      worker.child.once('exit', (code, signal) => {
        if (slot.worker === worker) slot.worker = null;
        if (slot.expectingExit || shuttingDown) return;
        workerDeaths.push(`${slot.name} exited on its own at ${rel()} s (code ${code}, signal ${signal})`);
        void sleep(1_000).then(() => (shuttingDown ? undefined : startWorker(slot, liveUrl())));
      });
    } catch (error) {
      harnessErrors.push(`${slot.name} did not start: ${String(error).slice(0, 300)}`);
    }
  }

  // ---- What the producers say.
  const acks = new Map<string, string>();
  const ackTimes: number[] = [];
  const refusals: Record<string, number> = {};
  const unresolved = new Set<string>();
  const keyConflicts: string[] = [];
  function onProducerLine(line: string): void {
    const m = JSON.parse(line) as { t: string; key?: string; id?: string; code?: string; at?: number };
    if (m.t === 'ack') {
      const known = acks.get(m.key!);
      if (known !== undefined && known !== m.id) keyConflicts.push(`key ${m.key} acknowledged as ${known} and as ${m.id}`);
      acks.set(m.key!, m.id!);
      ackTimes.push(m.at!);
      appendFileSync(acksFile, `${line}\n`);
    } else if (m.t === 'refused') {
      refusals[m.code!] = (refusals[m.code!] ?? 0) + 1;
    } else if (m.t === 'unresolved') {
      unresolved.add(m.key!);
    }
  }
  function startProducer(name: string, rate: number): ProducerProc {
    const urls = nodeSlots.map((s) => `ws://127.0.0.1:${s.port}`);
    // Each producer starts at another node.
    const rotated = [...urls.slice(producers.length % urls.length), ...urls.slice(0, producers.length % urls.length)];
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/chaos/producer.ts'), '--urls', rotated.join(','), '--token', TEST_TOKEN, '--queue', QUEUE, '--rate', String(rate), '--prefix', name], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) if (line.trim() !== '') onProducerLine(line);
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const proc: ProducerProc = {
      name,
      child,
      expectingExit: false,
      done: new Promise((resolveDone) =>
        child.once('exit', (code) => {
          if (code !== 0) harnessErrors.push(`producer ${name} exited with ${code}: ${stderr.slice(-500)}`);
          resolveDone();
        }),
      ),
    };
    return proc;
  }

  // ---- Probes: a submission on a given shard, through a node that is not the victim.
  const probeAcks = new Map<string, string>();
  const keyFor = new Map<number, number>();
  function probeKey(shard: number): string {
    for (let n = keyFor.get(shard) ?? 0; ; n++) {
      const key = `probe-${shard}-${n}`;
      if (shardForSubmission(TENANT, key, shards, () => 0) === shard) {
        keyFor.set(shard, n + 1);
        return key;
      }
    }
  }
  async function probeClient(avoid?: NodeSlot): Promise<KairosClient> {
    const candidates = nodeSlots.filter((s) => s !== avoid && s.node !== null);
    for (const slot of candidates.length > 0 ? candidates : nodeSlots.filter((s) => s !== avoid)) {
      if (slot.client !== null) return slot.client;
      try {
        slot.client = await connect({ url: `ws://127.0.0.1:${slot.port}`, token: TEST_TOKEN, client: 'chaos-probe', retry: false, requestTimeoutMs: 2_000, onWarning: () => {} });
        return slot.client;
      } catch {
        // The next one.
      }
    }
    throw new Error('no node to probe through');
  }
  /** Probes each shard until it acknowledges a submission; the time from `t0` until the last
   * one did (null if some did not within `capMs`), and the failed probes. */
  async function probe(shardIds: number[], t0: number, capMs: number, avoid?: NodeSlot): Promise<{ ms: number | null; failed: number }> {
    let failed = 0;
    let worst = 0;
    const results = await Promise.all(
      shardIds.map(async (shard) => {
        while (Date.now() - t0 < capMs) {
          const key = probeKey(shard);
          try {
            const client = await probeClient(avoid);
            try {
              const { jobId } = await client.submit({ queue: QUEUE, payload: new TextEncoder().encode(key), idempotencyKey: key, retry: { attemptsMax: 4, backoffBaseMs: 200, backoffMaxMs: 2_000, jitter: 0.5 } });
              probeAcks.set(key, jobId);
              worst = Math.max(worst, Date.now() - t0);
              return true;
            } catch (error) {
              if (error instanceof ConnectionClosedError) for (const s of nodeSlots) if (s.client === client) s.client = null;
              throw error;
            }
          } catch (error) {
            failed++;
            if (error instanceof OutcomeUnknownError && error.cause instanceof KairosError && error.cause.code === 'internal') refusals['probe:internal'] = (refusals['probe:internal'] ?? 0) + 1;
            await sleep(250);
          }
        }
        return false;
      }),
    );
    return { ms: results.every(Boolean) ? worst : null, failed };
  }
  async function heldShards(slot: NodeSlot): Promise<number[]> {
    if (slot.node === null) return [];
    return (await sql<{ id: number }>('SELECT id FROM shard_leases WHERE owner = $1 ORDER BY id', [slot.node.nodeId])).map((r) => r.id);
  }
  const allShards = Array.from({ length: shards }, (_, i) => i);
  function minRateBetween(from: number, to: number): number {
    let min = Infinity;
    for (let t = from; t + 1000 <= Math.max(to, from + 1000); t += 1000) {
      min = Math.min(min, ackTimes.filter((x) => x >= t && x < t + 1000).length);
    }
    return min === Infinity ? 0 : min;
  }

  // ---- The faults.
  const records: FaultRecord[] = [];
  const restarts: Array<Promise<void>> = [];
  async function runFault(kind: FaultKind, faultStart: number): Promise<void> {
    const liveNodes = nodeSlots.filter((s) => s.node !== null);
    const rec: FaultRecord = { kind, atMs: Date.now() - faultStart, victim: '-', detail: '', shards: 0, failoverMs: null, probesFailed: 0, minRate: 0 };
    let t0 = Date.now();
    /** A live node for the fault, the shards it holds, and those to probe (all, if none). */
    const pickVictim = async () => {
      const slot = pick(liveNodes);
      rec.victim = slot.name;
      const held = await heldShards(slot);
      return { slot, held, target: held.length > 0 ? held : allShards };
    };
    switch (kind) {
      case 'kill-node': {
        const { slot, held, target } = await pickVictim();
        t0 = Date.now();
        slot.expectingExit = true;
        await slot.node!.kill('SIGKILL');
        const p = await probe(target, t0, 60_000, slot);
        Object.assign(rec, { shards: target.length, failoverMs: p.ms, probesFailed: p.failed });
        // The restart runs on while the schedule goes on (a joining node takes a while to be ready).
        const restartAt = Date.now();
        restarts.push(startNode(slot).then(() => log(`${slot.name} restarted, ready ${Date.now() - restartAt} ms after the restart began`)));
        rec.detail = `held ${held.length} shards; restart begun ${restartAt - t0} ms after the kill`;
        break;
      }
      case 'stop-node': {
        const { slot, held, target } = await pickVictim();
        const pauseMs = between(5_000, 20_000);
        t0 = Date.now();
        const child = slot.node!.child;
        child.kill('SIGSTOP');
        const resumed = sleep(pauseMs).then(() => child.kill('SIGCONT'));
        const p = await probe(target, t0, pauseMs + 45_000, slot);
        await resumed;
        const owners = held.length === 0 ? [] : await sql<{ owner: string | null }>('SELECT owner FROM shard_leases WHERE id = ANY($1)', [held]);
        const stillVictim = owners.filter((r) => r.owner === slot.node?.nodeId).length;
        Object.assign(rec, { shards: target.length, failoverMs: p.ms, probesFailed: p.failed });
        rec.detail = `paused ${pauseMs} ms; ${p.ms !== null && p.ms < pauseMs ? 'served again while paused' : 'served again only after SIGCONT (or never)'}; ${stillVictim}/${held.length} of its shards still its own afterwards`;
        break;
      }
      case 'kill-worker': {
        const live = workerSlots.filter((w) => w.worker !== null);
        if (live.length === 0) return;
        const slot = pick(live);
        rec.victim = slot.name;
        slot.expectingExit = true;
        await slot.worker!.kill('SIGKILL');
        await sleep(1_000);
        await startWorker(slot, liveUrl());
        rec.detail = `behaviour ${slot.behaviour}; restarted after ${Date.now() - t0} ms`;
        break;
      }
      case 'pg-restart': {
        const downMs = between(1_000, 5_000);
        rec.victim = 'postgres';
        t0 = Date.now();
        await pgServer!.stop();
        pgServer = null;
        const stoppedMs = Date.now() - t0;
        await sleep(downMs);
        pgServer = await startPg();
        const p = await probe(allShards, t0, 90_000);
        Object.assign(rec, { shards: shards, failoverMs: p.ms, probesFailed: p.failed });
        rec.detail = `stop took ${stoppedMs} ms, down ${downMs} ms more`;
        break;
      }
      case 'pg-terminate': {
        rec.victim = 'backends';
        const backends = await sql<{ pid: number; application_name: string }>("SELECT pid, application_name FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'kairos%'", [DB]);
        const chosen = backends.filter(() => random() < 0.5);
        if (chosen.length === 0 && backends.length > 0) chosen.push(pick(backends));
        t0 = Date.now();
        await sql('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [chosen.map((b) => b.pid)]);
        const p = await probe(allShards, t0, 60_000);
        Object.assign(rec, { shards: shards, failoverMs: p.ms, probesFailed: p.failed });
        const byApp: Record<string, number> = {};
        for (const b of chosen) byApp[b.application_name] = (byApp[b.application_name] ?? 0) + 1;
        rec.detail = `terminated ${chosen.length}/${backends.length} backends ${JSON.stringify(byApp)}`;
        break;
      }
      case 'proxy-reset': {
        const { slot, target } = await pickVictim();
        t0 = Date.now();
        const n = slot.proxy.resetAll();
        const p = await probe(target, t0, 60_000);
        Object.assign(rec, { shards: target.length, failoverMs: p.ms, probesFailed: p.failed });
        rec.detail = `reset ${n} connections`;
        break;
      }
      case 'proxy-delay': {
        const { slot, target } = await pickVictim();
        const delayMs = between(200, 2_000);
        const forMs = between(5_000, 15_000);
        t0 = Date.now();
        slot.proxy.setDelay(delayMs);
        const healed = sleep(forMs).then(() => slot.proxy.setDelay(0));
        const p = await probe(target, t0, forMs + 30_000);
        await healed;
        Object.assign(rec, { shards: target.length, failoverMs: p.ms, probesFailed: p.failed });
        rec.detail = `delay ${delayMs} ms each way for ${forMs} ms`;
        break;
      }
    }
    rec.minRate = minRateBetween(t0, Math.max(Date.now(), t0 + (rec.failoverMs ?? 0) + 1_000));
    records.push(rec);
    log(`${kind} ${rec.victim}: failover ${rec.failoverMs ?? 'NOT WITHIN CAP'} ms, ${rec.probesFailed} probes failed, ${rec.detail}`);
  }

  const report = { dir } as ChaosReport;
  try {
    // ---- Start: nodes (the first alone, then the rest joining it), workers, producers.
    for (let i = 0; i < options.nodes; i++) {
      nodeSlots.push({ name: `n${i}`, dataDir: join(dir, `node-${i}`), port: await freePort(), proxy: await startTcpProxy(pgPort), node: null, expectingExit: false, client: null });
    }
    await startNode(nodeSlots[0]!);
    await Promise.all(nodeSlots.slice(1).map((s) => startNode(s)));
    if (nodeSlots.some((s) => s.node === null)) throw new Error(`the cluster did not start: ${harnessErrors.join('; ')}`);
    await waitUntil('every shard owned, by every node', 60_000, async () => {
      const rows = await sql<{ owner: string | null }>('SELECT owner FROM shard_leases');
      const owners = new Set(rows.map((r) => r.owner));
      return rows.length === shards && !owners.has(null) && nodeSlots.every((s) => owners.has(s.node!.nodeId));
    });
    const ids = nodeSlots.map((s) => `${s.name}=${s.node!.nodeId}`);
    log(`cluster up: ${ids.join(' ')}`);
    const behaviours = [
      { behaviour: 'noop', concurrency: 16, sleepMs: 0 },
      { behaviour: 'fail-twice', concurrency: 8, sleepMs: 0 },
      { behaviour: 'slow', concurrency: 16, sleepMs: 200 },
    ];
    behaviours.forEach((b, i) => workerSlots.push({ name: `w${i}-${b.behaviour}`, ...b, worker: null, expectingExit: false }));
    await Promise.all(workerSlots.map((w, i) => startWorker(w, nodeSlots[i % nodeSlots.length]!.node!.url)));
    const producerCount = 2;
    for (let i = 0; i < producerCount; i++) producers.push(startProducer(`p${i}`, options.rate / producerCount));

    // ---- Warm-up (the baseline rate), then faults, one at a time, with gaps.
    await sleep(12_000);
    const warmStart = Date.now() - 6_000; // the producers take a few seconds to reach their rate
    const faultStart = Date.now();
    log(`fault phase: ${options.seconds} s of ${options.faults.join(',')}`);
    while (Date.now() - faultStart < options.seconds * 1000) {
      await runFault(pick(options.faults), faultStart);
      await sleep(between(2_000, 5_000));
    }
    const faultEnd = Date.now();

    // ---- Heal: every node and worker up, no delay, every shard owned by a live node.
    for (const slot of nodeSlots) slot.proxy.setDelay(0);
    await Promise.all(restarts);
    for (const slot of nodeSlots) if (slot.node === null) await startNode(slot);
    for (const slot of workerSlots) if (slot.worker === null) await startWorker(slot, liveUrl());
    const healed = await waitUntil('healed: every shard owned by a live node', 90_000, async () => {
      const live = new Set(nodeSlots.map((s) => s.node?.nodeId));
      const rows = await sql<{ owner: string | null }>('SELECT owner FROM shard_leases');
      return rows.every((r) => live.has(r.owner ?? undefined));
    }).then(() => true, () => false);
    log(`healed: ${healed}; stopping the producers`);
    for (const p of producers) p.child.kill('SIGTERM');
    await Promise.race([Promise.all(producers.map((p) => p.done)), sleep(60_000)]);

    // ---- Drain: every acknowledged job terminal.
    const ackedIds = [...new Set([...acks.values(), ...probeAcks.values()])];
    const drainStart = Date.now();
    let notTerminal = Infinity;
    while (Date.now() - drainStart < drainMs) {
      const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE id = ANY($1) AND status IN ('succeeded', 'dead', 'cancelled')", [ackedIds]);
      notTerminal = ackedIds.length - Number(row!.n);
      if (notTerminal === 0) break;
      await sleep(500);
    }
    const drainTook = Date.now() - drainStart;
    log(`drain: ${notTerminal} not terminal after ${drainTook} ms`);

    // ---- Audit.
    const safety: string[] = [...keyConflicts];
    const rows = await sql<{ id: string; status: string; attempts: number; retry_attempts_max: number; idempotency_key: string | null }>(
      'SELECT id, status, attempts, retry_attempts_max, idempotency_key FROM jobs WHERE id = ANY($1)',
      [ackedIds],
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const lost = ackedIds.filter((id) => !byId.has(id));
    if (lost.length > 0) safety.push(`${lost.length} acknowledged jobs missing: ${lost.slice(0, 5).join(' ')}`);
    for (const [key, id] of [...acks, ...probeAcks]) {
      const row = byId.get(id);
      if (row !== undefined && row.idempotency_key !== key) safety.push(`key ${key} acknowledged as ${id}, stored under key ${row.idempotency_key}`);
    }
    const twice = await sql<{ job_id: string; n: string; statuses: string }>(
      "SELECT job_id, count(*) AS n, string_agg(old_status || '>' || new_status, ',' ORDER BY at) AS statuses FROM chaos_terminal_commits GROUP BY job_id HAVING count(*) > 1",
    );
    if (twice.length > 0) safety.push(`${twice.length} jobs committed terminal twice: ${twice.slice(0, 5).map((r) => `${r.job_id} (${r.statuses})`).join(' ')}`);
    const overAttempts = await sql<{ id: string; attempts: number; retry_attempts_max: number }>('SELECT id, attempts, retry_attempts_max FROM jobs WHERE attempts > retry_attempts_max');
    if (overAttempts.length > 0) safety.push(`${overAttempts.length} jobs over their attempts: ${overAttempts.slice(0, 5).map((r) => `${r.id} ${r.attempts}/${r.retry_attempts_max}`).join(' ')}`);
    const dupKeys = await sql<{ tenant: string; idempotency_key: string; n: string }>(
      'SELECT tenant, idempotency_key, count(*) AS n FROM jobs WHERE idempotency_key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1',
    );
    if (dupKeys.length > 0) safety.push(`${dupKeys.length} (tenant, key) pairs with several jobs: ${dupKeys.slice(0, 5).map((r) => `${r.tenant}/${r.idempotency_key}×${r.n}`).join(' ')}`);

    const deadlocks = (pgLogText.match(/deadlock detected/g) ?? []).length;
    const liveness: string[] = [];
    if (notTerminal > 0) liveness.push(`${notTerminal} acknowledged jobs not terminal ${drainMs} ms after healing`);
    if (deadlocks > 0) liveness.push(`${deadlocks} 'deadlock detected' in PostgreSQL's log`);
    liveness.push(...nodeDeaths.map((d) => `node died: ${d}`), ...workerDeaths.map((d) => `worker died: ${d}`));
    for (const r of records) if (r.failoverMs === null && r.kind !== 'kill-worker') liveness.push(`${r.kind} ${r.victim} at ${r.atMs} ms: shards not served again within the cap`);
    if (!healed) liveness.push('not healed: some shard not owned by a live node 90 s after the faults');
    liveness.push(...harnessErrors.map((e) => `harness: ${e}`));

    // Queue wait, by the node of the worker that finished the job (lease_worker's node part):
    // created to finished, so it includes retries' backoff and the `slow` handler's 200 ms.
    const nodeName = new Map(nodeSlots.map((s) => [s.node?.nodeId ?? '', s.name]));
    const waits = await sql<{ node: string; jobs: string; p50: number; p99: number; max: number }>(
      `SELECT split_part(lease_worker, '/', 1) AS node, count(*) AS jobs,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
       FROM (SELECT lease_worker, extract(epoch FROM finished_at - created_at) * 1000 AS ms FROM jobs WHERE status = 'succeeded' AND lease_worker IS NOT NULL) j
       GROUP BY 1 ORDER BY 1`,
    );
    const queueWait = waits.map((w) => ({ node: nodeName.get(w.node) ?? w.node, jobs: Number(w.jobs), p50Ms: Math.round(w.p50), p99Ms: Math.round(w.p99), maxMs: Math.round(w.max) }));

    const before = bucketRates(ackTimes, warmStart + 1_000, faultStart);
    const baselineRate = before.length === 0 ? 0 : before.sort((a, b) => a - b)[Math.floor(before.length / 2)]!;
    log(`acks/s before the faults: ${before.join(' ')}`);
    Object.assign(report, {
      seed: options.seed,
      options: { ...options, log: undefined },
      faults: records,
      safety,
      liveness,
      acked: ackedIds.length,
      unresolved: unresolved.size,
      refusals,
      baselineRate,
      deadlocks,
      nodeDeaths,
      workerDeaths,
      notTerminal,
      drainMs: drainTook,
      queueWait,
    });
    report.summary = summarize(report, Math.round((faultEnd - faultStart) / 1000));
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 2));
    return report;
  } finally {
    shuttingDown = true;
    for (const slot of nodeSlots) await slot.client?.close().catch(() => {});
    for (const p of producers) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const slot of workerSlots) await slot.worker?.kill('SIGKILL');
    for (const slot of nodeSlots) {
      if (slot.node === null) continue;
      slot.node.child.kill('SIGCONT');
      await slot.node.kill('SIGKILL');
    }
    for (const slot of nodeSlots) await slot.proxy.close();
    await pgServer?.stop().catch(() => {});
    const failed = report.safety === undefined || report.safety.length > 0 || report.liveness.length > 0;
    if (!options.keep && !failed) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir} (pg.log, acks.jsonl, report.json, node data)`);
  }
}

// Every commit into a terminal status, by a trigger of the harness's own (inserts included, with
// the status it came from), so that "committed once" does not rest on the store's word.
const TERMINAL_LOG_SQL = `
  CREATE TABLE chaos_terminal_commits (job_id text NOT NULL, old_status text, new_status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE FUNCTION chaos_log_terminal_commit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.status IN ('succeeded', 'dead', 'cancelled') THEN
      INSERT INTO chaos_terminal_commits (job_id, old_status, new_status)
        VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status ELSE 'none' END, NEW.status);
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER chaos_log_terminal_commit AFTER INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION chaos_log_terminal_commit();`;

async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function bucketRates(times: number[], from: number, to: number): number[] {
  const out: number[] = [];
  for (let t = from; t + 1000 <= to; t += 1000) out.push(times.filter((x) => x >= t && x < t + 1000).length);
  return out;
}

function summarize(r: ChaosReport, faultSeconds: number): string {
  const lines: string[] = [];
  lines.push(`chaos seed=${r.seed} nodes=${r.options.nodes} fault phase ${faultSeconds} s, rate ${r.options.rate}/s, faults ${r.options.faults.join(',')}`);
  lines.push(`  acknowledged ${r.acked} (incl. probes), unresolved at stop ${r.unresolved}; baseline ${r.baselineRate} acks/s`);
  lines.push(`  refusals seen by producers: ${JSON.stringify(r.refusals)}  (internal: ${(r.refusals.internal ?? 0) + (r.refusals['probe:internal'] ?? 0)})`);
  lines.push('  faults (failover: from the fault until every affected shard acknowledged a probe submission):');
  for (const f of r.faults) {
    lines.push(`    +${(f.atMs / 1000).toFixed(1)}s ${f.kind.padEnd(12)} ${f.victim.padEnd(10)} failover ${f.kind === 'kill-worker' ? '-' : f.failoverMs === null ? 'NOT RECOVERED' : `${f.failoverMs} ms`} over ${f.shards} shards, ${f.probesFailed} probes failed, min ${f.minRate} acks/s; ${f.detail}`);
  }
  lines.push(`  drain: ${r.notTerminal} not terminal after ${r.drainMs} ms`);
  lines.push(`  queue wait (created to finished) by the finishing worker's node: ${r.queueWait.map((w) => `${w.node} n=${w.jobs} p50 ${w.p50Ms} p99 ${w.p99Ms} max ${w.maxMs} ms`).join('; ')}`);
  lines.push(`  deadlocks in the PostgreSQL log: ${r.deadlocks}; node deaths: ${r.nodeDeaths.length}; worker deaths: ${r.workerDeaths.length}`);
  lines.push(`  SAFETY: ${r.safety.length === 0 ? 'ok (none lost, none terminal twice, attempts within max, one job per key)' : ''}`);
  for (const s of r.safety) lines.push(`    VIOLATION ${s}`);
  lines.push(`  LIVENESS: ${r.liveness.length === 0 ? 'ok' : ''}`);
  for (const s of r.liveness) lines.push(`    ${s}`);
  return lines.join('\n');
}
