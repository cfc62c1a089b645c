// `kairos cluster`: the members of the cluster as one node sees them, and the shard map.

import { parseArgs } from 'node:util';
import type { ClusterInfo } from '../../protocol/sdk/index.ts';
import { CONNECTION_HELP, CONNECTION_OPTIONS, withClient } from './client-commands.ts';

export const CLUSTER_HELP = `kairos cluster [--json]
  Members (status, whether shards are placed on them, how many, where clients connect) and
  the shard map, as the node you connect to sees them. --json prints the raw view.
${CONNECTION_HELP}`;

export async function clusterCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
  const info = await withClient(values, (client) => client.cluster());
  process.stdout.write(values.json === true ? `${JSON.stringify(info)}\n` : formatCluster(info));
}

export function formatCluster(info: ClusterInfo): string {
  const rows = info.members.map((m) => [
    m.node === info.node ? `${m.node} *` : m.node,
    m.status,
    m.inRing ? 'yes' : 'no',
    String(m.shards),
    m.clientUrl,
  ]);
  const header = ['node (* answered)', 'status', 'in ring', 'shards', 'client url'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`;
  let out = line(header) + rows.map(line).join('');
  out += `\nshard map (${info.owners.length} shards):\n`;
  for (const m of info.members) {
    const shards = info.owners.flatMap((owner, shard) => (owner === m.node ? [shard] : []));
    if (shards.length > 0) out += `  ${m.node}: ${ranges(shards)}\n`;
  }
  const unplaced = info.owners.flatMap((owner, shard) => (owner === null ? [shard] : []));
  if (unplaced.length > 0) out += `  no owner yet: ${ranges(unplaced)}\n`;
  return out;
}

/** Ascending shard numbers as `0-3,7,9-10`. */
function ranges(shards: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < shards.length; ) {
    let j = i;
    while (j + 1 < shards.length && shards[j + 1] === shards[j]! + 1) j++;
    parts.push(i === j ? String(shards[i]) : `${shards[i]}-${shards[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
