// A small seeded PRNG (sfc32, 128 bits of state, passes PractRand to 2^40+ bytes) behind the
// environment's Random interface. Production seeds it from the OS; the simulator derives one
// stream per subsystem from the run's seed, so a new draw in one subsystem does not reshuffle
// the others (TigerBeetle's habit).

import type { Random } from './env.ts';
import { fnv1a32 } from '../../protocol/job-id.ts';

export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    // Warm up so that nearby seeds give unrelated streams.
    for (let i = 0; i < 16; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.nextUint32() / 4294967296;
  }

  int(n: number): number {
    if (!(Number.isInteger(n) && n > 0)) throw new RangeError(`int(n) needs a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** An independent stream for a named subsystem, fixed by this stream's seed and the label. */
  derive(label: string): SeededRandom {
    return new SeededRandom((Math.imul(this.seed ^ 0x5bd1e995, 0x01000193) ^ fnv1a32(label)) >>> 0);
  }
}
