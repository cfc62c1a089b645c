// The link under a client: one attempt at one connection to one node. The client logic
// (connection.ts and up) sees only this interface, so a simulated network can stand in for
// WebSocket; ws-transport.ts is the production binding.

/** What a link reports. After `closed` it reports nothing more. */
export interface LinkListener {
  /** The link is up and authenticated; frames may be sent. */
  opened(): void;
  /** One binary frame from the node. */
  frame(bytes: Uint8Array): void;
  /** The link is gone, or never came up. `httpStatus` is set when the node refused the
   * upgrade (401: the token was not accepted). */
  closed(reason: string, httpStatus?: number): void;
}

/** A link notices its own death, including a peer that vanished without closing (the
 * WebSocket binding pings), and reports it as `closed`. */
export interface Link {
  send(frame: Uint8Array): void;
  /** Closes politely; `closed` follows. */
  close(): void;
  /** Drops the link at once (it seems dead); the caller does not wait for `closed`. */
  terminate(): void;
}

/** Opens a link to `url`, authenticating with the bearer `token`. Never throws for a network
 * failure: it reports `closed` instead. Calls the listener only after it has returned. */
export type Dial = (url: string, token: string, listener: LinkListener) => Link;
