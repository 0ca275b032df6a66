-- Upstream's 002 taught get_category_messages that an empty category means "all messages".
-- Our functions are (re)installed by 003 with that rule built in; this version number is kept
-- so upstream-created schemas (already at 2) and ours count the same way.
SELECT 1;
