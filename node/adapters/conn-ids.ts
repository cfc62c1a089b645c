// Connection ids, unique across the restarts of a node. Owners bind a lease to the worker
// connection it was granted to (`<node id>/<connection id>`), and the node id outlives a
// restart; were connection ids counted from 1 again, a restarted node's new connection could
// take the name, and so the leases, of one that died with the old process.

import { randomBytes } from 'node:crypto';

const BOOT = randomBytes(4).toString('hex');
let next = 0;

/** `<prefix><boot>-<n>`: the boot part changes with every process. */
export function newConnId(prefix: string): string {
  return `${prefix}${BOOT}-${++next}`;
}
