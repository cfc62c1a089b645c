// Runs the `kairos` command to its end, for tests of what it prints and how it exits.

import { execFile } from 'node:child_process';
import { KAIROS_BIN } from './spawn-node.ts';

export interface KairosRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `env` replaces the test's own environment when `replaceEnv`, else adds to it. */
export function runKairos(args: string[], options: { env?: Record<string, string | undefined>; replaceEnv?: boolean } = {}): Promise<KairosRun> {
  const env = options.replaceEnv === true ? options.env : { ...process.env, ...options.env };
  return new Promise((resolve) => {
    execFile(process.execPath, [KAIROS_BIN, ...args], { env }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
    });
  });
}
