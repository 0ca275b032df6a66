-- The message store of one namespace (docs/STORAGE.md, "Postgres backend").
--
-- Templating: {{schema}} is replaced by the namespace's schema name as a quoted identifier and
-- {{schema_literal}} by the same name as a string literal (eventodb.store.postgres.render).
-- Every object is schema-qualified, so nothing depends on the caller's search_path.
--
-- Column order: Message DB's (global_position, position, time, stream_name, type, data,
-- metadata, id), so that `SELECT * FROM messages` in a new namespace prints exactly what it
-- prints against Message DB. Schemas created by upstream EventoDB keep upstream's order; the
-- server always names its columns, so both work.
CREATE SCHEMA IF NOT EXISTS {{schema}};

CREATE TABLE IF NOT EXISTS {{schema}}.messages (
    global_position BIGSERIAL NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    time TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    stream_name TEXT NOT NULL,
    type TEXT NOT NULL,
    data JSONB,
    metadata JSONB,
    id UUID NOT NULL DEFAULT gen_random_uuid()
);

CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON {{schema}}.messages (id);

CREATE UNIQUE INDEX IF NOT EXISTS messages_stream ON {{schema}}.messages (stream_name, position);

-- split_part(x, '-', 1) is category(x). Spelled out (as upstream does for the stream) so that
-- the server's queries, upstream's index and Message DB's inlined category() all meet the same
-- expression. The third column is Message DB's category(correlation); upstream indexes the raw
-- correlation value instead.
CREATE INDEX IF NOT EXISTS messages_category ON {{schema}}.messages (
    split_part(stream_name, '-', 1),
    global_position,
    split_part(metadata ->> 'correlationStreamName', '-', 1)
);

CREATE TABLE IF NOT EXISTS {{schema}}._schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMP DEFAULT now()
);
