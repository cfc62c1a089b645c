// The node's HTTP listener for operators, apart from the client port: `/metrics` (Prometheus
// text, prometheus.ts), `/healthz` (the process is alive and its event loop turns: for a
// liveness probe) and `/readyz` (the node can serve: for a readiness probe and load balancers).
// It listens on loopback unless told otherwise: metrics name tenants and queues.

import { createServer, type ServerResponse } from 'node:http';
import type { Logger } from '../core/env.ts';
import type { PrometheusMetrics } from './prometheus.ts';

/** An event loop that has not turned for this long is not healthy. */
const LOOP_STALL_MS = 5_000;
const LOOP_TICK_MS = 500;
/** A readiness answer is reused for this long: probes and load balancers may ask often, and
 * each check reads the database. */
const READY_CACHE_MS = 1_000;

export interface Readiness {
  ready: boolean;
  /** Why not, in words, when not. */
  reasons: string[];
}

export interface HttpEndpointsOptions {
  host: string;
  port: number;
  metrics: PrometheusMetrics;
  readiness(): Promise<Readiness>;
  logger: Logger;
}

export interface HttpEndpoints {
  readonly url: string;
  close(): Promise<void>;
}

export async function startHttpEndpoints(options: HttpEndpointsOptions): Promise<HttpEndpoints> {
  let lastTickMs = Date.now();
  const ticker = setInterval(() => (lastTickMs = Date.now()), LOOP_TICK_MS);
  ticker.unref();
  let readiness: { at: number; answer: Promise<Readiness> } | null = null;
  const readyNow = (): Promise<Readiness> => {
    if (readiness === null || Date.now() - readiness.at > READY_CACHE_MS) {
      readiness = { at: Date.now(), answer: options.readiness().catch((error: unknown) => ({ ready: false, reasons: [`readiness check failed: ${String(error)}`] })) };
    }
    return readiness.answer;
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET\n', { Allow: 'GET, HEAD' });
    switch (path) {
      case '/metrics':
        return void options.metrics.registry.metrics().then(
          (text) => send(res, 200, options.metrics.registry.contentType, text),
          (error: unknown) => send(res, 500, 'text/plain', `metrics failed: ${String(error)}\n`),
        );
      case '/healthz': {
        const stalledMs = Date.now() - lastTickMs;
        return stalledMs < LOOP_STALL_MS ? send(res, 200, 'application/json', '{"status":"ok"}\n') : send(res, 503, 'application/json', `${JSON.stringify({ status: 'stalled', stalledMs })}\n`);
      }
      case '/readyz':
        return void readyNow().then((r) => send(res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r.ready ? { status: 'ready' } : { status: 'not_ready', reasons: r.reasons })}\n`));
      default:
        return send(res, 404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
  options.logger.log('info', 'node.http_listening', { url });
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(ticker);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
