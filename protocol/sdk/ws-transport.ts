// The production link: a WebSocket from the `ws` package, authenticated with an
// `Authorization: Bearer` header on the upgrade (never in the URL, where proxies and logs keep
// it). Frames are binary msgpack; a text frame is not ours and is dropped. This is the one
// Node-only file of the SDK: a browser binding would use the native WebSocket and offer the
// subprotocols `kairos` and `kairos.bearer.<token>` instead (see PROTOCOL.md, Transport).

import { WebSocket } from 'ws';
import { CODEC_LIMITS } from '../limits.ts';
import type { Dial, Link } from './transport.ts';

/** Frames larger than the codec accepts are refused by ws itself, without buffering them
 * (the node does the same, see node/adapters/ws-gateway.ts). */
const WS_PAYLOAD_MAX = 2 * CODEC_LIMITS.frameBytesMax;

export interface WebSocketOptions {
  /** A ping goes out this often; a link that has sent nothing back (no pong, no frame) by
   * the next one is dead (a peer that vanished without closing: power loss, a dropped NAT
   * entry) and is dropped, so the client reconnects. Default 15 s. */
  keepaliveMs?: number;
}

export function webSocketDialer(options: WebSocketOptions = {}): Dial {
  const keepaliveMs = options.keepaliveMs ?? 15_000;
  return (url, token, listener): Link => {
    let httpStatus: number | undefined;
    let lastError = '';
    let heard = true;
    let keepalive: ReturnType<typeof setInterval> | null = null;
    let tickMs = 0;
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: WS_PAYLOAD_MAX,
      // Frames are small msgpack messages at a high rate: compression costs more CPU than it saves.
      perMessageDeflate: false,
    });
    ws.on('open', () => {
      tickMs = performance.now();
      keepalive = setInterval(() => {
        const nowMs = performance.now();
        // After a stall of this process (a long GC pause, SIGSTOP) timers run before the
        // socket is read, so a pong waiting in the buffer would not have been seen yet:
        // judge the link only when the last interval really was one interval long.
        const stalled = nowMs - tickMs > 1.5 * keepaliveMs;
        tickMs = nowMs;
        if (!heard && !stalled) {
          lastError = `no answer to a ping within ${keepaliveMs} ms`;
          ws.terminate();
          return;
        }
        heard = false;
        ws.ping();
      }, keepaliveMs);
      // The socket keeps the process alive while it is open; the timer must not on its own.
      keepalive.unref();
      listener.opened();
    });
    ws.on('pong', () => {
      heard = true;
    });
    ws.on('message', (data, isBinary) => {
      heard = true;
      if (isBinary) listener.frame(data as Buffer);
    });
    ws.on('unexpected-response', (_req, res) => {
      // Keep the status (401 is fatal to the client, a 503 is not), then fail the handshake.
      httpStatus = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (error) => {
      lastError = error.message;
    });
    ws.on('close', (code, reason) => {
      if (keepalive !== null) clearInterval(keepalive);
      const text = httpStatus !== undefined ? `HTTP ${httpStatus}` : lastError || `closed (${code}${reason.length > 0 ? `: ${reason.toString()}` : ''})`;
      listener.closed(text, httpStatus);
    });
    let corked = false;
    const uncork = (): void => {
      corked = false;
      socketOf(ws)?.uncork();
    };
    return {
      send: (frame) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        // Frames sent in one turn leave in one write: ws writes each frame on its own (and
        // turns Nagle off), and a syscall per frame was the largest cost of a busy client.
        if (!corked) {
          const socket = socketOf(ws);
          if (socket !== null) {
            socket.cork();
            corked = true;
            setImmediate(uncork);
          }
        }
        ws.send(frame);
      },
      close: () => ws.close(1000),
      terminate: () => ws.terminate(),
    };
  };
}

export const dialWebSocket: Dial = webSocketDialer();

/** The TCP socket under a WebSocket. ws does not publish it, so this looks for it and
 * degrades to writing frame by frame if a later ws hides it. */
function socketOf(ws: WebSocket): { cork(): void; uncork(): void } | null {
  const socket = (ws as unknown as { _socket?: { cork?: unknown; uncork?: unknown } })._socket;
  return typeof socket?.cork === 'function' && typeof socket.uncork === 'function' ? (socket as { cork(): void; uncork(): void }) : null;
}
