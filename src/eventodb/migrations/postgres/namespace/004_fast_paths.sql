-- The server's fast paths (docs/PERFORMANCE.md, "How reads and writes work"):
--
-- * wire_json: the message as RPC responses show it from `type` on — the JSON text
--   `"type",position,global_position,data,metadata,"time"` — rendered once when the message is
--   written, so that a read copies stored text instead of rendering jsonb for every message.
--   Rows without it (written before this migration, or inserted by a tool that bypasses
--   write_message) are rendered on the fly by message_json_tail(); the server fills old rows
--   in batches after migrating.
-- * cardinal_id_hash: hash_64(cardinal_id(stream_name)), stored at write time, so that a
--   consumer-group member's read does not compute an MD5 for every row it passes.
-- * write_messages(): many writes in one call and one transaction (the server's group commit),
--   each with exactly write_message's semantics and an outcome of its own.
--
-- Both columns are nullable and added at the end of the table: nothing that Message DB clients
-- read or write changes (they name their columns; the `message` row type is unchanged).

ALTER TABLE {{schema}}.messages ADD COLUMN IF NOT EXISTS wire_json text;
ALTER TABLE {{schema}}.messages ADD COLUMN IF NOT EXISTS cardinal_id_hash bigint;

-- RFC 3339 in UTC with the fraction's trailing zeros (and a bare dot) removed:
-- 2024-01-15T10:30:00.12345Z, 2024-01-15T10:30:00Z. to_char with these patterns does not
-- depend on the session's DateStyle or locale.
CREATE OR REPLACE FUNCTION {{schema}}.rfc3339(t timestamp)
RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT rtrim(rtrim(to_char($1, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z' $$;

-- The wire_json text of a message; data and metadata are JSON text (NULL metadata is null).
CREATE OR REPLACE FUNCTION {{schema}}.message_json_tail(
    "type" text,
    "position" bigint,
    global_position bigint,
    data text,
    metadata text,
    "time" timestamp
)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT to_json($1)::text || ',' || $2 || ',' || $3 || ',' || coalesce($4, '{}') || ','
        || coalesce($5, 'null') || ',"' || {{schema}}.rfc3339($6) || '"'
$$;

-- Message DB's write_message, unchanged in behaviour, now also storing the two columns above.
-- Every committed write still sends one NOTIFY on channel `eventodb` so that servers in other
-- processes can poke their subscribers: {"s": schema, "g": global position, "p": position,
-- "n": stream name}. NOTIFY payloads must stay below 8000 bytes, so "n" is null for very long
-- stream names and the listener looks the name up by global position.
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
    _time timestamp := now() AT TIME ZONE 'utc';
BEGIN
    -- Like Message DB: a malformed id fails first, whatever the expected version.
    _message_id := uuid(write_message.id);

    PERFORM {{schema}}.acquire_lock(write_message.stream_name);
    -- The insert's own table lock, taken before the version is read and the global position
    -- drawn (see write_messages): an import running now is waited for, not collided with.
    LOCK TABLE {{schema}}.messages IN ROW EXCLUSIVE MODE;

    -- A fresh snapshot (this function is VOLATILE), taken after the lock: sees every write
    -- committed before we got it.
    _stream_version := coalesce({{schema}}.stream_version(write_message.stream_name), -1);

    IF write_message.expected_version IS NOT NULL
            AND write_message.expected_version <> _stream_version THEN
        -- Default SQLSTATE P0001; clients recognise the conflict by this text.
        RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
            write_message.expected_version, write_message.stream_name, _stream_version;
    END IF;

    _next_position := _stream_version + 1;
    _global_position := nextval('{{schema}}.messages_global_position_seq');

    INSERT INTO {{schema}}.messages (
        id, stream_name, position, global_position, type, data, metadata, time,
        wire_json, cardinal_id_hash
    )
    VALUES (
        _message_id,
        write_message.stream_name,
        _next_position,
        _global_position,
        write_message.type,
        write_message.data,
        write_message.metadata,
        _time,
        {{schema}}.message_json_tail(
            write_message.type, _next_position, _global_position,
            write_message.data::text, write_message.metadata::text, _time),
        {{schema}}.hash_64({{schema}}.cardinal_id(write_message.stream_name))
    );

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

-- Group commit: write many messages in one transaction. Item i is written exactly as
-- write_message would write it (the same lock, the same version check, seeing the batch's
-- earlier items), except that a failing item does not fail the others: each item gets an
-- outcome row, in input order:
--
--   outcome 'ok'        position and global_position of the new message
--   outcome 'conflict'  nothing written; position = the stream's actual version
--   outcome 'duplicate' nothing written; a message with this id already exists
--   outcome 'busy'      nothing written; with wait = false, another transaction held the
--                       category's lock (the caller writes the item again, waiting for it)
--
-- data/metadata are the JSON texts the server returns to readers (kept in wire_json as given);
-- data_jsonb/metadata_jsonb, when not NULL, are what the jsonb columns store instead (the server
-- spells big floats differently for jsonb, which would otherwise print 1e+300 as an integer).
--
-- Locks: every category's advisory lock (write_message's key) is taken up front in ascending
-- key order, so two batches — or a batch and a write_message caller, who holds one lock — never
-- wait for each other in a cycle. With wait = false a lock held elsewhere (a SQL client's long
-- transaction, another server process) is not waited for: its items come back 'busy' and the
-- rest of the batch goes on, so one held category cannot stall the writes of every other
-- category queued behind that batch. One NOTIFY for the whole batch: {"s": schema, "g": [global
-- positions], "p": [positions], "n": [stream names]} of the items written; "p" and "n" are left
-- out when the payload would not fit in 8000 bytes (listeners then look them up).
CREATE OR REPLACE FUNCTION {{schema}}.write_messages(
    ids uuid[],
    stream_names text[],
    types text[],
    data text[],
    metadata text[],
    data_jsonb text[],
    metadata_jsonb text[],
    expected_versions bigint[],
    wait boolean DEFAULT true
)
RETURNS TABLE (outcome text, "position" bigint, global_position bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _i integer;
    _key bigint;
    _version bigint;
    _global bigint;
    _time timestamp := now() AT TIME ZONE 'utc';
    _written bigint[] := '{}';
    _positions bigint[] := '{}';
    _names text[] := '{}';
    _note text;
    _busy bigint[] := '{}';
BEGIN
    FOR _key IN
        SELECT DISTINCT {{schema}}.hash_64({{schema}}.category(s)) AS k
        FROM unnest(write_messages.stream_names) AS s
        ORDER BY k
    LOOP
        IF write_messages.wait THEN
            PERFORM pg_advisory_xact_lock(_key);
        ELSIF NOT pg_try_advisory_xact_lock(_key) THEN
            _busy := _busy || _key;
        END IF;
    END LOOP;
    -- The table lock the inserts need, taken now: an import holds a lock that excludes it
    -- while it places messages at global positions of its own and then raises the sequence.
    -- Waiting for it here, before any version is read or global position drawn, makes the
    -- batch see the imported messages and draw positions after them (drawn earlier, a
    -- position could be one the import is placing, and the insert would fail).
    LOCK TABLE {{schema}}.messages IN ROW EXCLUSIVE MODE;

    FOR _i IN 1 .. coalesce(array_length(write_messages.ids, 1), 0) LOOP
        IF cardinality(_busy) > 0 AND {{schema}}.hash_64(
                {{schema}}.category(write_messages.stream_names[_i])) = ANY (_busy) THEN
            outcome := 'busy';
            "position" := NULL;
            global_position := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF EXISTS (SELECT 1 FROM {{schema}}.messages m WHERE m.id = write_messages.ids[_i]) THEN
            outcome := 'duplicate';
            "position" := NULL;
            global_position := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        _version := coalesce(
            (SELECT max(m.position) FROM {{schema}}.messages m
             WHERE m.stream_name = write_messages.stream_names[_i]),
            -1);

        IF write_messages.expected_versions[_i] IS NOT NULL
                AND write_messages.expected_versions[_i] <> _version THEN
            outcome := 'conflict';
            "position" := _version;
            global_position := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        _global := nextval('{{schema}}.messages_global_position_seq');
        INSERT INTO {{schema}}.messages (
            id, stream_name, position, global_position, type, data, metadata, time,
            wire_json, cardinal_id_hash
        )
        VALUES (
            write_messages.ids[_i],
            write_messages.stream_names[_i],
            _version + 1,
            _global,
            write_messages.types[_i],
            coalesce(write_messages.data_jsonb[_i], write_messages.data[_i])::jsonb,
            coalesce(write_messages.metadata_jsonb[_i], write_messages.metadata[_i])::jsonb,
            _time,
            {{schema}}.message_json_tail(
                write_messages.types[_i], _version + 1, _global,
                write_messages.data[_i], write_messages.metadata[_i], _time),
            {{schema}}.hash_64({{schema}}.cardinal_id(write_messages.stream_names[_i]))
        );
        _written := _written || _global;
        _positions := _positions || (_version + 1);
        _names := _names || write_messages.stream_names[_i];
        outcome := 'ok';
        "position" := _version + 1;
        global_position := _global;
        RETURN NEXT;
    END LOOP;

    IF cardinality(_written) > 0 THEN
        _note := json_build_object(
            's', {{schema_literal}}, 'g', _written, 'p', _positions, 'n', _names)::text;
        IF octet_length(_note) > 7900 THEN
            _note := json_build_object('s', {{schema_literal}}, 'g', _written)::text;
        END IF;
        PERFORM pg_notify('eventodb', _note);
    END IF;
END;
$$;

-- Message DB's get_category_messages, reading the stored consumer-group hash where there is one
-- (same results: cardinal_id_hash is hash_64(cardinal_id(stream_name)) by construction).
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
            || ' AND mod(@ coalesce(cardinal_id_hash,'
            || ' {{schema}}.hash_64({{schema}}.cardinal_id(stream_name))), $6) = $5';
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
