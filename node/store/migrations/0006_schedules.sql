-- Recurring schedules (node/core/schedule/schedule.ts), one row each, keyed like the record:
-- a name is unique per tenant. A schedule lives on one shard, whose owner loads them all at
-- start and fires their ticks; every write is fenced by that shard's epoch, as commits are
-- (node/store/pg-schedules.ts). Few rows (at most 1,000 per tenant), rewritten once per tick,
-- so a plain table: nothing to partition or expire. Timestamps hold whole milliseconds.
CREATE TABLE schedules (
  tenant text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  shard int NOT NULL,
  -- The timing: a cron expression in a time zone, or a fixed interval; exactly one of them.
  cron text NULL,
  timezone text NULL,
  every_ms bigint NULL,
  queue text COLLATE "C" NOT NULL,
  payload bytea NOT NULL,
  priority int NOT NULL,
  retry_attempts_max int NOT NULL,
  retry_backoff_base_ms int NOT NULL,
  retry_backoff_max_ms int NOT NULL,
  retry_jitter double precision NOT NULL,
  missed text COLLATE "C" NOT NULL CHECK (missed IN ('skip', 'once', 'each')),
  missed_max int NOT NULL,
  paused boolean NOT NULL,
  next_tick_at timestamptz NULL,
  version int NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name),
  CONSTRAINT schedules_timing_check CHECK (
    (cron IS NOT NULL AND timezone IS NOT NULL AND every_ms IS NULL)
    OR (cron IS NULL AND timezone IS NULL AND every_ms IS NOT NULL)
  )
);

-- A shard's schedules, which its owner loads when it takes the shard.
CREATE INDEX schedules_shard ON schedules (shard);
