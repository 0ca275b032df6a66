-- Upstream's 002 taught the Postgres reader that an empty category means "all messages".
-- SQLite has no stored functions, so this version only records that the rule is in force.
SELECT 1;
