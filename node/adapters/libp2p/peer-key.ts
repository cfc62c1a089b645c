// The node's libp2p identity, kept in its data dir. Its peer id is the node id, and a restarted
// node must keep it: the shards table names the node as owner, so under the same id it takes
// its shards straight back instead of waiting for the leases of a node that no longer exists to
// lapse. The file holds the private key (libp2p's protobuf encoding), readable by its owner
// only: whoever has it can pose as the node.

import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { readFile, writeFile } from 'node:fs/promises';

export class PeerKeyError extends Error {
  override name = 'PeerKeyError';
}

/** The key in `file`, or a new Ed25519 key written there when there is no file. */
export async function loadOrCreatePeerKey(file: string): Promise<PrivateKey> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new PeerKeyError(`cannot read the node key ${file}: ${String(error)}`);
    const key = await generateKeyPair('Ed25519');
    // 'wx': never replace a key that appeared meanwhile; that would change the node's id.
    await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' });
    return key;
  }
  try {
    return privateKeyFromProtobuf(bytes);
  } catch {
    throw new PeerKeyError(`${file} is not a libp2p private key (remove it to give the node a new id)`);
  }
}
