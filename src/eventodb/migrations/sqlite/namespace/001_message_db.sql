-- Message store of one namespace (docs/STORAGE.md). JSON is stored as text; time as Unix microseconds
-- (upstream stored seconds; 003 converts those).
CREATE TABLE IF NOT EXISTS messages (
    id TEXT NOT NULL,
    stream_name TEXT NOT NULL,
    type TEXT NOT NULL,
    position INTEGER NOT NULL,
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    data TEXT,
    metadata TEXT,
    time INTEGER NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages (id);

CREATE UNIQUE INDEX IF NOT EXISTS messages_stream ON messages (stream_name, position);

-- The category expression must be spelled exactly like this in queries for SQLite to use it.
CREATE INDEX IF NOT EXISTS messages_category ON messages (
    (CASE WHEN instr(stream_name, '-') > 0
          THEN substr(stream_name, 1, instr(stream_name, '-') - 1)
          ELSE stream_name END),
    global_position
);

CREATE TABLE IF NOT EXISTS _schema_version (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER DEFAULT (strftime('%s', 'now'))
);

CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
