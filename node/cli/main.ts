// The `kairos` command line. Errors are one clear line on stderr and a non-zero exit.

import { UsageError } from './args.ts';
import {
  CANCEL_HELP,
  cancelCommand,
  DLQ_HELP,
  dlqCommand,
  GET_HELP,
  getCommand,
  LIST_HELP,
  listCommand,
  SUBMIT_HELP,
  submitCommand,
} from './client-commands.ts';
import { BREAKER_HELP, breakerCommand, BREAKERS_HELP, breakersCommand } from './breaker-commands.ts';
import { DEMO_HELP, demoCommand } from './demo.ts';
import { CLUSTER_HELP, clusterCommand } from './cluster-command.ts';
import { KEYGEN_HELP, keygenCommand } from './keygen.ts';
import { SCHEDULE_HELP, scheduleCommand } from './schedule-commands.ts';
import { START_HELP, startCommand } from './start.ts';

const HELP = `kairos: a distributed job scheduler

  kairos start                 run a node (embedded PostgreSQL unless DATABASE_URL is set)
  kairos demo                  a local 3-node cluster with a demo producer and workers (npm start)
  kairos keygen FILE           write a new cluster key, for kairos start --cluster-key FILE
  kairos cluster               the cluster's members and shard map, as a node sees them
  kairos submit QUEUE          submit a job (--payload, --priority, --delay-ms, --key, --count …)
  kairos get JOB_ID            show a job
  kairos list                  list your jobs, newest first (--state, --queue, --limit, --after)
  kairos cancel JOB_ID         cancel a pending or running job
  kairos dlq list|requeue      the dead-letter queue
  kairos schedule SUBCOMMAND   recurring schedules: add, list, get, pause, resume, rm
  kairos breakers              your queues' circuit breakers: state, failures, next probe
  kairos breaker SUBCOMMAND    a queue's circuit breaker: set, get, clear

Run 'kairos <command> --help' for a command's options.`;

const commands: Record<string, { help: string; run: (argv: string[]) => Promise<void> }> = {
  start: { help: START_HELP, run: startCommand },
  demo: { help: DEMO_HELP, run: demoCommand },
  keygen: { help: KEYGEN_HELP, run: keygenCommand },
  cluster: { help: CLUSTER_HELP, run: clusterCommand },
  submit: { help: SUBMIT_HELP, run: submitCommand },
  get: { help: GET_HELP, run: getCommand },
  list: { help: LIST_HELP, run: listCommand },
  cancel: { help: CANCEL_HELP, run: cancelCommand },
  dlq: { help: DLQ_HELP, run: dlqCommand },
  schedule: { help: SCHEDULE_HELP, run: scheduleCommand },
  breakers: { help: BREAKERS_HELP, run: breakersCommand },
  breaker: { help: BREAKER_HELP, run: breakerCommand },
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
    process.exit(isUsageError(error) ? 2 : 1);
  },
);

/** Ours, or node's argument parser refusing an option or a value (ERR_PARSE_ARGS_*). */
function isUsageError(error: unknown): boolean {
  if (error instanceof UsageError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}
