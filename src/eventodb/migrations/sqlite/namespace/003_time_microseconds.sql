-- Upstream stored whole Unix seconds; we store microseconds (the same precision as Postgres).
-- Values below 1e11 can only be seconds (1e11 microseconds is 1970-01-02), so re-running is a no-op.
UPDATE messages SET time = time * 1000000 WHERE time < 100000000000;
