// The WebSocket transport of the gateway. It authenticates on the upgrade (a bearer token in
// the Authorization header, or a `kairos.bearer.<token>` subprotocol for clients that cannot
// set headers; never in the URL, where proxies and logs would keep it), bounds the connections
// of the node and of each tenant there, decodes and validates every frame, and hands the
// gateway actor either the message or what was wrong with the frame (it answers both in order,
// and closes a connection that keeps sending bad frames).

import { createServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { encodeMessage } from '../../protocol/codec.ts';
import { CODEC_LIMITS } from '../../protocol/limits.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import type { ActorRef } from '../core/actor/runtime.ts';
import type { Logger } from '../core/env.ts';
import type { ClientConnection, GatewayMsg } from '../core/gateway/gateway.ts';
import { proxy, redirect, type ElsewhereCell } from './cell-routing.ts';
import { newConnId } from './conn-ids.ts';
import type { TokenTable } from './tokens.ts';

/** The subprotocol the node selects. A client authenticating by subprotocol offers it beside
 * `kairos.bearer.<token>`: browsers require the server to select an offered subprotocol, and
 * selecting the bearer one would echo the token in the response, where proxies may log it. */
const SUBPROTOCOL = 'kairos';
export const BEARER_SUBPROTOCOL_PREFIX = 'kairos.bearer.';
/** WebSocket close codes (RFC 6455, 7.4.1). */
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_POLICY_VIOLATION = 1008;
/** Told to a client refused for a full node or tenant: slots free only as other connections
 * close, so retrying at once would find it still full (the SDK tries the cluster's other nodes
 * meanwhile). */
const FULL_RETRY_AFTER_S = 5;
/** Frames up to this size reach the codec, which answers `frame_too_large`; larger ones make
 * the ws library close the connection (1009) without buffering them. */
const WS_PAYLOAD_MAX = 2 * CODEC_LIMITS.frameBytesMax;
/** A connection that has not answered a ping for this long is dropped: a worker that vanished
 * without closing its socket must not keep credit (its leases run out on their own). */
const PING_EVERY_MS = 15_000;

/** Open connections allowed, counted from the upgrade: every connection holds a socket and
 * gateway state, and one tenant must not take all of a node's. */
export interface ConnectionLimits {
  connectionsMax: number;
  tenantConnectionsMax: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { connectionsMax: 10_000, tenantConnectionsMax: 1_000 };

export interface WsGatewayOptions {
  host: string;
  port: number;
  tokens: TokenTable;
  limits: ConnectionLimits;
  /** Only `tell` is used, so the server may listen before the gateway actor exists. */
  gateway: Pick<ActorRef<GatewayMsg>, 'tell'>;
  logger: Logger;
  /** With cells: the cell that serves a tenant when it is not this node's, and whether to carry
   * such connections there (cell-routing.ts) rather than redirect them. */
  cells?: { elsewhere(tenant: string): ElsewhereCell | null; proxy: boolean };
}

export interface WsGatewayHandle {
  readonly port: number;
  readonly url: string;
  /** Client connections open now, counted from the upgrade (the node's gauges). */
  readonly connections: number;
  /** Stops accepting connections and closes the open ones. */
  close(): Promise<void>;
}

export async function startWsGateway(options: WsGatewayOptions): Promise<WsGatewayHandle> {
  const { gateway, logger, tokens } = options;
  const http: Server = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('Kairos speaks WebSocket here\n');
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: WS_PAYLOAD_MAX,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const slots = new ConnectionSlots(options.limits);

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = req.socket.remoteAddress;
    const offered = offeredSubprotocols(req);
    // Only the bearer subprotocol offered: selecting none fails the handshake in browsers and
    // in ws alike, after the node had taken the connection; a refusal says why at once.
    if (offered.some((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX)) && !offered.includes(SUBPROTOCOL)) {
      refuseUpgrade(socket, 400, {}, `offer the subprotocol ${SUBPROTOCOL} beside ${BEARER_SUBPROTOCOL_PREFIX}<token>\n`);
      logger.log('info', 'gateway.bearer_subprotocol_alone', { remote });
      return;
    }
    const tenant = tokens.tenantOf(bearerToken(req.headers.authorization, offered));
    if (tenant === null) {
      refuseUpgrade(socket, 401, { 'WWW-Authenticate': 'Bearer' });
      logger.log('info', 'gateway.unauthorized', { remote });
      return;
    }
    const full = slots.take(tenant);
    if (full !== null) {
      refuseUpgrade(socket, 503, { 'Retry-After': String(FULL_RETRY_AFTER_S) });
      logger.log('warn', 'gateway.connections_full', { tenant, limit: full, remote });
      return;
    }
    // The socket's close frees the slot whether or not the upgrade completes (ws refuses some
    // itself, e.g. a bad Sec-WebSocket-Key, without calling back).
    socket.once('close', () => slots.release(tenant));
    const elsewhere = options.cells?.elsewhere(tenant) ?? null;
    wss.handleUpgrade(req, socket, head, (ws) => {
      // Every socket answers the pings, a proxied one too (its client does).
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      if (elsewhere === null) return accept(ws, tenant);
      logger.log('debug', options.cells!.proxy ? 'cells.proxied' : 'cells.redirected', { tenant, cell: elsewhere.cell, remote });
      if (options.cells!.proxy) proxy(ws, req, elsewhere, logger);
      else redirect(ws, elsewhere);
    });
  });

  const alive = new WeakMap<WebSocket, boolean>();
  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, PING_EVERY_MS);
  pinger.unref();

  function accept(ws: WebSocket, tenant: string): void {
    const id = newConnId('c');
    const send = coalescedSender(ws);
    const conn: ClientConnection = {
      id,
      tenant,
      send: (message) => send(encodeMessage(message)),
      close: (reason, code = CLOSE_POLICY_VIOLATION) => ws.close(code, reason.slice(0, 120)),
    };
    gateway.tell({ kind: 'opened', conn });
    ws.on('message', (data, isBinary) => {
      // Once the node has closed the connection (abuse, a text frame, a bad version), what the
      // client still sends is not even decoded: a flood stops costing the node at its close.
      if (ws.readyState !== ws.OPEN) return;
      if (!isBinary) {
        ws.close(CLOSE_UNSUPPORTED_DATA, 'frames are binary msgpack, not text');
        return;
      }
      const decoded = decodeFromClient(asBytes(data));
      if (decoded.ok) gateway.tell({ kind: 'request', connId: id, msg: decoded.msg });
      else gateway.tell({ kind: 'bad_frame', connId: id, rid: decoded.rid, error: decoded.error });
    });
    ws.on('close', () => gateway.tell({ kind: 'closed', connId: id }));
    ws.on('error', (error) => logger.log('debug', 'gateway.socket_error', { conn: id, error: String(error) }));
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => resolve());
  });
  const address = http.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    port,
    url: `ws://${options.host}:${port}`,
    get connections() {
      return slots.count;
    },
    close: async () => {
      clearInterval(pinger);
      for (const ws of wss.clients) ws.close(1001, 'node shutting down');
      await new Promise<void>((resolve) => {
        wss.close(() => http.close(() => resolve()));
        http.closeAllConnections();
      });
    },
  };
}

/** Sends frames, all those of one event-loop iteration in one write: each frame written on its
 * own costs a syscall, which at tens of thousands of frames a second dominated the node's
 * profile. Corking the socket (ws's own per-frame corks nest inside ours) and uncorking after
 * this iteration's callbacks turns them into one writev. */
function coalescedSender(ws: WebSocket): (bytes: Uint8Array) => void {
  const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
  let corked = false;
  return (bytes) => {
    if (ws.readyState !== ws.OPEN) return;
    if (!corked) {
      corked = true;
      socket.cork();
      // After the other callbacks of this loop iteration: actors drain their mailboxes in
      // separate callbacks, and all they send to this client should share the write.
      setImmediate(() => {
        corked = false;
        socket.uncork();
      });
    }
    ws.send(bytes);
  };
}

/** Counts open connections, of the node and of each tenant. */
class ConnectionSlots {
  private open = 0;
  private readonly byTenant = new Map<string, number>();

  constructor(private readonly limits: ConnectionLimits) {}

  /** Takes a slot for a connection of `tenant`, or returns the name of the limit that is full. */
  take(tenant: string): 'connections' | 'tenant_connections' | null {
    const ofTenant = this.byTenant.get(tenant) ?? 0;
    if (this.open >= this.limits.connectionsMax) return 'connections';
    if (ofTenant >= this.limits.tenantConnectionsMax) return 'tenant_connections';
    this.open++;
    this.byTenant.set(tenant, ofTenant + 1);
    return null;
  }

  get count(): number {
    return this.open;
  }

  release(tenant: string): void {
    this.open--;
    const ofTenant = this.byTenant.get(tenant)! - 1;
    // Tenants come and go: an idle one keeps no entry.
    if (ofTenant === 0) this.byTenant.delete(tenant);
    else this.byTenant.set(tenant, ofTenant);
  }
}

/** Answers an upgrade with an HTTP error and drops the socket once the answer is written: the
 * server allows half-open sockets, so a client that never closes its side would keep it. */
function refuseUpgrade(socket: Duplex, status: number, headers: Record<string, string>, body = ''): void {
  const fields = { ...headers, Connection: 'close', 'Content-Type': 'text/plain', 'Content-Length': String(Buffer.byteLength(body)) };
  const head = [`HTTP/1.1 ${status} ${STATUS_CODES[status]}`, ...Object.entries(fields).map(([name, value]) => `${name}: ${value}`)];
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

function offeredSubprotocols(req: IncomingMessage): string[] {
  return (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
}

/** The bearer token of an upgrade request, from the Authorization header or else the offered
 * subprotocols. */
function bearerToken(authorization: string | undefined, offered: string[]): string | null {
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match ? match[1]! : null;
  }
  const protocol = offered.find((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX));
  return protocol === undefined ? null : protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length);
}

function asBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}
