// Preloaded (`node --import`) into every benchmark process that talks to PostgreSQL: counts
// its round trips, for the "round trips per job" figure. PostgreSQL's own statistics count
// statements, and one round trip may carry several (Kairos sends `BEGIN; SET LOCAL …` as one
// query). node-postgres sends one query at a time per connection and waits for its answer, so
// a call of Client#query is one round trip, whoever makes it (a pool, graphile-worker, the
// Kairos store). Plain JavaScript, because a Kairos node loads tsx only after its preloads.
//
// On SIGUSR2 the process writes "<reports> <round trips>" to $KAIROS_BENCH_ROUND_TRIPS_DIR/<pid>,
// where <reports> counts the signals it has answered, so the reader knows the answer is fresh.

import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

const dir = process.env.KAIROS_BENCH_ROUND_TRIPS_DIR;
if (dir) {
  let roundTrips = 0;
  let reports = 0;
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function countedQuery(...args) {
    roundTrips++;
    return query.apply(this, args);
  };
  process.on('SIGUSR2', () => {
    reports++;
    const file = join(dir, String(process.pid));
    writeFileSync(`${file}.tmp`, `${reports} ${roundTrips}`);
    renameSync(`${file}.tmp`, file);
  });
}
