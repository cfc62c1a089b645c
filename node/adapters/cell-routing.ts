// Connections of tenants that another cell serves (cell-map.ts). By default the node tells the
// client where to go: it answers the first frame (the `hello`) with `redirect` and that cell's
// URLs, and closes; the SDK connects there. With --cell-proxy the node instead carries the
// whole connection to that cell, frame for frame, so that one URL serves every cell: the
// client's credentials go along as they came, and the far node authenticates them itself.

import type { IncomingMessage } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import { encodeMessage } from '../../protocol/codec.ts';
import type { Logger } from '../core/env.ts';

const CLOSE_NORMAL = 1000;
const CLOSE_GOING_AWAY = 1001;
const CLOSE_TRY_AGAIN_LATER = 1013;
/** How long a redirected connection may take to say hello. */
const HELLO_WAIT_MS = 10_000;
/** Frames a proxied client may send before the far cell's node has answered the upgrade. */
const EARLY_FRAMES_MAX = 64;

export interface ElsewhereCell {
  cell: string;
  urls: string[];
}

/** Answers the client's first frame with `redirect`, then closes. */
export function redirect(ws: WebSocket, target: ElsewhereCell): void {
  const timer = setTimeout(() => ws.close(CLOSE_NORMAL, `served by cell ${target.cell}`), HELLO_WAIT_MS);
  ws.once('message', () => {
    clearTimeout(timer);
    ws.send(encodeMessage({ t: 'redirect', cell: target.cell, urls: target.urls }));
    ws.close(CLOSE_NORMAL, `served by cell ${target.cell}`);
  });
  ws.once('close', () => clearTimeout(timer));
}

/** Carries the connection to a node of `target`, with the upgrade's credentials. */
export function proxy(ws: WebSocket, req: IncomingMessage, target: ElsewhereCell, logger: Logger): void {
  const url = target.urls[Math.floor(Math.random() * target.urls.length)]!;
  const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
  const headers = req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization };
  const far = new WebSocket(url, protocols, { headers });
  const early: Array<{ data: RawData; isBinary: boolean }> = [];
  ws.on('message', (data, isBinary) => {
    if (far.readyState === WebSocket.OPEN) return far.send(data, { binary: isBinary });
    if (early.push({ data, isBinary }) > EARLY_FRAMES_MAX) ws.close(CLOSE_TRY_AGAIN_LATER, `cell ${target.cell} is slow to answer`);
  });
  far.on('open', () => {
    for (const frame of early.splice(0)) far.send(frame.data, { binary: frame.isBinary });
  });
  far.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  far.on('error', (error) => {
    logger.log('warn', 'cells.proxy_failed', { cell: target.cell, url, error: error.message });
    ws.close(CLOSE_TRY_AGAIN_LATER, `cell ${target.cell} unreachable`);
  });
  far.on('close', (code, reason) => ws.close(code === 1005 || code === 1006 ? CLOSE_GOING_AWAY : code, reason.toString()));
  ws.on('close', () => far.close());
}
