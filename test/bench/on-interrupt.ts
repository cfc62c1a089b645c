// What a benchmark interrupted by Ctrl-C or a timeout's SIGTERM must still stop: the node
// processes and the PostgreSQL server it started (pg_ctl runs a server detached, so it would
// outlive the benchmark). Stopped newest first, then the process exits; the producer and
// worker processes end by themselves when their IPC channel closes.

const tasks: Array<() => Promise<void>> = [];
let installed = false;

/** Runs `stop` if the process is interrupted before the returned function is called. */
export function onInterrupt(stop: () => Promise<void>): () => void {
  if (!installed) {
    installed = true;
    const interrupted = async (): Promise<void> => {
      for (const task of tasks.reverse()) await task().catch(() => {});
      process.exit(130);
    };
    process.once('SIGINT', () => void interrupted());
    process.once('SIGTERM', () => void interrupted());
  }
  tasks.push(stop);
  return () => {
    const at = tasks.indexOf(stop);
    if (at >= 0) tasks.splice(at, 1);
  };
}
