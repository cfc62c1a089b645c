-- Shard leases apart from epochs, in rows that do not lock each other. Every commit locks its
-- shards' rows of `shards` FOR SHARE to read the epoch; a renewal that updated those same rows
-- (as it did when owner and lease_until were columns of `shards`) had to wait for every commit
-- in flight on them, and the commits behind it waited for the renewal. Now commits lock only
-- `shards` (the epoch, the fence), renewal and release update only `shard_leases` (checking the
-- epoch with a plain read of `shards`, which takes no row lock), and acquisition updates both
-- in one transaction. A shard's lease row exists exactly when its shard row does.
CREATE TABLE shard_leases (
  id int PRIMARY KEY REFERENCES shards (id),
  owner text COLLATE "C" NULL,
  lease_until timestamptz NULL
);

INSERT INTO shard_leases (id, owner, lease_until) SELECT id, owner, lease_until FROM shards;

ALTER TABLE shards DROP COLUMN owner, DROP COLUMN lease_until;
