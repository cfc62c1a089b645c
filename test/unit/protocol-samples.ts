// One or more sample messages of every type, shared by the golden-fixture and codec tests. Each
// sample names its fixture file (test/fixtures/protocol/<name>.hex) and who decodes it.

import type { ClientToNode, NodeToClient } from '../../protocol/client-messages.ts';
import type { JobView } from '../../protocol/job-view.ts';
import type { ScheduleView } from '../../protocol/schedule-view.ts';
import type { BreakerView } from '../../protocol/breaker-view.ts';
import type { PeerMessage } from '../../protocol/peer-messages.ts';
import type { NodeToWorker, WorkerToNode } from '../../protocol/worker-messages.ts';

export type Direction = 'from-client' | 'from-node' | 'from-peer';

export type Sample =
  | { name: string; from: 'from-client'; message: ClientToNode | WorkerToNode }
  | { name: string; from: 'from-node'; message: NodeToClient | NodeToWorker }
  | { name: string; from: 'from-peer'; message: PeerMessage };

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.replace(/\s+/g, '').match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const JOB_ID = '03f-mjuohs00-5-16';
const OTHER_JOB_ID = '0a1-mjuohs6y-c-7';
const text = (s: string) => new TextEncoder().encode(s);

const doneView: JobView = {
  id: JOB_ID,
  queue: 'emails',
  state: 'succeeded',
  priority: 0,
  runAt: T0,
  scheduledAt: T0,
  attempts: 1,
  attemptsMax: 5,
  idempotencyKey: 'order-1234',
  lastError: null,
  result: text('sent'),
  payload: text('{"to":"ada@example.com"}'),
  createdAt: T0,
  updatedAt: T0 + 1500,
  finishedAt: T0 + 1500,
};

const scheduleView: ScheduleView = {
  name: 'nightly',
  queue: 'reports',
  cron: '0 30 2 * * *',
  timezone: 'Europe/Berlin',
  everyMs: null,
  payload: new Uint8Array([1, 2]),
  priority: 0,
  retry: { attemptsMax: 5, backoffBaseMs: 1_000, backoffMaxMs: 300_000, jitter: 0.5 },
  missed: 'each',
  missedMax: 3,
  paused: false,
  nextTickAt: T0 + 5_400_000,
  createdAt: T0,
  updatedAt: T0,
};

const breakerView: BreakerView = {
  queue: 'payments',
  source: 'queue',
  enabled: true,
  failureRatePct: 50,
  minAttempts: 20,
  windowMs: 30_000,
  cooldownMs: 5_000,
  cooldownMaxMs: 300_000,
  probes: 1,
  refuseWhenOpen: true,
  state: 'open',
  since: T0 + 60_000,
  nextProbeAt: T0 + 70_000,
  currentCooldownMs: 10_000,
  openedAttempts: 24,
  openedFailures: 17,
  window: { attempts: 3, failures: 3 },
  updatedAt: T0 + 60_000,
};

const pendingView: JobView = {
  ...doneView,
  id: OTHER_JOB_ID,
  state: 'pending',
  priority: -5,
  runAt: T0 + 60_000,
  scheduledAt: T0 + 250,
  attempts: 2,
  idempotencyKey: null,
  lastError: 'SMTP 451: try again later',
  result: null,
  createdAt: T0 + 250,
  updatedAt: T0 + 30_000,
  finishedAt: null,
};

const token = { jobId: JOB_ID, attempt: 2, epoch: 5 };

const lease = {
  t: 'lease',
  token,
  queue: 'emails',
  payload: text('{"to":"ada@example.com"}'),
  attemptsMax: 5,
  leaseMs: 30_000,
  job: { priority: 0, runAt: T0, createdAt: T0, idempotencyKey: 'order-1234', lastError: 'timeout' },
} as const;

export const SAMPLES: readonly Sample[] = [
  // Client → node.
  { name: 'hello', from: 'from-client', message: { t: 'hello', versions: [1], client: 'kairos-sdk/0.1.0' } },
  {
    name: 'submit',
    from: 'from-client',
    message: { t: 'submit', rid: 1, job: { queue: 'emails', payload: text('{"to":"ada@example.com"}') } },
  },
  {
    name: 'submit-all-fields',
    from: 'from-client',
    message: {
      t: 'submit',
      rid: 2,
      job: {
        queue: 'emails',
        payload: text('{"to":"ada@example.com"}'),
        priority: 10,
        runAt: T0 + 60_000,
        idempotencyKey: 'order-1234',
        retry: { attemptsMax: 3, backoffBaseMs: 500, backoffMaxMs: 60_000, jitter: 0.25 },
      },
    },
  },
  {
    name: 'submit-delayed',
    from: 'from-client',
    message: { t: 'submit', rid: 3, job: { queue: 'reports', payload: new Uint8Array([0, 1, 2, 255]), delayMs: 3_600_000 } },
  },
  {
    name: 'submit_batch',
    from: 'from-client',
    message: {
      t: 'submit_batch',
      rid: 4,
      jobs: [
        { queue: 'emails', payload: text('a'), idempotencyKey: 'k-1' },
        { queue: 'emails', payload: text('b'), priority: -1 },
      ],
    },
  },
  { name: 'get', from: 'from-client', message: { t: 'get', rid: 5, jobId: JOB_ID } },
  {
    name: 'list',
    from: 'from-client',
    message: { t: 'list', rid: 6, state: 'pending', queue: 'emails', limit: 50, after: 'c:0a1-mjuohs6y-c-7' },
  },
  { name: 'list-unfiltered', from: 'from-client', message: { t: 'list', rid: 7 } },
  { name: 'cancel', from: 'from-client', message: { t: 'cancel', rid: 8, jobId: JOB_ID } },
  { name: 'subscribe', from: 'from-client', message: { t: 'subscribe', rid: 9, jobId: JOB_ID } },
  { name: 'unsubscribe', from: 'from-client', message: { t: 'unsubscribe', rid: 10, jobId: JOB_ID } },
  { name: 'dlq_list', from: 'from-client', message: { t: 'dlq_list', rid: 11, queue: 'emails', limit: 20 } },
  { name: 'dlq_requeue', from: 'from-client', message: { t: 'dlq_requeue', rid: 12, jobId: JOB_ID, attempts: 3 } },
  {
    name: 'schedule_upsert',
    from: 'from-client',
    message: {
      t: 'schedule_upsert',
      rid: 30,
      schedule: { name: 'nightly', queue: 'reports', cron: '0 30 2 * * *', timezone: 'Europe/Berlin', payload: new Uint8Array([1, 2]), missed: 'each', missedMax: 3 },
    },
  },
  { name: 'schedule_get', from: 'from-client', message: { t: 'schedule_get', rid: 31, name: 'nightly' } },
  { name: 'schedule_list', from: 'from-client', message: { t: 'schedule_list', rid: 32, limit: 10 } },
  { name: 'schedule_pause', from: 'from-client', message: { t: 'schedule_pause', rid: 33, name: 'nightly', paused: true } },
  { name: 'schedule_delete', from: 'from-client', message: { t: 'schedule_delete', rid: 34, name: 'nightly' } },
  {
    name: 'breaker_set',
    from: 'from-client',
    message: { t: 'breaker_set', rid: 40, breaker: { queue: 'payments', failureRatePct: 50, minAttempts: 20, cooldownMs: 5_000, refuseWhenOpen: true } },
  },
  { name: 'breaker_set-off', from: 'from-client', message: { t: 'breaker_set', rid: 41, breaker: { queue: 'reports', enabled: false } } },
  { name: 'breaker_clear', from: 'from-client', message: { t: 'breaker_clear', rid: 42, queue: 'payments' } },
  { name: 'breaker_get', from: 'from-client', message: { t: 'breaker_get', rid: 43, queue: 'payments' } },
  { name: 'breaker_list', from: 'from-client', message: { t: 'breaker_list', rid: 44, limit: 10 } },
  { name: 'breaker_watch', from: 'from-client', message: { t: 'breaker_watch', rid: 45 } },
  // Worker → node.
  { name: 'credit', from: 'from-client', message: { t: 'credit', queue: 'emails', slots: 8 } },
  { name: 'drain', from: 'from-client', message: { t: 'drain', queue: 'emails' } },
  { name: 'drain-all', from: 'from-client', message: { t: 'drain' } },
  { name: 'heartbeat', from: 'from-client', message: { t: 'heartbeat', rid: 13, token, progress: '40%' } },
  { name: 'complete', from: 'from-client', message: { t: 'complete', rid: 14, token, result: text('sent') } },
  { name: 'complete-no-result', from: 'from-client', message: { t: 'complete', rid: 15, token } },
  {
    name: 'fail',
    from: 'from-client',
    message: { t: 'fail', rid: 16, token, error: 'SMTP 451: try again later', retryable: true },
  },
  {
    name: 'fail-downstream',
    from: 'from-client',
    message: { t: 'fail', rid: 18, token, error: 'DownstreamError: payment gateway answered 503', retryable: true, downstream: true },
  },
  { name: 'return', from: 'from-client', message: { t: 'return', rid: 17, token } },
  // Node → client.
  { name: 'cluster', from: 'from-client', message: { t: 'cluster', rid: 3 } },
  {
    name: 'cluster_view',
    from: 'from-node',
    message: {
      t: 'cluster_view',
      rid: 3,
      node: 'node-a',
      members: [
        { node: 'node-a', status: 'alive', incarnation: 3, clientUrl: 'ws://10.0.0.5:7000', inRing: true, shards: 2 },
        { node: 'node-b', status: 'suspect', incarnation: 1, clientUrl: 'ws://10.0.0.6:7000', inRing: true, shards: 1 },
      ],
      owners: new Uint8Array([0, 0, 0, 1, 0, 0]),
    },
  },
  {
    name: 'welcome',
    from: 'from-node',
    message: {
      t: 'welcome',
      version: 1,
      node: 'node-a',
      shardCount: 256,
      limits: { frameBytesMax: 1_048_576, payloadBytesMax: 262_144, resultBytesMax: 262_144, batchMax: 1000, inflightMax: 20_000 },
    },
  },
  { name: 'submitted', from: 'from-node', message: { t: 'submitted', rid: 1, jobId: JOB_ID, duplicate: false } },
  {
    name: 'submitted_batch',
    from: 'from-node',
    message: {
      t: 'submitted_batch',
      rid: 4,
      results: [
        { jobId: JOB_ID, duplicate: true },
        { error: { code: 'overloaded', message: 'shard 161 is overloaded', retryAfterMs: 250 } },
      ],
    },
  },
  { name: 'job', from: 'from-node', message: { t: 'job', rid: 5, job: doneView } },
  {
    name: 'job_page',
    from: 'from-node',
    message: { t: 'job_page', rid: 6, jobs: [pendingView], next: 'c:0a1-mjuohs6y-c-7' },
  },
  { name: 'job_page-last', from: 'from-node', message: { t: 'job_page', rid: 7, jobs: [], next: null } },
  {
    name: 'cancelled',
    from: 'from-node',
    message: { t: 'cancelled', rid: 8, job: { ...pendingView, state: 'cancelled', finishedAt: T0 + 31_000 } },
  },
  { name: 'subscribed', from: 'from-node', message: { t: 'subscribed', rid: 9, job: pendingView } },
  { name: 'job_changed', from: 'from-node', message: { t: 'job_changed', jobId: JOB_ID, job: doneView } },
  { name: 'ok', from: 'from-node', message: { t: 'ok', rid: 10 } },
  { name: 'schedule', from: 'from-node', message: { t: 'schedule', rid: 30, schedule: scheduleView } },
  { name: 'schedule_page', from: 'from-node', message: { t: 'schedule_page', rid: 32, schedules: [scheduleView], next: null } },
  { name: 'breaker', from: 'from-node', message: { t: 'breaker', rid: 43, breaker: breakerView } },
  {
    name: 'breaker_page',
    from: 'from-node',
    message: { t: 'breaker_page', rid: 44, breakers: [{ ...breakerView, source: 'default', refuseWhenOpen: false, window: null }], next: 'payments' },
  },
  { name: 'breaker_changed', from: 'from-node', message: { t: 'breaker_changed', queue: 'payments', state: 'half_open', since: T0 + 70_000, nextProbeAt: null } },
  { name: 'redirect', from: 'from-node', message: { t: 'redirect', cell: 'us-1', urls: ['ws://10.1.1.5:7070', 'ws://10.1.1.6:7070'] } },
  {
    name: 'requeued',
    from: 'from-node',
    message: { t: 'requeued', rid: 12, job: { ...pendingView, state: 'pending', attemptsMax: 5 } },
  },
  {
    name: 'error',
    from: 'from-node',
    message: {
      t: 'error',
      rid: 2,
      code: 'bad_request',
      message: 'job.priority: must be an integer in [-1000, 1000]',
      field: 'job.priority',
    },
  },
  {
    name: 'error-rate-limited',
    from: 'from-node',
    message: { t: 'error', rid: 3, code: 'rate_limited', message: 'tenant over 500 submissions/s', retryAfterMs: 1200 },
  },
  {
    name: 'error-circuit-open',
    from: 'from-node',
    message: { t: 'error', rid: 1, code: 'circuit_open', message: 'the breaker of queue payments is open', retryAfterMs: 8_500 },
  },
  {
    name: 'error-no-rid',
    from: 'from-node',
    message: { t: 'error', rid: null, code: 'malformed', message: 'frame ends inside a value' },
  },
  // Node → worker.
  { name: 'lease', from: 'from-node', message: lease },
  { name: 'lease_extended', from: 'from-node', message: { t: 'lease_extended', rid: 13, token, leaseMs: 30_000 } },
  { name: 'ack', from: 'from-node', message: { t: 'ack', rid: 14 } },
  { name: 'revoke', from: 'from-node', message: { t: 'revoke', token, reason: 'cancelled' } },
  {
    name: 'error-stale-lease',
    from: 'from-node',
    message: { t: 'error', rid: 14, code: 'stale_lease', message: 'lease 03f-mjuohs00-5-16/2@5 is no longer current' },
  },
  // Node ↔ node.
  {
    name: 'member_heartbeat',
    from: 'from-peer',
    message: {
      t: 'member_heartbeat',
      node: 'node-a',
      incarnation: 3,
      state: 'alive',
      addrs: ['/ip4/10.0.0.5/tcp/7001'],
      clientUrl: 'ws://10.0.0.5:7000',
      load: { shards: 86, backlog: [{ tenant: 'acme', queue: 'emails', ready: 1204, topPriority: 5 }] },
    },
  },
  {
    name: 'member_heartbeat-breakers',
    from: 'from-peer',
    message: {
      t: 'member_heartbeat',
      node: 'node-a',
      incarnation: 3,
      state: 'alive',
      addrs: ['/ip4/10.0.0.5/tcp/7001'],
      clientUrl: 'ws://10.0.0.5:7000',
      load: {
        shards: 86,
        backlog: [{ tenant: 'acme', queue: 'payments', ready: 310, topPriority: 0, shards: 4, slots: 0 }],
        breakers: [
          { tenant: 'acme', queue: 'payments', state: 'open', version: 7, round: 0, probes: 1, since: T0 + 60_000, nextProbeAt: T0 + 70_000, refuse: true },
          { tenant: 'acme', queue: 'emails', state: 'half_open', version: 12, round: 2, probes: 2, since: T0 + 65_000, nextProbeAt: null, refuse: false },
        ],
      },
    },
  },
  {
    name: 'forward',
    from: 'from-peer',
    message: { t: 'forward', fid: 77, conn: 'c12', tenant: 'acme', request: { t: 'cancel', rid: 77, jobId: JOB_ID } },
  },
  {
    name: 'forward_reply',
    from: 'from-peer',
    message: { t: 'forward_reply', fid: 77, reply: { t: 'submitted', rid: 77, jobId: JOB_ID, duplicate: false } },
  },
  {
    name: 'forward_push',
    from: 'from-peer',
    message: { t: 'forward_push', conn: 'c12', push: { t: 'job_changed', jobId: JOB_ID, job: doneView } },
  },
  { name: 'conn_closed', from: 'from-peer', message: { t: 'conn_closed', conn: 'c12' } },
  { name: 'subscription_moved', from: 'from-peer', message: { t: 'subscription_moved', conn: 'c12', jobId: JOB_ID } },
  { name: 'handoff_done', from: 'from-peer', message: { t: 'handoff_done', shard: 63, releasedEpoch: 5 } },
  {
    name: 'credit_offer',
    from: 'from-peer',
    message: { t: 'credit_offer', worker: 'node-b/17', tenant: 'acme', queue: 'emails', slots: 4 },
  },
  {
    name: 'credit_return',
    from: 'from-peer',
    message: { t: 'credit_return', worker: 'node-b/17', tenant: 'acme', queue: 'emails', slots: 1 },
  },
  {
    name: 'forward_complete',
    from: 'from-peer',
    message: { t: 'forward', fid: 78, conn: 'c17', tenant: 'acme', request: { t: 'complete', rid: 78, token, result: text('sent') } },
  },
  { name: 'owner_relay', from: 'from-peer', message: { t: 'owner_relay', worker: 'node-b/17', message: lease } },
  {
    name: 'breaker_report',
    from: 'from-peer',
    message: {
      t: 'breaker_report',
      counts: [
        { tenant: 'acme', queue: 'payments', successes: 2, failures: 9 },
        { tenant: 'globex', queue: 'emails', successes: 40, failures: 0 },
      ],
    },
  },
];
