// `kairos/protocol`: the wire protocol (PROTOCOL.md) as TypeScript: every message type, the
// codec (msgpack, written and read by the project's own strict code), validation of decoded
// frames, the limits and the error codes. For clients and tools that speak to a node without the
// SDK (`kairos/sdk`), and for implementations in other languages to test against.

export * from './client-messages.ts';
export * from './worker-messages.ts';
export * from './peer-messages.ts';
export * from './job-view.ts';
export * from './schedule-view.ts';
export * from './breaker-view.ts';
export * from './errors.ts';
export * from './limits.ts';
export { encodeMessage, decodeFrame } from './codec.ts';
export { decodeFromClient, decodeFromNode, decodeFromPeer, type Decoded } from './validate.ts';
