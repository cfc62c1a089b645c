// A bare protocol client over a real WebSocket, for tests that speak the wire format directly
// (fuzzing, authentication, tenancy) without the SDK in between.

import { WebSocket } from 'ws';
import type { ClientToNode, NodeToClient } from '../../protocol/client-messages.ts';
import { encodeMessage } from '../../protocol/codec.ts';
import { SUPPORTED_VERSIONS } from '../../protocol/limits.ts';
import { decodeFromNode } from '../../protocol/validate.ts';
import type { NodeToWorker, WorkerToNode } from '../../protocol/worker-messages.ts';

export type Reply = NodeToClient | NodeToWorker;
export type Request = ClientToNode | WorkerToNode;

export class RawClient {
  readonly replies: Reply[] = [];
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const decoded = decodeFromNode(new Uint8Array(data));
      if (!decoded.ok) throw new Error(`node sent an undecodable frame: ${decoded.error.message}`);
      this.replies.push(decoded.msg);
      this.wake();
    });
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string, headers: Record<string, string>, protocols: string[] = []): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { headers });
      const client = new RawClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  /** Opens a connection with a bearer token and completes the handshake. */
  static async connect(url: string, token: string): Promise<RawClient> {
    const client = await RawClient.open(url, { authorization: `Bearer ${token}` });
    client.send({ t: 'hello', versions: [...SUPPORTED_VERSIONS] });
    await client.until((r) => r.t === 'welcome');
    return client;
  }

  send(message: Request): void {
    this.ws.send(encodeMessage(message));
  }

  sendBytes(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Waits for a reply matching `match` (or the close), up to `timeoutMs`. */
  async until(match: (reply: Reply) => boolean, timeoutMs = 10_000): Promise<Reply | 'closed'> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.replies.find(match);
      if (found !== undefined) return found;
      if (this.closed) return 'closed';
      if (Date.now() > deadline) throw new Error(`no matching reply in ${timeoutMs} ms; got ${JSON.stringify(this.replies.slice(-3).map((r) => r.t))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a request with `rid` and waits for the reply carrying it. */
  async request(message: Extract<Request, { rid: number }>, timeoutMs?: number): Promise<Reply | 'closed'> {
    this.send(message);
    return this.until((r) => 'rid' in r && r.rid === message.rid, timeoutMs);
  }

  close(): void {
    this.ws.close();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
