-- Kairos schema, version 1. Migration files are immutable once released: the runner
-- (node/store/migrate.ts) refuses to start when an applied file's checksum changes. Change the
-- schema with a new numbered file, then refresh node/store/schema.sql.

-- The cluster's one-time settings. A single row (id is always true) written by the first node
-- that starts; later nodes compare their shard count against it.
CREATE TABLE cluster (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  shard_count int NOT NULL CHECK (shard_count > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Shard ownership. Every acquisition bumps epoch; every job write locks its shard's row and
-- compares epochs, which is what fences a deposed owner. Leases run on the database's clock.
CREATE TABLE shards (
  id int PRIMARY KEY CHECK (id >= 0),
  owner text COLLATE "C" NULL,
  epoch bigint NOT NULL DEFAULT 0,
  lease_until timestamptz NULL
);

-- Jobs, range-partitioned by day of scheduled_at (the acceptance time, encoded in the id), so
-- retention drops whole partitions and a lookup by id touches one partition. Daily partitions
-- are created ahead by the store's retention pass; DEFAULT catches anything outside them.
-- Timestamps hold whole milliseconds (the Job record's unit). Identifiers use the "C"
-- collation: byte order, so keyset paging on id agrees with every other component's ordering
-- whatever the server's locale, and comparisons are plain memcmp.
CREATE TABLE jobs (
  id text COLLATE "C" NOT NULL,
  shard int NOT NULL,
  tenant text COLLATE "C" NOT NULL,
  queue text COLLATE "C" NOT NULL,
  payload bytea NOT NULL,
  priority int NOT NULL,
  run_at timestamptz NOT NULL,
  scheduled_at timestamptz NOT NULL,
  status text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'dead', 'cancelled')),
  attempts int NOT NULL,
  retry_attempts_max int NOT NULL,
  retry_backoff_base_ms int NOT NULL,
  retry_backoff_max_ms int NOT NULL,
  retry_jitter double precision NOT NULL,
  idempotency_key text COLLATE "C" NULL,
  lease_epoch bigint NULL,
  lease_expires_at timestamptz NULL,
  version int NOT NULL,
  last_error text NULL,
  result bytea NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  finished_at timestamptz NULL,
  -- A unique key on a partitioned table must contain the partition column.
  PRIMARY KEY (id, scheduled_at)
) PARTITION BY RANGE (scheduled_at);

CREATE TABLE jobs_default PARTITION OF jobs DEFAULT;

-- The ready-queue scan and shard load: a shard's jobs in one live state by run_at; id makes
-- the (run_at, id) keyset exact so paging never skips or repeats a row. Partial: a finished
-- job leaves it, so completing a job writes one index entry fewer, and the index stays the
-- size of the backlog rather than of the history. Keep the predicate equal to LIVE_STATES.
CREATE INDEX jobs_shard_status_run_at ON jobs (shard, status, run_at, id) WHERE status IN ('pending', 'running');
-- A tenant's jobs newest first.
CREATE INDEX jobs_tenant_created_at ON jobs (tenant, created_at DESC, id DESC);
-- The same within one state (the dead-letter queue, the backlog). Succeeded jobs, the bulk of
-- any history, are left out: listing them walks jobs_tenant_created_at, where most rows match
-- anyway, and completing a job writes one index entry fewer.
CREATE INDEX jobs_tenant_status_created_at ON jobs (tenant, status, created_at DESC, id DESC) WHERE status <> 'succeeded';

-- Idempotency keys, outside the partitioned table because a unique index there would have to
-- contain scheduled_at. scheduled_at says which partition the job lives in, so retention can
-- delete a dropped partition's keys.
CREATE TABLE idempotency (
  tenant text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  job_id text COLLATE "C" NOT NULL,
  scheduled_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_scheduled_at ON idempotency (scheduled_at);
