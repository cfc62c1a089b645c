-- The worker connection a lease was granted to: only it may settle the lease, and a new owner
-- that loads a running job after a hand-off must know it too.
ALTER TABLE jobs ADD COLUMN lease_worker text;
