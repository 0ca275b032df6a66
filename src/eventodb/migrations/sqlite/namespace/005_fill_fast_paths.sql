-- Marks that the fast-path columns of 004 are filled for every message written before it.
-- The server fills them just before applying this migration, FILL_BATCH rows per transaction
-- and with progress on the console (eventodb.store.sqlite.fill_fast_paths), so a big namespace
-- is never locked for long; an interrupted fill resumes at the next start.
SELECT 1;
