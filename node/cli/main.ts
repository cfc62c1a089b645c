// The `kairos` command line. Errors are one clear line on stderr and a non-zero exit.

import { UsageError } from './args.ts';
import { START_HELP, startCommand } from './start.ts';

const HELP = `kairos: a distributed job scheduler

  kairos start                 run a node (see kairos start --help)

Run 'kairos <command> --help' for a command's options.`;

const commands: Record<string, { help: string; run: (argv: string[]) => Promise<void> }> = {
  start: { help: START_HELP, run: startCommand },
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const command = commands[name];
  if (command === undefined) throw new UsageError(`unknown command '${name}' (kairos --help lists them)`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.help}\n`);
    return;
  }
  await command.run(rest);
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`kairos: ${message.split('\n')[0]}\n`);
    if (process.env.KAIROS_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
