// SIGINT (Ctrl-C) and SIGTERM as a request to stop, for the commands that run until stopped.
// Installed before anything starts: a signal with no handler ends the process at once, and
// leaves behind what it had started (the embedded PostgreSQL runs in a process group of its
// own, which a terminal's Ctrl-C does not reach). Further signals while stopping are noted, not
// obeyed, so that a second Ctrl-C cannot end the process before it has stopped the database.

export interface StopSignals {
  /** Resolves at the first signal. */
  readonly asked: Promise<'stop'>;
  /** Whether one has come. */
  readonly requested: boolean;
}

export function stopSignals(say: (line: string) => void): StopSignals {
  let signals = 0;
  let resolveAsked: (value: 'stop') => void = () => {};
  const asked = new Promise<'stop'>((resolve) => (resolveAsked = resolve));
  const onSignal = () => {
    say(signals++ === 0 ? 'stopping…' : 'still stopping: the database stops last…');
    resolveAsked('stop');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    asked,
    get requested() {
      return signals > 0;
    },
  };
}
