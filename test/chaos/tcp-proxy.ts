// A TCP proxy between one node and PostgreSQL, for the chaos harness: it pipes bytes both ways
// and, on command, delays them (order kept), resets every connection it carries, or refuses new
// ones for a while.

import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Delay every chunk, both ways, by `ms` from now on (0: none). */
  setDelay(ms: number): void;
  /** Resets (TCP RST) every connection it carries; returns how many. */
  resetAll(): number;
  /** Connections open now. */
  open(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let delayMs = 0;
  const pairs = new Set<[Socket, Socket]>();

  /** Writes `chunk` to `to` after the current delay, never before an earlier chunk. */
  function forwarder(to: Socket): (chunk: Buffer) => void {
    let lastAt = 0;
    return (chunk) => {
      if (delayMs === 0 && lastAt <= Date.now()) {
        to.write(chunk);
        return;
      }
      const at = Math.max(Date.now() + delayMs, lastAt);
      lastAt = at;
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, at - Date.now());
    };
  }

  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', forwarder(upstream));
    upstream.on('data', forwarder(client));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('proxy: no port');

  return {
    port: address.port,
    setDelay: (ms) => (delayMs = ms),
    resetAll() {
      const n = pairs.size;
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        const [a, b] = pair;
        if (!a.destroyed) a.resetAndDestroy();
        if (!b.destroyed) b.resetAndDestroy();
      }
      return n;
    },
    open: () => pairs.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
