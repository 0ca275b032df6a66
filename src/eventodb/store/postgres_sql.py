"""Names, quoting and the per-namespace SQL of the Postgres backend.

Kept apart from :mod:`eventodb.store.postgres` so the rules that keep a namespace id from ever
breaking out of its identifier sit in one small, testable place.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REGISTRY_SCHEMA = "eventodb_store"
NOTIFY_CHANNEL = "eventodb"
"""Channel of the NOTIFY sent by ``write_message`` (see migration 003)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_SAFE_SCHEMA = re.compile(r"[A-Za-z0-9_]+")


def schema_name(namespace: str) -> str:
    """``eventodb_`` + the id with every code point outside ``[A-Za-z0-9_]`` replaced by ``_``.

    SPEC §8.2; identical to upstream, so upstream databases keep working.
    """
    return "eventodb_" + _UNSAFE.sub("_", namespace)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render(sql: str, schema: str) -> str:
    """Fill a namespace migration's ``{{schema}}`` / ``{{schema_literal}}`` placeholders.

    Raises:
        ValueError: ``schema`` is not a name this backend creates (only ``[A-Za-z0-9_]``).
            Quoting alone would be safe too; refusing is belt and braces for names that arrive
            from a registry written by someone else.
    """
    if not _SAFE_SCHEMA.fullmatch(schema):
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


_COLUMNS = (
    "id::text, stream_name, type, position, global_position, data::text, metadata::text, time"
)
_CATEGORY = "split_part(stream_name, '-', 1)"
"""category(stream_name), spelled like the messages_category index so the planner uses it."""


class NamespaceSQL:
    """The statements the server runs against one namespace schema, built once per namespace.

    Reads use the server's own SQL (the RPC semantics of SPEC §5.10 differ from Message DB's
    functions); writes go through ``write_message`` so SQL clients and servers share its lock.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._category_reads: dict[tuple[bool, bool, bool], str] = {}
        s = quote_ident(schema)
        self.messages = f"{s}.messages"
        seq = f"{s}.messages_global_position_seq"
        # write_message returns the position; currval (session-local) gives the global
        # position it drew. One round trip.
        self.write = (
            f"SELECT w.p, currval({quote_literal(seq)}) FROM "
            f"{s}.write_message($1, $2, $3, $4::jsonb, $5::jsonb, $6) AS w(p)"
        )
        # With a caller-given id: skip the call when the id exists (a retry, or a duplicate),
        # so no sequence value is burnt by a failing INSERT and global positions stay gapless
        # exactly as on SQLite. The condition does not depend on the function's row, so the
        # planner evaluates it once, before calling write_message.
        self.write_new_id = (
            self.write + f" WHERE NOT EXISTS (SELECT 1 FROM {s}.messages WHERE id = $1::uuid)"
        )
        self.by_id = f"SELECT {_COLUMNS} FROM {s}.messages WHERE id = $1::uuid"
        self.stream_name_at = f"SELECT stream_name FROM {s}.messages WHERE global_position = $1"
        self.read_stream = (
            f"SELECT {_COLUMNS} FROM {s}.messages WHERE stream_name = $1 AND position >= $2"
            " ORDER BY position LIMIT $3"
        )
        self.read_stream_global = (
            f"SELECT {_COLUMNS} FROM {s}.messages"
            " WHERE stream_name = $1 AND global_position >= $2 ORDER BY position LIMIT $3"
        )
        self.last = (
            f"SELECT {_COLUMNS} FROM {s}.messages WHERE stream_name = $1"
            " ORDER BY position DESC LIMIT 1"
        )
        self.last_of_type = (
            f"SELECT {_COLUMNS} FROM {s}.messages WHERE stream_name = $1 AND type = $2"
            " ORDER BY position DESC LIMIT 1"
        )
        self.version = f"SELECT max(position) FROM {s}.messages WHERE stream_name = $1"
        # Code-point order and literal prefixes on every backend (SPEC §13 Q19): "C" collation.
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
        self.count = f"SELECT count(*) FROM {s}.messages"
        self.lock_exclusive = f"LOCK TABLE {s}.messages IN ACCESS EXCLUSIVE MODE"
        # Blocks concurrent inserts (ROW EXCLUSIVE) but not reads, so no writer draws a global
        # position while an import is placing its own.
        self.lock_for_import = f"LOCK TABLE {s}.messages IN SHARE ROW EXCLUSIVE MODE"
        self.truncate = f"TRUNCATE {s}.messages RESTART IDENTITY"
        self.import_rows = (
            f"INSERT INTO {s}.messages"
            " (id, stream_name, type, position, global_position, data, metadata, time)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[],"
            " $5::bigint[], $6::jsonb[], $7::jsonb[], $8::timestamp[])"
        )
        # Never lower the sequence (SPEC §13 Q12): move it only when the import went past it.
        self.raise_sequence = (
            f"SELECT setval({quote_literal(seq)}, $1::bigint, true) FROM {seq}"
            " WHERE $1::bigint >= CASE WHEN is_called THEN last_value::numeric + 1"
            " ELSE last_value END"
        )
        self.collisions = (
            f"SELECT global_position, id::text, stream_name, position FROM {s}.messages"
            " WHERE global_position = ANY($1::bigint[]) OR id = ANY($2::uuid[])"
            " OR (stream_name, position) IN (SELECT * FROM unnest($3::text[], $4::bigint[]))"
        )

    def read_category(self, category: bool, correlation: bool, consumer_group: bool) -> str:
        """Category read; parameters $1 position, $2 limit, then category, correlation, group."""
        key = (category, correlation, consumer_group)
        sql = self._category_reads.get(key)
        if sql is None:
            sql = self._category_reads[key] = self._build_category_read(*key)
        return sql

    def _build_category_read(self, category: bool, correlation: bool, consumer_group: bool) -> str:
        s = quote_ident(self.schema)
        where = ["global_position >= $1"]
        n = 2
        if category:
            n += 1
            where.append(f"{_CATEGORY} = ${n}")
        if correlation:
            n += 1
            # Only string values count: SQLite's ->> yields numbers and booleans as non-text,
            # which never equal a correlation (SPEC §5.5 "as text" of a string).
            where.append(
                "jsonb_typeof(metadata -> 'correlationStreamName') = 'string'"
                f" AND split_part(metadata ->> 'correlationStreamName', '-', 1) = ${n}"
            )
        if consumer_group:
            where.append(f"abs({s}.hash_64({s}.cardinal_id(stream_name))) % ${n + 1} = ${n + 2}")
        return (
            f"SELECT {_COLUMNS} FROM {s}.messages WHERE {' AND '.join(where)}"
            " ORDER BY global_position LIMIT $2"
        )
