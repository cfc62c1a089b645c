-- The schema that node/store/migrations produce, read back from a migrated database by
-- test/support/schema-dump.ts. Generated, do not edit; after adding a migration, regenerate:
--   UPDATE_SCHEMA_DUMP=1 npx vitest run test/conformance/pg-store.test.ts
-- (Daily partitions jobs_pYYYYMMDD are created at run time by the retention pass.)

CREATE TABLE breakers (
  tenant text COLLATE "C" NOT NULL,
  queue text COLLATE "C" NOT NULL,
  shard integer NOT NULL,
  config_enabled boolean,
  config_failure_rate_pct integer,
  config_min_attempts integer,
  config_window_ms bigint,
  config_cooldown_ms bigint,
  config_cooldown_max_ms bigint,
  config_probes integer,
  config_refuse_when_open boolean,
  state text COLLATE "C" NOT NULL,
  since_at timestamp with time zone NOT NULL,
  next_probe_at timestamp with time zone,
  cooldown_ms bigint NOT NULL,
  round integer NOT NULL,
  opened_attempts integer NOT NULL,
  opened_failures integer NOT NULL,
  version integer NOT NULL,
  updated_at timestamp with time zone NOT NULL,
  CONSTRAINT breakers_config_check CHECK ((num_nulls(config_enabled, config_failure_rate_pct, config_min_attempts, config_window_ms, config_cooldown_ms, config_cooldown_max_ms, config_probes, config_refuse_when_open) = ANY (ARRAY[0, 8]))),
  CONSTRAINT breakers_pkey PRIMARY KEY (tenant, queue),
  CONSTRAINT breakers_state_check CHECK ((state = ANY (ARRAY['closed'::text, 'open'::text, 'half_open'::text])))
);
CREATE INDEX breakers_shard ON public.breakers USING btree (shard);

CREATE TABLE cluster (
  id boolean NOT NULL DEFAULT true,
  shard_count integer NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT cluster_id_check CHECK (id),
  CONSTRAINT cluster_pkey PRIMARY KEY (id),
  CONSTRAINT cluster_shard_count_check CHECK ((shard_count > 0))
);

CREATE TABLE idempotency (
  tenant text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  job_id text COLLATE "C" NOT NULL,
  scheduled_at timestamp with time zone NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT idempotency_pkey PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_scheduled_at ON public.idempotency USING btree (scheduled_at);

CREATE TABLE jobs (
  id text COLLATE "C" NOT NULL,
  shard integer NOT NULL,
  tenant text COLLATE "C" NOT NULL,
  queue text COLLATE "C" NOT NULL,
  payload bytea NOT NULL,
  priority integer NOT NULL,
  run_at timestamp with time zone NOT NULL,
  scheduled_at timestamp with time zone NOT NULL,
  status text COLLATE "C" NOT NULL,
  attempts integer NOT NULL,
  retry_attempts_max integer NOT NULL,
  retry_backoff_base_ms integer NOT NULL,
  retry_backoff_max_ms integer NOT NULL,
  retry_jitter double precision NOT NULL,
  idempotency_key text COLLATE "C",
  lease_epoch bigint,
  lease_expires_at timestamp with time zone,
  version integer NOT NULL,
  last_error text,
  result bytea,
  created_at timestamp with time zone NOT NULL,
  updated_at timestamp with time zone NOT NULL,
  finished_at timestamp with time zone,
  lease_worker text,
  CONSTRAINT jobs_pkey PRIMARY KEY (id, scheduled_at),
  CONSTRAINT jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'succeeded'::text, 'dead'::text, 'cancelled'::text])))
) PARTITION BY RANGE (scheduled_at);
CREATE INDEX jobs_shard_status_run_at ON ONLY public.jobs USING btree (shard, status, run_at, id) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]));
CREATE INDEX jobs_tenant_created_at ON ONLY public.jobs USING btree (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_tenant_status_created_at ON ONLY public.jobs USING btree (tenant, status, created_at DESC, id DESC) WHERE (status <> 'succeeded'::text);

CREATE TABLE jobs_default PARTITION OF jobs DEFAULT;

CREATE TABLE retention_key_sweeps (
  day_start timestamp with time zone NOT NULL,
  CONSTRAINT retention_key_sweeps_pkey PRIMARY KEY (day_start)
);

CREATE TABLE schedules (
  tenant text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  shard integer NOT NULL,
  cron text,
  timezone text,
  every_ms bigint,
  queue text COLLATE "C" NOT NULL,
  payload bytea NOT NULL,
  priority integer NOT NULL,
  retry_attempts_max integer NOT NULL,
  retry_backoff_base_ms integer NOT NULL,
  retry_backoff_max_ms integer NOT NULL,
  retry_jitter double precision NOT NULL,
  missed text COLLATE "C" NOT NULL,
  missed_max integer NOT NULL,
  paused boolean NOT NULL,
  next_tick_at timestamp with time zone,
  version integer NOT NULL,
  created_at timestamp with time zone NOT NULL,
  updated_at timestamp with time zone NOT NULL,
  CONSTRAINT schedules_missed_check CHECK ((missed = ANY (ARRAY['skip'::text, 'once'::text, 'each'::text]))),
  CONSTRAINT schedules_pkey PRIMARY KEY (tenant, name),
  CONSTRAINT schedules_timing_check CHECK ((((cron IS NOT NULL) AND (timezone IS NOT NULL) AND (every_ms IS NULL)) OR ((cron IS NULL) AND (timezone IS NULL) AND (every_ms IS NOT NULL))))
);
CREATE INDEX schedules_shard ON public.schedules USING btree (shard);

CREATE TABLE schema_migrations (
  version integer NOT NULL,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE shard_leases (
  id integer NOT NULL,
  owner text COLLATE "C",
  lease_until timestamp with time zone,
  CONSTRAINT shard_leases_id_fkey FOREIGN KEY (id) REFERENCES shards(id),
  CONSTRAINT shard_leases_pkey PRIMARY KEY (id)
);

CREATE TABLE shards (
  id integer NOT NULL,
  epoch bigint NOT NULL DEFAULT 0,
  CONSTRAINT shards_id_check CHECK ((id >= 0)),
  CONSTRAINT shards_pkey PRIMARY KEY (id)
);
