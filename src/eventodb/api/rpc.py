"""The RPC methods of ``POST /rpc`` (docs/API.md): argument checks, authorization, results.

Every method is ``async (services, caller namespace, args) -> JSON-able result``; :data:`METHODS`
is the one table of method names. Envelope handling (body, method name, error envelope) is in
:mod:`eventodb.api.app`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventodb import __version__
from eventodb.api import args as a
from eventodb.api.auth import DEFAULT_NAMESPACE, Authenticator, not_authorized
from eventodb.api.broker import Broker
from eventodb.api.health import Readiness
from eventodb.core import jsoncodec, timefmt, tokens, validation
from eventodb.core.errors import BackendError, InvalidArgument, NamespaceNotFound
from eventodb.store.base import ConsumerGroup, NamespaceStats, Store

log = logging.getLogger("eventodb.rpc")


@dataclass
class Services:
    """What the methods work with; one instance per server."""

    store: Store
    auth: Authenticator
    broker: Broker
    permissive_admin: bool = False
    """Upstream behaviour: any valid token may administer any namespace (docs/API.md, "Who may
    administer namespaces")."""
    in_flight: int = 0
    """HTTP requests being served right now (SSE streams included); ``sys.health`` reports it."""
    imports_running: int = 0
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(self.store, self.broker)


Method = Callable[[Services, str, list[Any]], Awaitable[Any]]


# -- streams and categories -------------------------------------------------------------------


def _require(args: list[Any], count: int, message: str) -> None:
    if len(args) < count:
        raise InvalidArgument(message)


async def stream_write(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 2, "stream.write requires at least 2 arguments: streamName and message")
    stream = a.non_empty_string(args[0], "streamName")
    message = args[1]
    if not isinstance(message, dict):
        raise InvalidArgument("message must be an object")
    message_type = a.non_empty_string(message.get("type"), "message.type")
    data = message.get("data")
    if not isinstance(data, dict):
        raise InvalidArgument("message.data must be an object")
    metadata = message.get("metadata")  # explicit null means absent (upstream refused it)
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidArgument("message.metadata must be an object")
    opts = a.options(args, 2)
    message_id = a.optional_string(opts, "id", "options.id")
    expected = a.optional_number(opts, "expectedVersion", "options.expectedVersion")
    result = await svc.store.write_message(
        ns,
        stream,
        message_type,
        data,
        metadata,
        message_id=message_id or None,
        expected_version=expected,
    )
    return {"position": result.position, "globalPosition": result.global_position}


def _batch_size(opts: dict[str, Any]) -> int:
    size = a.optional_number(opts, "batchSize", "options.batchSize")
    if size is None:
        return 1000
    validation.check_batch_size(size)
    return size


async def stream_get(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "stream.get requires at least 1 argument: streamName")
    stream = a.non_empty_string(args[0], "streamName")
    opts = a.options(args, 1)
    position = a.optional_number(opts, "position", "options.position")
    global_position = a.optional_number(opts, "globalPosition", "options.globalPosition")
    batch_size = _batch_size(opts)
    body = await svc.store.read_stream_json(
        ns,
        stream,
        position=position or 0,
        global_position=global_position,
        batch_size=batch_size,
    )
    return jsoncodec.fragment(body)


async def stream_last(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "stream.last requires at least 1 argument: streamName")
    stream = a.non_empty_string(args[0], "streamName")
    opts = a.options(args, 1)
    message_type = a.optional_string(opts, "type", "options.type")
    return jsoncodec.fragment(await svc.store.read_last_json(ns, stream, message_type))


async def stream_version(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "stream.version requires 1 argument: streamName")
    stream = a.non_empty_string(args[0], "streamName")
    return await svc.store.stream_version(ns, stream)


def _consumer_group(opts: dict[str, Any]) -> ConsumerGroup | None:
    if "consumerGroup" not in opts:
        return None
    group = opts["consumerGroup"]
    if not isinstance(group, dict):
        raise InvalidArgument("options.consumerGroup must be an object")
    member = a.optional_number(group, "member", "options.consumerGroup.member")
    size = a.optional_number(group, "size", "options.consumerGroup.size")
    if member is None and size is None:
        return None
    if member is None or size is None:
        raise InvalidArgument("options.consumerGroup requires both member and size")
    validation.check_consumer_group(member, size)
    return ConsumerGroup(member, size)


async def category_get(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "category.get requires at least 1 argument: categoryName")
    category = a.string(args[0], "categoryName")
    opts = a.options(args, 1)
    position = a.optional_number(opts, "position", "options.position")
    global_position = a.optional_number(opts, "globalPosition", "options.globalPosition")
    batch_size = _batch_size(opts)
    correlation = a.optional_string(opts, "correlation", "options.correlation")
    group = _consumer_group(opts)
    if global_position is not None:
        position = global_position
    body = await svc.store.read_category_json(
        ns,
        category,
        position=1 if position is None else position,
        batch_size=batch_size,
        correlation=correlation,
        consumer_group=group,
    )
    return jsoncodec.fragment(body)


# -- namespaces -------------------------------------------------------------------------------


def _authorize(svc: Services, caller: str, target: str | None) -> None:
    """The admin (``default``) may do anything; a tenant only touches itself (docs/API.md).

    ``target`` None means an admin-only operation (``ns.create``, ``ns.list``).
    Checked before existence, so refusals reveal nothing about other namespaces.
    """
    if svc.permissive_admin or caller in (DEFAULT_NAMESPACE, target):
        return
    raise not_authorized(caller)


async def ns_create(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "ns.create requires at least 1 argument: namespace ID")
    namespace = a.non_empty_string(args[0], "namespace ID")
    opts = a.options(args, 1)
    description = a.optional_string(opts, "description", "options.description") or ""
    token = a.optional_string(opts, "token", "options.token")
    if token is not None:
        try:
            named = tokens.parse(token)
        except tokens.TokenFormatError as exc:
            raise InvalidArgument(f"Invalid token format: {exc}") from None
        if named != namespace:
            raise InvalidArgument(f"Token is for namespace '{named}', not '{namespace}'")
    if "metadata" in opts and not isinstance(opts["metadata"], dict):
        raise InvalidArgument("options.metadata must be an object")
    _authorize(svc, ns, None)
    if token is None:
        token = tokens.generate(namespace)
    await svc.store.create_namespace(namespace, tokens.hash_token(token), description)
    svc.auth.remember(token, namespace)
    return {
        "namespace": namespace,
        "token": token,
        "createdAt": timefmt.format_time(timefmt.now()),
    }


async def ns_delete(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "ns.delete requires 1 argument: namespace ID")
    namespace = a.non_empty_string(args[0], "namespace ID")
    _authorize(svc, ns, namespace)
    if namespace == DEFAULT_NAMESPACE and not svc.permissive_admin:
        raise InvalidArgument("The default namespace cannot be deleted")
    deleted = await svc.store.delete_namespace(namespace)
    svc.auth.forget_namespace(namespace, deleted=True)
    svc.broker.close_namespace(namespace)
    log.info("namespace %r deleted (%d messages)", namespace, deleted)
    return {
        "namespace": namespace,
        "deletedAt": timefmt.format_time(timefmt.now()),
        "messagesDeleted": deleted,
    }


async def ns_release(svc: Services, ns: str, args: list[Any]) -> Any:
    """Unregister a namespace, keeping its schema and messages (docs/MIGRATION.md)."""
    _require(args, 1, "ns.release requires 1 argument: namespace ID")
    namespace = a.non_empty_string(args[0], "namespace ID")
    _authorize(svc, ns, namespace)
    if namespace == DEFAULT_NAMESPACE:
        raise InvalidArgument("The default namespace cannot be released")
    await svc.store.release_namespace(namespace)
    svc.auth.forget_namespace(namespace, deleted=True)
    svc.broker.close_namespace(namespace)
    log.info("namespace %r released (its storage is kept)", namespace)
    return {"namespace": namespace, "releasedAt": timefmt.format_time(timefmt.now())}


async def _stats(svc: Services, namespace: str) -> NamespaceStats:
    """Counts of a namespace; zeros when its storage is damaged, as upstream falls back to 0.

    One broken namespace must not make ``ns.list`` fail for all the others.
    """
    try:
        return await svc.store.namespace_stats(namespace)
    except BackendError as exc:
        log.warning("cannot count the messages of namespace %r: %s", namespace, exc.message)
        return NamespaceStats(0, 0, None)


async def ns_list(svc: Services, ns: str, args: list[Any]) -> Any:
    _authorize(svc, ns, None)
    result = []
    for record in await svc.store.list_namespaces():
        try:
            count = (await _stats(svc, record.id)).message_count
        except NamespaceNotFound:  # deleted meanwhile
            continue
        result.append(
            {
                "namespace": record.id,
                "description": record.description,
                "createdAt": timefmt.format_unix_seconds(record.created_at),
                "messageCount": count,
            }
        )
    return result


async def ns_info(svc: Services, ns: str, args: list[Any]) -> Any:
    _require(args, 1, "ns.info requires 1 argument: namespace ID")
    namespace = a.non_empty_string(args[0], "namespace ID")
    _authorize(svc, ns, namespace)
    record = await svc.store.get_namespace(namespace)
    stats = await _stats(svc, namespace)
    last = stats.last_activity
    return {
        "namespace": record.id,
        "description": record.description,
        "createdAt": timefmt.format_unix_seconds(record.created_at),
        "messageCount": stats.message_count,
        "streamCount": stats.stream_count,
        "lastActivity": None if last is None else timefmt.format_time(last),
    }


async def ns_streams(svc: Services, ns: str, args: list[Any]) -> Any:
    opts = a.options(args, 0)
    prefix = a.optional_string(opts, "prefix", "prefix") or ""
    cursor = a.optional_string(opts, "cursor", "cursor") or ""
    limit = a.optional_number(opts, "limit", "limit")
    if limit is None:
        limit = 100
    elif not 1 <= limit <= 1000:
        raise InvalidArgument("limit must be between 1 and 1000")
    streams = await svc.store.list_streams(ns, prefix=prefix, cursor=cursor, limit=limit)
    return [
        {
            "stream": s.stream,
            "version": s.version,
            "lastActivity": timefmt.format_seconds(s.last_activity),
        }
        for s in streams
    ]


async def ns_categories(svc: Services, ns: str, args: list[Any]) -> Any:
    return [
        {"category": c.category, "streamCount": c.stream_count, "messageCount": c.message_count}
        for c in await svc.store.list_categories(ns)
    ]


async def ns_head(svc: Services, ns: str, args: list[Any]) -> Any:
    """Where the caller's namespace's global order stands; exports and copies stop there."""
    head = await svc.store.settled_head(ns)
    return {"globalPosition": head.global_position, "settled": head.settled}


# -- system -----------------------------------------------------------------------------------


async def sys_version(svc: Services, ns: str, args: list[Any]) -> Any:
    return __version__


async def sys_health(svc: Services, ns: str, args: list[Any]) -> Any:
    """The readiness report of ``GET /ready`` (status ``ok`` or ``unavailable``)."""
    report = await svc.readiness.check()
    return {
        "status": report.status,
        "backend": svc.store.backend,
        "connections": svc.in_flight,
        "checks": report.checks(),
    }


METHODS: dict[str, Method] = {
    "stream.write": stream_write,
    "stream.get": stream_get,
    "stream.last": stream_last,
    "stream.version": stream_version,
    "category.get": category_get,
    "ns.create": ns_create,
    "ns.delete": ns_delete,
    "ns.release": ns_release,
    "ns.list": ns_list,
    "ns.info": ns_info,
    "ns.streams": ns_streams,
    "ns.categories": ns_categories,
    "ns.head": ns_head,
    "sys.version": sys_version,
    "sys.health": sys_health,
}

OWN_NAMESPACE = frozenset(
    {"stream.write", "stream.get", "stream.last", "stream.version", "category.get"}
    | {"ns.streams", "ns.categories", "ns.head"}
)
"""Methods that work in the caller's namespace: if it vanished (deleted by another process),
the caller is no longer authorized rather than "not found"."""
