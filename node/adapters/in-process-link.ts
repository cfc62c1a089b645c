// Clients and workers embedded in the node's own process: the SDK's transport bound straight to
// the gateway actor, with no socket. Frames still go through the codec both ways, so an
// embedded worker sees exactly what a remote one does, tenancy included.
//
//   const client = await connect({ url: 'inprocess:', token: '', transport: inProcessDial(node, 'my-tenant') });
//   client.worker('emails', handler, { concurrency: 8 });

import { encodeMessage } from '../../protocol/codec.ts';
import type { Dial, Link } from '../../protocol/sdk/transport.ts';
import { decodeFromClient } from '../../protocol/validate.ts';
import type { ClientConnection } from '../core/gateway/gateway.ts';
import type { KairosNode } from '../core/node.ts';
import { newConnId } from './conn-ids.ts';

/** A Dial whose links attach to `node`'s gateway as `tenant` (the URL and token are ignored:
 * code in the node's process is trusted with the tenant it names). */
export function inProcessDial(node: KairosNode, tenant: string): Dial {
  return (_url, _token, listener) => {
    const connId = newConnId('inproc');
    let open = true;
    const closed = (reason: string) => {
      if (!open) return;
      open = false;
      node.gateway.tell({ kind: 'closed', connId });
      // Never call the SDK back from inside its own call.
      queueMicrotask(() => listener.closed(reason));
    };
    const conn: ClientConnection = {
      id: connId,
      tenant,
      send: (message) => {
        if (!open) return;
        const bytes = encodeMessage(message);
        queueMicrotask(() => {
          if (open) listener.frame(bytes);
        });
      },
      close: (reason) => closed(reason),
    };
    node.gateway.tell({ kind: 'opened', conn });
    queueMicrotask(() => {
      if (open) listener.opened();
    });
    const link: Link = {
      send: (frame) => {
        if (!open) return;
        const decoded = decodeFromClient(frame);
        if (decoded.ok) node.gateway.tell({ kind: 'request', connId, msg: decoded.msg });
        else node.gateway.tell({ kind: 'bad_frame', connId, rid: decoded.rid, error: decoded.error });
      },
      close: () => closed('closed by the client'),
      terminate: () => closed('terminated by the client'),
    };
    return link;
  };
}
