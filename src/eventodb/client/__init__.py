"""The Python client of EventoDB: sync and async clients, live subscriptions, consumers.

Install it alone with ``pip install eventodb`` (the server's dependencies come with
``eventodb[server]``); it needs only httpx, and importing it loads no server module.
docs/CLIENT.md is the guide.

Example::

    from eventodb.client import EventoDB

    with EventoDB.from_env() as db:  # EVENTODB_URL, EVENTODB_TOKEN
        db.write("account-1", "Deposited", {"amount": 10})
        for message in db.iter_stream("account-1"):
            print(message.position, message.type, message.data)
"""

from __future__ import annotations

from eventodb.client.aio import AsyncEventoDB, AsyncSubscription
from eventodb.client.config import ClientConfig, ClientOptions
from eventodb.client.consumers import AsyncConsumer, Consumer, ConsumerOptions
from eventodb.client.errors import (
    AuthError,
    AuthInvalidToken,
    AuthRequired,
    AuthUnauthorized,
    BackendError,
    ClearFailed,
    DuplicateMessageId,
    EventoDBError,
    ExpectedVersionError,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    NamespaceExists,
    NamespaceNotFound,
    NotFound,
    ServerBusy,
    StreamNotFound,
    TransportError,
    UnexpectedResponse,
)
from eventodb.client.models import (
    CategoryInfo,
    ConsumerGroup,
    CreatedNamespace,
    DeletedNamespace,
    Head,
    Health,
    Message,
    NamespaceInfo,
    NamespaceSummary,
    NewMessage,
    Poke,
    ReleasedNamespace,
    StreamInfo,
    WriteResult,
    new_message_id,
)
from eventodb.client.positions import (
    AsyncPositionStore,
    AsyncStreamPositionStore,
    PositionStore,
    StreamPositionStore,
    position_stream_name,
)
from eventodb.client.sync import EventoDB, Subscription

__all__ = [
    "AsyncConsumer",
    "AsyncEventoDB",
    "AsyncPositionStore",
    "AsyncStreamPositionStore",
    "AsyncSubscription",
    "AuthError",
    "AuthInvalidToken",
    "AuthRequired",
    "AuthUnauthorized",
    "BackendError",
    "CategoryInfo",
    "ClearFailed",
    "ClientConfig",
    "ClientOptions",
    "Consumer",
    "ConsumerGroup",
    "ConsumerOptions",
    "CreatedNamespace",
    "DeletedNamespace",
    "DuplicateMessageId",
    "EventoDB",
    "EventoDBError",
    "ExpectedVersionError",
    "Head",
    "Health",
    "InternalError",
    "InvalidRequest",
    "Message",
    "MethodNotFound",
    "NamespaceExists",
    "NamespaceInfo",
    "NamespaceNotFound",
    "NamespaceSummary",
    "NewMessage",
    "NotFound",
    "Poke",
    "PositionStore",
    "ReleasedNamespace",
    "ServerBusy",
    "StreamInfo",
    "StreamNotFound",
    "StreamPositionStore",
    "Subscription",
    "TransportError",
    "UnexpectedResponse",
    "WriteResult",
    "new_message_id",
    "position_stream_name",
]
