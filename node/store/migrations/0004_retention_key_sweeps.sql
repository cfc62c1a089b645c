-- Days whose partition retention has dropped and whose idempotency keys are still to be
-- deleted. A day holds millions of keys, too many to delete inside the transaction that holds
-- ACCESS EXCLUSIVE on `jobs` (every commit would wait for it), so retention records the day
-- here in that transaction, deletes the keys after it in short batches, and then deletes the
-- row. A pass that stops half-way (a crash, a lost connection) leaves the row, and the next
-- pass finishes the day's keys.
CREATE TABLE retention_key_sweeps (
  day_start timestamptz PRIMARY KEY
);
