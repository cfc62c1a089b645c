-- Circuit breakers (node/core/breaker/breaker.ts), one row each, keyed like the record: one
-- breaker per lane, a tenant's queue. A breaker lives on one shard, whose owner loads them all
-- at start and decides their state; every write is fenced by that shard's epoch, as commits
-- are (node/store/pg-breakers.ts). Few rows (at most 1,000 per tenant), rewritten only when a
-- breaker changes state or its settings change, and never deleted (versions order every state
-- a node hears of), so a plain table: nothing to partition or expire. Timestamps hold whole
-- milliseconds.
CREATE TABLE breakers (
  tenant text COLLATE "C" NOT NULL,
  queue text COLLATE "C" NOT NULL,
  shard int NOT NULL,
  -- The queue's own settings, or none of them: a row kept only for the state a node's default
  -- breaker reached.
  config_enabled boolean NULL,
  config_failure_rate_pct int NULL,
  config_min_attempts int NULL,
  config_window_ms bigint NULL,
  config_cooldown_ms bigint NULL,
  config_cooldown_max_ms bigint NULL,
  config_probes int NULL,
  config_refuse_when_open boolean NULL,
  state text COLLATE "C" NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
  since_at timestamptz NOT NULL,
  next_probe_at timestamptz NULL,
  cooldown_ms bigint NOT NULL,
  round int NOT NULL,
  opened_attempts int NOT NULL,
  opened_failures int NOT NULL,
  version int NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, queue),
  CONSTRAINT breakers_config_check CHECK (
    num_nulls(config_enabled, config_failure_rate_pct, config_min_attempts, config_window_ms,
      config_cooldown_ms, config_cooldown_max_ms, config_probes, config_refuse_when_open) IN (0, 8)
  )
);

-- A shard's breakers, which its owner loads when it takes the shard.
CREATE INDEX breakers_shard ON breakers (shard);
