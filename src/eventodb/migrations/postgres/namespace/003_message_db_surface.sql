-- Message DB 1.3.0's SQL surface: function names, parameter names (so named-argument
-- calls work), the `message` row type, validation texts, `condition`, the reporting views and
-- message_store_version(). Written from Message DB's documented semantics.
--
-- Three kinds of schema meet this file: our own new ones, upstream EventoDB's (versions 1-2,
-- functions with `_`-prefixed parameter names and other return types, which CREATE OR REPLACE
-- cannot change) and plain Message DB 1.x schemas being adopted (`eventodb adopt`), whose
-- functions already have these names and types and may have dependants: Message DB's category
-- index uses category(). So: drop exactly those of our functions whose parameter names differ
-- from Message DB's, then create or replace everything in place. Re-running is harmless.
--
-- Every reference is schema-qualified ({{schema}}) instead of a per-function search_path: the
-- small SQL functions stay inlinable, so `category(stream_name)` in a query can use the
-- messages_category index, and no GUC has to be switched on every call. (Message DB's own
-- functions resolve names through the caller's search_path; replacing them lets the server,
-- whatever its search_path, call them too.)

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        JOIN (VALUES
            ('write_message', ARRAY['id', 'stream_name', 'type', 'data', 'metadata', 'expected_version']),
            ('get_stream_messages', ARRAY['stream_name', 'position', 'batch_size', 'condition']),
            ('get_category_messages', ARRAY['category', 'position', 'batch_size', 'correlation', 'consumer_group_member', 'consumer_group_size', 'condition']),
            ('get_last_stream_message', ARRAY['stream_name', 'type']),
            ('stream_version', ARRAY['stream_name']),
            ('acquire_lock', ARRAY['stream_name']),
            ('hash_64', ARRAY['value']),
            ('is_category', ARRAY['stream_name']),
            ('cardinal_id', ARRAY['stream_name']),
            ('id', ARRAY['stream_name']),
            ('category', ARRAY['stream_name']),
            ('message_store_version', NULL::text[])
        ) AS ours(name, args) ON p.proname = ours.name
        WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = {{schema_literal}})
          AND p.proargnames IS DISTINCT FROM ours.args
    LOOP
        EXECUTE 'DROP FUNCTION ' || f::text;
    END LOOP;
    IF NOT EXISTS (
        SELECT 1 FROM pg_type
        WHERE typname = 'message'
          AND typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = {{schema_literal}})
    ) THEN
        CREATE TYPE {{schema}}.message AS (
            id varchar,
            stream_name varchar,
            type varchar,
            position bigint,
            global_position bigint,
            data varchar,
            metadata varchar,
            time timestamp
        );
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION {{schema}}.message_store_version()
RETURNS varchar
LANGUAGE sql IMMUTABLE
AS $$ SELECT '1.3.0'::varchar $$;

-- Name functions (category, id, cardinal id; docs/API.md, "Streams, categories and messages"):
-- the SQL twins of eventodb.core.streams.

CREATE OR REPLACE FUNCTION {{schema}}.category(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE
AS $$ SELECT split_part($1, '-', 1)::varchar $$;

CREATE OR REPLACE FUNCTION {{schema}}.id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN strpos($1, '-') = 0 THEN NULL
                ELSE substr($1, strpos($1, '-') + 1) END::varchar
$$;

CREATE OR REPLACE FUNCTION {{schema}}.cardinal_id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE
AS $$ SELECT split_part({{schema}}.id($1), '+', 1)::varchar $$;

CREATE OR REPLACE FUNCTION {{schema}}.is_category(stream_name varchar)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$ SELECT strpos($1, '-') = 0 $$;

-- Message DB's hash: first 8 bytes of the MD5 of the UTF-8 text as a signed 64-bit integer
-- (eventodb.core.hashing.hash_64 computes the same in Python).
CREATE OR REPLACE FUNCTION {{schema}}.hash_64(value varchar)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT ('x' || left(md5($1), 16))::bit(64)::bigint $$;

-- The write lock: a transaction-scoped advisory lock on hash_64(category). The key is Message
-- DB's and upstream EventoDB's, so the server, SQL clients and upstream servers sharing this
-- database all serialise writes to a category on the same lock.
CREATE OR REPLACE FUNCTION {{schema}}.acquire_lock(stream_name varchar)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _category_name_hash bigint;
BEGIN
    _category_name_hash := {{schema}}.hash_64({{schema}}.category(acquire_lock.stream_name));
    PERFORM pg_advisory_xact_lock(_category_name_hash);
    RETURN _category_name_hash;
END;
$$;

-- NULL when the stream has no messages (Message DB; upstream EventoDB returned -1).
CREATE OR REPLACE FUNCTION {{schema}}.stream_version(stream_name varchar)
RETURNS bigint
LANGUAGE sql STABLE
AS $$ SELECT max(m.position) FROM {{schema}}.messages m WHERE m.stream_name = $1 $$;

-- Appends a message at the stream's next position. The server writes through this function
-- too. Every committed write sends a NOTIFY on channel `eventodb` so that servers in other
-- processes can poke their subscribers: payload
-- {"s": schema, "g": global position, "p": position, "n": stream name}. NOTIFY payloads must stay
-- below 8000 bytes, so "n" is null for very long stream names and the listener looks the name up
-- by global position.
CREATE OR REPLACE FUNCTION {{schema}}.write_message(
    id varchar,
    stream_name varchar,
    "type" varchar,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _message_id uuid;
    _stream_version bigint;
    _next_position bigint;
    _global_position bigint;
BEGIN
    -- Like Message DB: a malformed id fails first, whatever the expected version.
    _message_id := uuid(write_message.id);

    PERFORM {{schema}}.acquire_lock(write_message.stream_name);

    -- A fresh snapshot (this function is VOLATILE), taken after the lock: sees every write
    -- committed before we got it.
    _stream_version := coalesce({{schema}}.stream_version(write_message.stream_name), -1);

    IF write_message.expected_version IS NOT NULL
            AND write_message.expected_version <> _stream_version THEN
        -- Default SQLSTATE P0001; clients recognise the conflict by this text (upstream EventoDB raised P0003).
        RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
            write_message.expected_version, write_message.stream_name, _stream_version;
    END IF;

    _next_position := _stream_version + 1;

    INSERT INTO {{schema}}.messages (id, stream_name, position, type, data, metadata)
    VALUES (
        _message_id,
        write_message.stream_name,
        _next_position,
        write_message.type,
        write_message.data,
        write_message.metadata
    )
    RETURNING global_position INTO _global_position;

    PERFORM pg_notify('eventodb', json_build_object(
        's', {{schema_literal}},
        'g', _global_position,
        'p', _next_position,
        'n', CASE WHEN octet_length(write_message.stream_name) <= 7000
                  THEN write_message.stream_name END
    )::text);

    RETURN _next_position;
END;
$$;

-- `condition` (Message DB's deliberately unsafe extra predicate) is refused unless the setting
-- message_store.sql_condition is set to something other than 'off'.
CREATE OR REPLACE FUNCTION {{schema}}.get_stream_messages(
    stream_name varchar,
    "position" bigint DEFAULT 0,
    batch_size bigint DEFAULT 1000,
    condition varchar DEFAULT NULL
)
RETURNS SETOF {{schema}}.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _command text;
    _setting text;
BEGIN
    -- A NULL name is no error in Message DB (is_category(NULL) is NULL): it reads nothing.
    IF {{schema}}.is_category(get_stream_messages.stream_name) THEN
        RAISE EXCEPTION 'Must be a stream name: %', get_stream_messages.stream_name;
    END IF;

    get_stream_messages.position := coalesce(get_stream_messages.position, 0);
    get_stream_messages.batch_size := coalesce(get_stream_messages.batch_size, 1000);

    _command := '
        SELECT id::varchar, stream_name::varchar, type::varchar, position::bigint,
               global_position::bigint, data::varchar, metadata::varchar, time::timestamp
        FROM {{schema}}.messages
        WHERE stream_name = $1 AND position >= $2';

    IF get_stream_messages.condition IS NOT NULL THEN
        _setting := current_setting('message_store.sql_condition', true);
        IF _setting IS NULL OR _setting = 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated';
        END IF;
        _command := _command || ' AND (' || get_stream_messages.condition || ')';
    END IF;

    _command := _command || ' ORDER BY position ASC';

    IF get_stream_messages.batch_size <> -1 THEN
        _command := _command || ' LIMIT $3';
    END IF;

    RETURN QUERY EXECUTE _command USING
        get_stream_messages.stream_name,
        get_stream_messages.position,
        get_stream_messages.batch_size;
END;
$$;

-- A NULL or empty category reads the whole namespace (upstream EventoDB's 002); any other
-- category must not contain '-' (Message DB).
CREATE OR REPLACE FUNCTION {{schema}}.get_category_messages(
    category varchar,
    "position" bigint DEFAULT 1,
    batch_size bigint DEFAULT 1000,
    correlation varchar DEFAULT NULL,
    consumer_group_member bigint DEFAULT NULL,
    consumer_group_size bigint DEFAULT NULL,
    condition varchar DEFAULT NULL
)
RETURNS SETOF {{schema}}.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _command text;
    _setting text;
    _member bigint := get_category_messages.consumer_group_member;
    _size bigint := get_category_messages.consumer_group_size;
BEGIN
    IF coalesce(get_category_messages.category, '') <> ''
            AND NOT {{schema}}.is_category(get_category_messages.category) THEN
        RAISE EXCEPTION 'Must be a category: %', get_category_messages.category;
    END IF;

    get_category_messages.position := coalesce(get_category_messages.position, 1);
    get_category_messages.batch_size := coalesce(get_category_messages.batch_size, 1000);

    _command := '
        SELECT id::varchar, stream_name::varchar, type::varchar, position::bigint,
               global_position::bigint, data::varchar, metadata::varchar, time::timestamp
        FROM {{schema}}.messages
        WHERE global_position >= $2';

    IF coalesce(get_category_messages.category, '') <> '' THEN
        _command := _command || ' AND split_part(stream_name, ''-'', 1) = $1';
    END IF;

    IF get_category_messages.correlation IS NOT NULL THEN
        IF strpos(get_category_messages.correlation, '-') > 0 THEN
            RAISE EXCEPTION 'Correlation must be a category (Correlation: %)',
                get_category_messages.correlation;
        END IF;
        _command := _command
            || ' AND split_part(metadata ->> ''correlationStreamName'', ''-'', 1) = $4';
    END IF;

    IF (_member IS NULL) <> (_size IS NULL) THEN
        RAISE EXCEPTION 'Consumer group member and size must be specified (Consumer Group Member: %, Consumer Group Size: %)',
            _member, _size;
    END IF;

    IF _member IS NOT NULL THEN
        IF _size < 1 THEN
            RAISE EXCEPTION 'Consumer group size must not be less than 1 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member < 0 THEN
            RAISE EXCEPTION 'Consumer group member must not be less than 0 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member >= _size THEN
            RAISE EXCEPTION 'Consumer group member must be less than the group size (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        _command := _command
            || ' AND mod(@ {{schema}}.hash_64({{schema}}.cardinal_id(stream_name)), $6) = $5';
    END IF;

    IF get_category_messages.condition IS NOT NULL THEN
        _setting := current_setting('message_store.sql_condition', true);
        IF _setting IS NULL OR _setting = 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated';
        END IF;
        _command := _command || ' AND (' || get_category_messages.condition || ')';
    END IF;

    _command := _command || ' ORDER BY global_position ASC';

    IF get_category_messages.batch_size <> -1 THEN
        _command := _command || ' LIMIT $3';
    END IF;

    RETURN QUERY EXECUTE _command USING
        get_category_messages.category,
        get_category_messages.position,
        get_category_messages.batch_size,
        get_category_messages.correlation,
        _member,
        _size;
END;
$$;

CREATE OR REPLACE FUNCTION {{schema}}.get_last_stream_message(
    stream_name varchar,
    "type" varchar DEFAULT NULL
)
RETURNS SETOF {{schema}}.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _command text;
BEGIN
    _command := '
        SELECT id::varchar, stream_name::varchar, type::varchar, position::bigint,
               global_position::bigint, data::varchar, metadata::varchar, time::timestamp
        FROM {{schema}}.messages
        WHERE stream_name = $1';

    IF get_last_stream_message.type IS NOT NULL THEN
        _command := _command || ' AND type = $2';
    END IF;

    _command := _command || ' ORDER BY position DESC LIMIT 1';

    RETURN QUERY EXECUTE _command USING
        get_last_stream_message.stream_name,
        get_last_stream_message.type;
END;
$$;

-- Reporting views Message DB installs (its print scripts query them). percent = share of all
-- messages, rounded to 2 decimals.

CREATE OR REPLACE VIEW {{schema}}.stream_summary AS
    WITH counts AS (
        SELECT stream_name, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY stream_name
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT stream_name, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY stream_name;

CREATE OR REPLACE VIEW {{schema}}.type_summary AS
    WITH counts AS (
        SELECT type, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY type
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT type, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY type;

CREATE OR REPLACE VIEW {{schema}}.stream_type_summary AS
    WITH counts AS (
        SELECT stream_name, type, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY stream_name, type
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT stream_name, type, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY stream_name, type;

CREATE OR REPLACE VIEW {{schema}}.type_stream_summary AS
    WITH counts AS (
        SELECT type, stream_name, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY type, stream_name
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT type, stream_name, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY type, stream_name;

CREATE OR REPLACE VIEW {{schema}}.category_type_summary AS
    WITH counts AS (
        SELECT {{schema}}.category(stream_name) AS category, type, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY category, type
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT category, type, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY category, type;

CREATE OR REPLACE VIEW {{schema}}.type_category_summary AS
    WITH counts AS (
        SELECT type, {{schema}}.category(stream_name) AS category, count(id) AS message_count
        FROM {{schema}}.messages GROUP BY type, category
    ), total AS (
        SELECT count(id)::decimal AS total_count FROM {{schema}}.messages
    )
    SELECT type, category, message_count,
           round((message_count / total_count)::decimal * 100, 2) AS percent
    FROM counts, total
    ORDER BY type, category;
