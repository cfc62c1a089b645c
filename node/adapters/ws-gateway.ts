// The WebSocket transport of the gateway. It authenticates on the upgrade (a bearer token in
// the Authorization header, or a `kairos.bearer.<token>` subprotocol for clients that cannot
// set headers; never in the URL, where proxies and logs would keep it), decodes and validates
// every frame, and hands the gateway actor either the message or what was wrong with the frame
// (it answers both in order, and closes a connection that keeps sending bad frames).

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { encodeMessage } from '../../protocol/codec.ts';
import { CODEC_LIMITS } from '../../protocol/limits.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import type { ActorRef } from '../core/actor/runtime.ts';
import type { Logger } from '../core/env.ts';
import type { ClientConnection, GatewayMsg } from '../core/gateway/gateway.ts';
import type { TokenTable } from './tokens.ts';

export const BEARER_SUBPROTOCOL_PREFIX = 'kairos.bearer.';
/** Frames up to this size reach the codec, which answers `frame_too_large`; larger ones make
 * the ws library close the connection (1009) without buffering them. */
const WS_PAYLOAD_MAX = 2 * CODEC_LIMITS.frameBytesMax;
/** A connection that has not answered a ping for this long is dropped: a worker that vanished
 * without closing its socket must not keep credit (its leases run out on their own). */
const PING_EVERY_MS = 15_000;

export interface WsGatewayOptions {
  host: string;
  port: number;
  tokens: TokenTable;
  /** Only `tell` is used, so the server may listen before the gateway actor exists. */
  gateway: Pick<ActorRef<GatewayMsg>, 'tell'>;
  logger: Logger;
}

export interface WsGatewayHandle {
  readonly port: number;
  readonly url: string;
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
    // Echo the bearer subprotocol back when the client authenticated with it: browsers require
    // the server to pick one of the offered subprotocols.
    handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX)) ?? false,
  });
  let nextConn = 0;

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const tenant = tokens.tenantOf(bearerToken(req));
    if (tenant === null) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      logger.log('info', 'gateway.unauthorized', { remote: req.socket.remoteAddress });
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, tenant));
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
    const id = `c${++nextConn}`;
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    const send = coalescedSender(ws);
    const conn: ClientConnection = {
      id,
      tenant,
      send: (message) => send(encodeMessage(message)),
      close: (reason) => ws.close(1008, reason.slice(0, 120)),
    };
    gateway.tell({ kind: 'opened', conn });
    ws.on('message', (data, isBinary) => {
      const bytes = asBytes(data);
      const decoded = isBinary ? decodeFromClient(bytes) : null;
      if (decoded !== null && decoded.ok) {
        gateway.tell({ kind: 'request', connId: id, msg: decoded.msg });
        return;
      }
      const error = decoded === null ? { code: 'malformed' as const, message: 'frames are binary msgpack, not text' } : decoded.error;
      gateway.tell({ kind: 'bad_frame', connId: id, rid: decoded === null ? null : decoded.rid, error });
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

/** The bearer token of an upgrade request, from the Authorization header or the subprotocol. */
export function bearerToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? match[1]! : null;
  }
  const offered = req.headers['sec-websocket-protocol'];
  if (offered === undefined) return null;
  const protocol = offered.split(',').map((p) => p.trim()).find((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX));
  return protocol === undefined ? null : protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length);
}

function asBytes(data: Buffer | ArrayBuffer | Buffer[]): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}
