"""The SQL of the SQLite backend: the registry's statements and those run on a namespace database.

The counterpart of :mod:`eventodb.store.postgres.statements`, statement for statement where the
two backends do the same thing. A namespace is a database of its own here, so its statements
are the same for every namespace (Postgres builds them per schema). Parameters are ``?`` in
the order each statement's comment gives.
"""

from __future__ import annotations

from functools import cache

# -- the registry (metadata.db) -----------------------------------------------------------------

COUNT_NAMESPACES = "SELECT count(*) FROM namespaces"
GET_NAMESPACE = "SELECT id, token_hash, description, created_at FROM namespaces WHERE id = ?"
LIST_NAMESPACES = (
    "SELECT id, token_hash, description, created_at FROM namespaces ORDER BY created_at DESC, id"
)
NAMESPACE_EXISTS = "SELECT 1 FROM namespaces WHERE id = ?"
DB_PATH = "SELECT db_path FROM namespaces WHERE id = ?"
DB_PATHS = "SELECT db_path FROM namespaces"
SET_TOKEN_HASH = "UPDATE namespaces SET token_hash = ? WHERE id = ?"
"""token hash, namespace."""
INSERT_NAMESPACE = (
    "INSERT INTO namespaces (id, token_hash, db_path, description, created_at, metadata)"
    " VALUES (?, ?, ?, ?, ?, '{}')"
)
DELETE_NAMESPACE = "DELETE FROM namespaces WHERE id = ?"

# -- a namespace database -----------------------------------------------------------------------

COLUMNS = "id, stream_name, type, position, global_position, data, metadata, time"
"""The columns of a :class:`~eventodb.store.base.Message`, in its field order."""


def _category_of(expr: str) -> str:
    return (
        f"(CASE WHEN instr({expr}, '-') > 0 THEN substr({expr}, 1, instr({expr}, '-') - 1) "
        f"ELSE {expr} END)"
    )


_CATEGORY = _category_of("stream_name")
"""category(stream_name), spelled like the messages_category index so SQLite uses it."""
_CORRELATION_CATEGORY = _category_of("(metadata ->> '$.correlationStreamName')")


def _render_wire_json(
    type: str, position: str, global_position: str, data: str, metadata: str, time: str
) -> str:
    """SQL rendering the message as RPC responses show it from `type` on (namespace migration
    004): the JSON text `"type",position,global_position,data,metadata,"time"`, with ``time``
    (Unix microseconds) in RFC 3339 without trailing zeros in the fraction. The arguments are
    SQL operands (columns or parameters). Floor division keeps times before 1970 exact.
    """
    micros = f"((({time}) % 1000000) + 1000000) % 1000000"
    return (
        f"json_quote({type}) || ',' || {position} || ',' || {global_position} || ','"
        f" || coalesce({data}, '{{}}') || ',' || coalesce({metadata}, 'null') || ',\"'"
        f" || strftime('%Y-%m-%dT%H:%M:%S', (({time}) - {micros}) / 1000000, 'unixepoch')"
        f" || rtrim(rtrim('.' || printf('%06d', {micros}), '0'), '.') || 'Z\"'"
    )


RENDERED_WIRE_JSON = _render_wire_json(
    "type", "position", "global_position", "data", "metadata", "time"
)
# Stored for everything the server writes; rendered for rows another program inserted.
_WIRE_JSON = f"coalesce(wire_json, {RENDERED_WIRE_JSON})"
_CARDINAL_HASH = "coalesce(cardinal_id_hash, eventodb_cardinal_hash(stream_name))"
_STREAM_ELEMENT = f"id || '\",' || {_WIRE_JSON}"
_CATEGORY_ELEMENT = f"id || '\",' || json_quote(stream_name) || ',' || {_WIRE_JSON}"


def _json_array(element: str, source: str) -> str:
    """A query whose one row is the JSON array of ``element`` over the rows of ``source`` and
    the number of elements.

    ``element`` is one array element after its leading ``["``. SQLite's group_concat takes
    the rows in the order the subquery delivers them.
    """
    return (
        "SELECT coalesce('[[\"' || group_concat(e, '],[\"') || ']]', '[]'), count(*)"
        f" FROM (SELECT {element} AS e FROM {source})"
    )


NEXT_GLOBAL_POSITION = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),"
    " coalesce((SELECT max(global_position) FROM messages), 0)) + 1"
)
"""The global position AUTOINCREMENT would give the next message: a write takes it itself, so
that one INSERT stores the message with its wire_json."""
WRITE = (
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata,"
    " time, cardinal_id_hash, wire_json)"
    " VALUES (:id, :stream, :type, :position, :global, :data, :metadata, :time, :hash,"
    f" {_render_wire_json(':type', ':position', ':global', ':data', ':metadata', ':time')})"
)
"""One message; named parameters. Runs after the id and version checks, in the same
transaction (the namespace's one writer makes check and insert atomic)."""
BY_ID = f"SELECT {COLUMNS} FROM messages WHERE id = ?"
VERSION = "SELECT max(position) FROM messages WHERE stream_name = ?"

READ_STREAM = _json_array(
    _STREAM_ELEMENT,
    "messages WHERE stream_name = ? AND position >= ? ORDER BY position LIMIT ?",
)
"""stream name, position, limit (-1: none)."""
READ_STREAM_GLOBAL = _json_array(
    _STREAM_ELEMENT,
    "messages WHERE stream_name = ? AND global_position >= ? ORDER BY position LIMIT ?",
)
"""stream name, global position, limit."""
LAST = (
    f"SELECT '[\"' || {_STREAM_ELEMENT} || ']' FROM messages WHERE stream_name = ?"
    " ORDER BY position DESC LIMIT 1"
)
LAST_OF_TYPE = (
    f"SELECT '[\"' || {_STREAM_ELEMENT} || ']' FROM messages WHERE stream_name = ? AND type = ?"
    " ORDER BY position DESC LIMIT 1"
)
STREAM_POSITIONS = (
    "SELECT stream_name, position, global_position FROM messages"
    " WHERE stream_name = ? AND position >= ? ORDER BY position LIMIT ?"
)
LIST_STREAMS = (
    "SELECT stream_name, max(position), max(time) FROM messages"
    " WHERE stream_name > ? AND stream_name >= ? AND substr(stream_name, 1, ?) = ?"
    " GROUP BY stream_name ORDER BY stream_name LIMIT ?"
)
"""cursor, prefix, length of the prefix, prefix, limit: code-point order (SQLite's binary
collation) and a literal prefix."""
LIST_CATEGORIES = (
    f"SELECT {_CATEGORY} AS category, count(DISTINCT stream_name), count(*)"
    " FROM messages GROUP BY category ORDER BY category"
)
STATS = "SELECT count(*), count(DISTINCT stream_name), max(time) FROM messages"
COUNT = "SELECT count(*) FROM messages"
HEAD = "SELECT coalesce(max(global_position), 0) FROM messages"
CLEAR = "DELETE FROM messages"
RESTART_GLOBAL_POSITIONS = "DELETE FROM sqlite_sequence WHERE name = 'messages'"
IMPORT_ROWS = (
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata,"
    " time, cardinal_id_hash, wire_json)"
    f" SELECT i, s, t, p, g, d, md, tm, h, {_render_wire_json('t', 'p', 'g', 'd', 'md', 'tm')}"
    " FROM (SELECT value ->> 0 AS i, value ->> 1 AS s, value ->> 2 AS t, value ->> 3 AS p,"
    " value ->> 4 AS g, value ->> 5 AS d, value ->> 6 AS md, value ->> 7 AS tm,"
    " value ->> 8 AS h FROM json_each(?) ORDER BY key)"
)
"""Many messages in one statement: one JSON array of ``[id, stream, type, position,
global_position, data, metadata, time, cardinal_id_hash]`` rows, ``data``/``metadata`` as JSON
strings holding their text. SQLite unpacks and inserts them without calling back into Python,
so the writer thread runs the whole batch without the GIL while the event loop parses the next
one (one :data:`IMPORT_ONE` per row needs the GIL for every row). ``ORDER BY key`` keeps the
array's order and stops SQLite from folding the subquery into the outer SELECT, where every
``->>`` would be evaluated once per use (the rendering uses most columns twice)."""
IMPORT_ONE = (
    "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata,"
    " time, cardinal_id_hash, wire_json)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, eventodb_cardinal_hash(?2),"
    f" {_render_wire_json('?3', '?4', '?5', '?6', '?7', '?8')})"
)
"""One message with its own positions (the columns of :data:`COLUMNS`), stored with its
fast-path columns in the same INSERT: what names the record that makes a batch collide."""

UNFILLED_RANGE = (
    "SELECT min(global_position), max(global_position), count(*) FROM messages"
    " WHERE wire_json IS NULL"
)
FILL = (
    f"UPDATE messages SET wire_json = {RENDERED_WIRE_JSON},"
    " cardinal_id_hash = eventodb_cardinal_hash(stream_name)"
    " WHERE global_position >= ? AND global_position < ? AND wire_json IS NULL"
)
"""Fills the fast-path columns of rows without them (written before migration 004, or by
another program), global positions from the first parameter up to below the second."""


@cache
def read_category(category: bool, correlation: bool, consumer_group: bool) -> str:
    """Category read; parameters: [category], position, [correlation], [group size, member],
    limit."""
    return _json_array(
        _CATEGORY_ELEMENT,
        f"messages WHERE {_category_filter(category, correlation, consumer_group)}"
        " ORDER BY global_position LIMIT ?",
    )


@cache
def category_positions(category: bool, consumer_group: bool) -> str:
    """Where a category read's messages are: same parameters, without correlation."""
    return (
        "SELECT stream_name, position, global_position FROM messages"
        f" WHERE {_category_filter(category, False, consumer_group)}"
        " ORDER BY global_position LIMIT ?"
    )


def _category_filter(category: bool, correlation: bool, consumer_group: bool) -> str:
    where = ["global_position >= ?"]
    if category:
        where.insert(0, f"{_CATEGORY} = ?")
    if correlation:
        where.append(f"{_CORRELATION_CATEGORY} = ?")
    if consumer_group:
        where.append(f"abs({_CARDINAL_HASH}) % ? = ?")
    return " AND ".join(where)
