// The Kairos node that renewal-stall.ts loads: what `kairos start` runs, alone on loopback, on
// DATABASE_URL, except for the shard lease. `kairos start` has no flag for the shard lease or
// its renewal period (--lease-ms is the workers' job lease), and at the defaults (15 s lease,
// renewed every 3 s) a 30 s run sees only ten renewals; so this takes --renew-ms and scales
// the lease and the safety margin with it, in the defaults' proportions. Prints
// {"ready":true,"url":…} once it serves every shard; SIGTERM stops it gracefully.

import { parseArgs } from 'node:util';
import { startNodeProcess } from '../../node/adapters/node-process.ts';
import { loadTokens } from '../../node/adapters/tokens.ts';
import { DEFAULT_SHARD_MANAGER_CONFIG } from '../../node/core/shards/shard-manager.ts';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    'renew-ms': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const defaults = DEFAULT_SHARD_MANAGER_CONFIG;
const scale = Number(values['renew-ms']) / defaults.renewEveryMs;
const shards = {
  ...defaults,
  renewEveryMs: defaults.renewEveryMs * scale,
  shardLeaseMs: defaults.shardLeaseMs * scale,
  safetyMarginMs: defaults.safetyMarginMs * scale,
};

const node = await startNodeProcess({
  dataDir: values['data-dir']!,
  host: '127.0.0.1',
  port: 0,
  // Only used without DATABASE_URL, which the benchmark always sets.
  pgPort: 0,
  tokens: loadTokens(process.env, undefined),
  logLevel: values['log-level'] as 'debug' | 'info' | 'warn' | 'error',
  config: { shards },
});
await node.ready();
process.stdout.write(`${JSON.stringify({ ready: true, url: node.url, nodeId: node.nodeId, shardLeaseMs: shards.shardLeaseMs })}\n`);
process.once('SIGTERM', () => void node.stop().then(() => process.exit(0)));
