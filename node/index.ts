// `kairos`: a Kairos node inside your own process. Start one (it listens for clients and other
// nodes as `kairos start` does), and attach workers to it without a socket through the SDK's
// in-process transport:
//
//   import { startNodeProcess, inProcessDial, TokenTable } from 'kairos';
//   import { connect } from 'kairos/sdk';
//   const node = await startNodeProcess({ dataDir: '.kairos', host: '127.0.0.1', port: 7070, pgPort: 54329,
//     tokens: new TokenTable({ secret: 'acme' }, false), logLevel: 'info' });
//   await node.ready();
//   const client = await connect({ url: 'inprocess:', token: '', transport: inProcessDial(node.node, 'acme') });
//
// The client and worker SDK alone is `kairos/sdk`; the wire protocol, for clients in other
// languages or tools, is `kairos/protocol`.

export { startNodeProcess, DEFAULT_LISTEN, type NodeProcess, type NodeProcessOptions } from './adapters/node-process.ts';
export { inProcessDial } from './adapters/in-process-link.ts';
export { TokenTable, loadTokens, DEV_TOKEN, DEV_TENANT } from './adapters/tokens.ts';
export { generateClusterKey, loadClusterKey, parseClusterKey, writeClusterKeyFile } from './adapters/libp2p/cluster-key.ts';
export { DEFAULT_NODE_CONFIG, type NodeConfig, type KairosNode } from './core/node.ts';
export type { BreakerConfig } from '../protocol/breaker-view.ts';
