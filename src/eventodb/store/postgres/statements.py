"""The SQL of the Postgres backend: names and quoting, the registry's statements and those run
on a namespace schema.

The counterpart of :mod:`eventodb.store.sqlite.statements`, statement for statement where the
two backends do the same thing. The rules that keep a namespace id from ever breaking out of its
identifier sit here, in one small, testable place.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from eventodb.core.errors import BackendError

REGISTRY_SCHEMA = "eventodb_store"
NAMESPACES = f"{REGISTRY_SCHEMA}.namespaces"
"""The registry table."""
NOTIFY_CHANNEL = "eventodb"
"""Channel of the NOTIFY sent by ``write_message`` (see migration 003)."""
REGISTRY_CHANNEL = "eventodb_registry"
"""Channel of the registry trigger (``migrations/postgres/registry/002_registry_notify.sql``)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_SAFE_SCHEMA = re.compile(r"[A-Za-z0-9_]+")


def is_safe_schema_name(schema: str) -> bool:
    """Whether ``schema`` is a name this backend would create: only ``[A-Za-z0-9_]``.

    Quoting alone would be safe too; refusing other names is belt and braces for names that
    arrive from a registry or a URL written by someone else.
    """
    return _SAFE_SCHEMA.fullmatch(schema) is not None


def check_schema_name(schema: str) -> None:
    """Raises: BackendError for names we would not quote (only ``[A-Za-z0-9_]``)."""
    if not is_safe_schema_name(schema):
        raise BackendError(f"unsupported schema name {schema!r}: use letters, digits and _")


def schema_name(namespace: str) -> str:
    """``eventodb_`` + the id with every code point outside ``[A-Za-z0-9_]`` replaced by ``_``.

    Identical to upstream, so upstream databases keep working.
    """
    return "eventodb_" + _UNSAFE.sub("_", namespace)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render(sql: str, schema: str) -> str:
    """Fill a namespace migration's ``{{schema}}`` / ``{{schema_literal}}`` placeholders.

    Raises:
        ValueError: ``schema`` is not a name this backend creates (:func:`is_safe_schema_name`).
    """
    if not is_safe_schema_name(schema):
        raise ValueError(f"unsafe schema name {schema!r}")
    return sql.replace("{{schema}}", quote_ident(schema)).replace(
        "{{schema_literal}}", quote_literal(schema)
    )


def redact(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (URL or ``key=value`` form)."""
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            password = parts.password
        except ValueError:
            return re.sub(r":[^:@/]*@", ":***@", dsn)
        if password is None:
            return dsn
        user, _, host = parts.netloc.rpartition("@")
        name = user.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


# -- the registry (eventodb_store.namespaces) ----------------------------------------------------

COUNT_NAMESPACES = f"SELECT count(*) FROM {NAMESPACES}"
GET_NAMESPACE = (
    f"SELECT id, token_hash, description, created_at, schema_name FROM {NAMESPACES} WHERE id = $1"
)
LIST_NAMESPACES = (
    f"SELECT id, token_hash, description, created_at FROM {NAMESPACES}"
    ' ORDER BY created_at DESC, id COLLATE "C"'
)
SCHEMA_OF = f"SELECT schema_name FROM {NAMESPACES} WHERE id = $1"
SCHEMAS = f"SELECT id, schema_name FROM {NAMESPACES}"
NAMESPACE_OF_SCHEMA = f"SELECT id FROM {NAMESPACES} WHERE schema_name = $1"
TOKEN_HASHES = f"SELECT id, token_hash FROM {NAMESPACES} WHERE id = ANY($1::text[])"
SET_TOKEN_HASH = f"UPDATE {NAMESPACES} SET token_hash = $1 WHERE id = $2"
NAMESPACE_OR_SCHEMA_TAKEN = f"SELECT 1 FROM {NAMESPACES} WHERE id = $1 OR schema_name = $2"
INSERT_NAMESPACE = (
    f"INSERT INTO {NAMESPACES} (id, token_hash, schema_name, description, created_at, metadata)"
    " VALUES ($1, $2, $3, $4, $5, '{}')"
)
LOCK_NAMESPACE = f"SELECT schema_name FROM {NAMESPACES} WHERE id = $1 FOR UPDATE"
"""The namespace's row, locked until the end of the transaction; its schema."""
DELETE_NAMESPACE = f"DELETE FROM {NAMESPACES} WHERE id = $1"
SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = $1"

# -- a namespace schema -------------------------------------------------------------------------

_COLUMNS = (
    "id::text, stream_name, type, position, global_position, data::text, metadata::text, time"
)
_CATEGORY = "split_part(stream_name, '-', 1)"
"""category(stream_name), spelled like the messages_category index so the planner uses it."""


def _category_order(category: bool) -> str:
    """The ORDER BY of a category read: the messages_category index's own order.

    The store prepares each statement once per connection, and its connections make Postgres
    plan each once, without the values (``SESSION_SETUP`` in ``eventodb.store.postgres.pool``):
    the generic plan. Left to itself, Postgres plans the first five executions for their
    values, then keeps the generic plan unless it looks costlier. A category read should scan
    the category's index range from (category, position) and stop after ``LIMIT`` matches; two
    shapes of the query kept plans from it (tests/store/postgres/test_query_plans.py):

    * ``category = $n ORDER BY global_position``: the generic plan walks the primary key and
      keeps the category's rows, so a read of a category far into the table read every row
      before it (a consumer-group read behind 260,000 messages: 160 ms instead of 0.4). Hence
      the order by (category, global_position), with the category as a range holding its one
      value (the same rows as ``=``: text comparisons tie only on equal strings), which only
      the category index yields without a sort: the generic plan scans it, in every case tried.
    * An equality on an expression without statistics (the consumer-group hash, the type of
      the correlation) is estimated to keep 0.5 % of the rows, two of them 0.0025 %; a plan
      made for given values then expected fewer rows than the ``LIMIT`` and read the
      category's whole remaining range and sorted it (6-450 ms instead of about 1 ms for 100
      messages read from the middle of a big category). Inside one function call,
      ``booleq(<tests>, true)`` (the same tests), Postgres estimates them to keep a third.

    Plans made for given values (outside the server) may still go wrong: Postgres prices a
    scan of a range of categories as reading all of it, so such a plan for a read that starts
    close to the end of the table may scan the table's end by primary key and sort it (7-112
    ms instead of 1-21 ms in a reviewer's runs, with a correlation).
    """
    if category:
        return f"ORDER BY {_CATEGORY}, global_position"
    return "ORDER BY global_position"


def _json_array(element: str, order: str, source: str) -> str:
    """A query whose one row is the JSON array of ``element`` over the rows of ``source`` and
    the number of elements.

    ``element`` is the text of one array element after its leading ``["``: the message's id
    followed by the rest (see ``_stream_element``); the elements are joined in ``order``.
    """
    return (
        "SELECT coalesce('[[\"' || string_agg(e, '],[\"' ORDER BY o) || ']]', '[]'), count(*)"
        f" FROM (SELECT {element} AS e, {order} AS o FROM {source}) m"
    )


_PARAMETER = re.compile(r"\$(\d+)")


def _for_each(statement: str, types: tuple[str, ...]) -> str:
    """``statement`` run once per element of parameter arrays, its rows in array order.

    Parameter ``$n`` of ``statement`` becomes the n-th array, of ``types[n - 1]``: one
    round trip answers many reads, each planned as if alone (a lateral subquery per element,
    its index scan parameterised by the element). ``statement`` must hold no ``$`` other than
    its parameters (no string literal with one).
    """
    highest = max(int(n) for n in _PARAMETER.findall(statement))
    if highest != len(types):
        raise ValueError(f"{highest} parameters, {len(types)} types")
    arrays = ", ".join(f"${n}::{t}[]" for n, t in enumerate(types, 1))
    columns = ", ".join(f"p{n}" for n in range(1, len(types) + 1))
    body = _PARAMETER.sub(lambda m: f"batch_read.p{m.group(1)}", statement)
    return (
        f"SELECT r.* FROM unnest({arrays}) WITH ORDINALITY AS batch_read({columns}, item)"
        f" CROSS JOIN LATERAL ({body}) r ORDER BY batch_read.item"
    )


class NamespaceSQL:
    """The statements the server runs against one namespace schema, built once per namespace.

    Writes go through ``write_messages`` (namespace migration 004: group commit with
    ``write_message``'s semantics and lock), so SQL clients and servers serialise on the same
    advisory locks. Reads use the server's own SQL, which has the RPC semantics (docs/API.md)
    rather than Message DB's validation, and returns the response body itself: the JSON array
    of messages, built from the ``wire_json`` text each message got when it was written.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._category_reads: dict[tuple[bool, bool, bool], str] = {}
        self._category_positions: dict[tuple[bool, bool], str] = {}
        self._category_reads_batched: dict[tuple[bool, bool], str] = {}
        s = quote_ident(schema)
        self.messages = f"{s}.messages"
        seq = f"{s}.messages_global_position_seq"
        self.write_batch = (
            f"SELECT outcome, position, global_position FROM {s}.write_messages("
            "$1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
            " $8::bigint[], $9::boolean)"
        )
        # Rows written before migration 004 (and not yet filled in) are rendered on the fly.
        tail = (
            f"coalesce(wire_json, {s}.message_json_tail("
            "type, position, global_position, data::text, metadata::text, time))"
        )
        self._stream_element = f"id::text || '\",' || {tail}"
        self._category_element = f"id::text || '\",' || to_json(stream_name)::text || ',' || {tail}"
        self.by_id = f"SELECT {_COLUMNS} FROM {s}.messages WHERE id = $1::uuid"
        self.written = (
            f"SELECT stream_name, position, global_position FROM {s}.messages"
            " WHERE global_position = ANY($1::bigint[]) ORDER BY global_position"
        )
        self.read_stream = _json_array(
            self._stream_element,
            "position",
            f"{s}.messages WHERE stream_name = $1 AND position >= $2 ORDER BY position LIMIT $3",
        )
        # Many stream reads in one statement (PostgresStore._read_together): one row each.
        self.read_streams = _for_each(self.read_stream, ("text", "bigint", "bigint"))
        self.read_stream_global = _json_array(
            self._stream_element,
            "position",
            f"{s}.messages WHERE stream_name = $1 AND global_position >= $2"
            " ORDER BY position LIMIT $3",
        )
        self.last = (
            f"SELECT '[\"' || {self._stream_element} || ']' FROM {s}.messages"
            " WHERE stream_name = $1 ORDER BY position DESC LIMIT 1"
        )
        self.last_of_type = (
            f"SELECT '[\"' || {self._stream_element} || ']' FROM {s}.messages"
            " WHERE stream_name = $1 AND type = $2 ORDER BY position DESC LIMIT 1"
        )
        self.stream_positions = (
            f"SELECT stream_name, position, global_position FROM {s}.messages"
            " WHERE stream_name = $1 AND position >= $2 ORDER BY position LIMIT $3"
        )
        self.version = f"SELECT max(position) FROM {s}.messages WHERE stream_name = $1"
        # Code-point order and literal prefixes on every backend: the "C" collation.
        self.list_streams = (
            f"SELECT stream_name, max(position), max(time) FROM {s}.messages"
            ' WHERE stream_name COLLATE "C" > $1 AND starts_with(stream_name COLLATE "C", $2)'
            ' GROUP BY stream_name ORDER BY stream_name COLLATE "C" LIMIT $3'
        )
        self.list_categories = (
            f'SELECT {_CATEGORY} COLLATE "C" AS category, count(DISTINCT stream_name), count(*)'
            f" FROM {s}.messages GROUP BY 1 ORDER BY 1"
        )
        self.stats = f"SELECT count(*), count(DISTINCT stream_name), max(time) FROM {s}.messages"
        # The settled head (PostgresStore.settled_head). head_start: the last committed message
        # (in the statement's snapshot, taken before the sequence is read, so a committed
        # position drawn from the sequence is never above the last one drawn), the last global
        # position drawn, and how many values a session draws ahead (CACHE); writers_in_flight:
        # the transactions that may have drawn a position and not ended (every write takes a
        # lock on the table that lets it insert before it draws: write_message, write_messages,
        # imports, a plain INSERT; prepared transactions have no pid).
        self.head_start = (
            f"SELECT (SELECT coalesce(max(global_position), 0) FROM {s}.messages),"
            f" (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {seq}),"
            f" (SELECT seqcache FROM pg_sequence WHERE seqrelid = {quote_literal(seq)}::regclass)"
        )
        self.writers_in_flight = (
            "SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks"
            f" WHERE locktype = 'relation' AND relation = {quote_literal(self.messages)}::regclass"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND granted AND mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock',"
            " 'ExclusiveLock', 'AccessExclusiveLock') AND pid IS DISTINCT FROM pg_backend_pid()"
            " AND ($1::text[] IS NULL OR virtualtransaction = ANY ($1::text[]))"
        )
        self.last_at_or_below = (
            f"SELECT coalesce(max(global_position), 0) FROM {s}.messages"
            " WHERE global_position <= $1"
        )
        self.count = f"SELECT count(*) FROM {s}.messages"
        self.lock_exclusive = f"LOCK TABLE {s}.messages IN ACCESS EXCLUSIVE MODE"
        self.create_schema = f"CREATE SCHEMA {s}"
        self.drop_schema = f"DROP SCHEMA IF EXISTS {s} CASCADE"
        # Blocks concurrent inserts (ROW EXCLUSIVE) but not reads, so no writer draws a global
        # position while an import is placing its own.
        self.lock_for_import = f"LOCK TABLE {s}.messages IN SHARE ROW EXCLUSIVE MODE"
        self.truncate = f"TRUNCATE {s}.messages RESTART IDENTITY"
        self.import_rows = (
            f"INSERT INTO {s}.messages (id, stream_name, type, position, global_position, data,"
            " metadata, time, wire_json, cardinal_id_hash)"
            " SELECT i, s, t, p, g, coalesce(dj, d)::jsonb, coalesce(mj, md)::jsonb, tm,"
            f" {s}.message_json_tail(t, p, g, d, md, tm), {s}.hash_64({s}.cardinal_id(s))"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],"
            " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]::timestamp[])"
            " AS r(i, s, t, p, g, d, md, dj, mj, tm)"
        )
        # Never lower the sequence: move it only when the import went past it.
        self.raise_sequence = (
            f"SELECT setval({quote_literal(seq)}, $1::bigint, true) FROM {seq}"
            " WHERE $1::bigint >= CASE WHEN is_called THEN last_value::numeric + 1"
            " ELSE last_value END"
        )
        # The rows an import collides with: one index probe per key, not one test per row
        # of the table (the three conditions joined with OR were read by scanning it all).
        found = (
            f"SELECT m.global_position, m.id::text, m.stream_name, m.position FROM {s}.messages m"
        )
        self.collisions = (
            f"{found} WHERE m.global_position = ANY($1::bigint[])"
            f" UNION ALL {found} WHERE m.id = ANY($2::uuid[])"
            f" UNION ALL {found} JOIN unnest($3::text[], $4::bigint[]) AS k(s, p)"
            " ON m.stream_name = k.s AND m.position = k.p"
        )
        # Fills the fast-path columns of rows written before migration 004, a range at a time.
        self.unfilled_range = (
            f"SELECT min(global_position), max(global_position), count(*) FROM {s}.messages"
            " WHERE wire_json IS NULL"
        )
        self.fill = (
            f"UPDATE {s}.messages SET wire_json = {s}.message_json_tail("
            "type, position, global_position, data::text, metadata::text, time),"
            f" cardinal_id_hash = {s}.hash_64({s}.cardinal_id(stream_name))"
            " WHERE global_position >= $1 AND global_position < $2 AND wire_json IS NULL"
        )

    def read_category_batched(self, category: bool, consumer_group: bool) -> str:
        """Many category reads without correlation in one statement: ``read_category``'s
        parameters as arrays, one row per read (``PostgresStore._read_together``)."""
        key = (category, consumer_group)
        sql = self._category_reads_batched.get(key)
        if sql is None:
            types: tuple[str, ...] = ("bigint", "bigint")  # position, limit
            types += ("text",) * category + ("bigint", "bigint") * consumer_group
            one = self.read_category(category, False, consumer_group)
            sql = self._category_reads_batched[key] = _for_each(one, types)
        return sql

    def read_category(self, category: bool, correlation: bool, consumer_group: bool) -> str:
        """Category read; parameters $1 position, $2 limit, then category, correlation, group."""
        key = (category, correlation, consumer_group)
        sql = self._category_reads.get(key)
        if sql is None:
            sql = self._category_reads[key] = _json_array(
                self._category_element,
                "global_position",
                f"{self.messages} WHERE {self._category_filter(*key)}"
                f" {_category_order(category)} LIMIT $2",
            )
        return sql

    def category_positions(self, category: bool, consumer_group: bool) -> str:
        """Where a category read's messages are: same parameters, without correlation."""
        key = (category, consumer_group)
        sql = self._category_positions.get(key)
        if sql is None:
            sql = self._category_positions[key] = (
                f"SELECT stream_name, position, global_position FROM {self.messages}"
                f" WHERE {self._category_filter(category, False, consumer_group)}"
                f" {_category_order(category)} LIMIT $2"
            )
        return sql

    def _category_filter(self, category: bool, correlation: bool, consumer_group: bool) -> str:
        s = quote_ident(self.schema)
        where = ["global_position >= $1"]
        n = 2
        if category:
            n += 1
            # A range that holds one value rather than "=": see _category_order.
            where.append(f"{_CATEGORY} >= ${n} AND {_CATEGORY} <= ${n}")
        # Tests on expressions without statistics, in one call: see _category_order.
        unestimated: list[str] = []
        if correlation:
            n += 1
            # Only string values count: SQLite's ->> yields numbers and booleans as non-text,
            # which never equal a correlation (a correlation is the category of a stream name).
            unestimated.append("jsonb_typeof(metadata -> 'correlationStreamName') = 'string'")
            # The category index holds this one (with statistics): a plain "=".
            where.append(f"split_part(metadata ->> 'correlationStreamName', '-', 1) = ${n}")
        if consumer_group:
            # The hash stored at write time; computed for rows that predate it.
            stored_hash = f"coalesce(cardinal_id_hash, {s}.hash_64({s}.cardinal_id(stream_name)))"
            unestimated.append(f"mod(@ {stored_hash}, ${n + 1}) = ${n + 2}")
        if unestimated:
            where.append(f"booleq({' AND '.join(unestimated)}, true)")
        return " AND ".join(where)
