// `kairos keygen FILE`: a new cluster key for a new cluster. Every node of the cluster is
// started with the same file; a node without it cannot connect to them.

import { parseArgs } from 'node:util';
import { writeClusterKeyFile } from '../adapters/libp2p/cluster-key.ts';
import { UsageError } from './args.ts';

export const KEYGEN_HELP = `kairos keygen FILE
  Writes a new cluster key to FILE (readable by its owner only); never overwrites a file.
  Give every node of the cluster the file: kairos start --cluster-key FILE`;

export async function keygenCommand(argv: string[]): Promise<void> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError(`expected one file to write the key to, got ${positionals.length}`);
  const file = positionals[0]!;
  await writeClusterKeyFile(file);
  process.stderr.write(`kairos: wrote a new cluster key to ${file}; start every node with --cluster-key ${file}\n`);
}
