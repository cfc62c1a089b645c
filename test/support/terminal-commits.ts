// A log of every terminal commit, kept by a trigger in the test's database: the store's own
// account of "committed once" is what is under test, so the check must not rely on it.

export const TERMINAL_LOG_SQL = `
  CREATE TABLE terminal_commits (job_id text NOT NULL, status text NOT NULL);
  CREATE FUNCTION log_terminal_commit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.status IN ('succeeded', 'dead', 'cancelled') THEN
      INSERT INTO terminal_commits VALUES (NEW.id, NEW.status);
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER log_terminal_commit AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION log_terminal_commit();`;

/** Jobs committed terminal more than once. */
export const COMMITTED_TWICE_SQL = 'SELECT job_id FROM terminal_commits GROUP BY job_id HAVING count(*) > 1';
