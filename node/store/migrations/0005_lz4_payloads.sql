-- Payloads and results compress with lz4 rather than the default pglz. A 2 KB payload is
-- compressed inline by every job insert, and pglz_compress was about a tenth of the server's
-- CPU per job under load (a perf profile of the benchmark); lz4 compresses several times
-- faster at a similar ratio for this kind of data. Values already stored keep their method.
-- A column's compression does not pass from a partitioned table to its partitions, so every
-- existing partition is set too; later daily partitions copy the parent's (pg-retention.ts).
-- A server built without lz4 refuses the method: the columns then keep pglz, and nothing
-- else changes.
DO $$
DECLARE
  partition regclass;
BEGIN
  ALTER TABLE jobs ALTER COLUMN payload SET COMPRESSION lz4, ALTER COLUMN result SET COMPRESSION lz4;
  FOR partition IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'jobs'::regclass LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN payload SET COMPRESSION lz4, ALTER COLUMN result SET COMPRESSION lz4', partition);
  END LOOP;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'this server has no lz4: job payloads and results stay compressed with pglz';
END
$$;
