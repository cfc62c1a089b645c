// A running hash of what happened in a run, in order. Two runs of one seed must produce the
// same hash: that is the simulator's determinism, tested on every sweep. With `keep`, the
// events themselves are kept too, to print a failing seed's trace.

export class Trace {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193;
  events = 0;
  readonly kept: string[] | null;

  constructor(
    private readonly now: () => number,
    keep = false,
  ) {
    this.kept = keep ? [] : null;
  }

  add(event: string): void {
    const line = `${this.now().toFixed(3)} ${event}`;
    this.events++;
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      this.h1 = Math.imul(this.h1 ^ c, 0x01000193);
      this.h2 = Math.imul(this.h2 ^ c, 0x5bd1e995) ^ (this.h2 >>> 15);
    }
    this.kept?.push(line);
  }

  hex(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }
}
