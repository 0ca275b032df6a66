"""A running server seen by the transfer commands: JSON-RPC calls, paged category reads,
``POST /import`` uploads. Works against the Go server too (only its documented API is used).

Every failure is a :class:`TransferError` that names the URL it concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import httpx

from eventodb.core import jsoncodec, tokens
from eventodb.core.validation import INT64_MAX, MAX_BATCH_SIZE

HTTP_TIMEOUT = 30.0
PAGE_SIZE = MAX_BATCH_SIZE
"""Messages per ``category.get`` page: the most a server answers at once."""


class TransferError(Exception):
    """A run-time failure: printed as ``Error: <text>``, exit status 1."""


class ErrorAnswer(TransferError):
    """The server answered an RPC call with an error."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.code = _error_code(body)
        """The error envelope's code, when the body is one."""


def _error_code(body: str) -> str | None:
    try:
        envelope = jsoncodec.loads(body)
    except jsoncodec.JSONError:
        return None
    error = envelope.get("error") if isinstance(envelope, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def describe(exc: httpx.HTTPError, url: str) -> TransferError:
    """A transport failure as one line naming the URL."""
    reason = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None:  # httpx's own text can be vague ("All connection attempts failed")
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            code = cause.errno or 0
            reason = (os.strerror(code) if code > 0 else str(cause.strerror)).lower()
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return TransferError(f"cannot connect to {url}: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return TransferError(f"no answer from {url} within {HTTP_TIMEOUT:.0f}s ({reason})")
    return TransferError(f"{url}: {reason}")


def _body_text(response: httpx.Response) -> str:
    return response.content.decode("utf-8", "replace").strip()


Row = list[Any]
"""A message as ``category.get`` returns it: ``[id, stream, type, pos, gpos, data, meta, time]``."""


class Remote:
    """One namespace of one server, addressed by its URL and the namespace's token."""

    def __init__(
        self, url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.client = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, headers={"Authorization": f"Bearer {token}"}, transport=transport
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def namespace(self) -> str:
        """The namespace the token names.

        Raises:
            TransferError: the token is malformed.
        """
        try:
            return tokens.parse(self.token)
        except tokens.TokenFormatError as exc:
            raise TransferError(f"{self.url}: {exc}") from None

    async def rpc(self, *request: Any) -> Any:
        """The result of one call.

        Raises:
            TransferError: ``HTTP <status>: <body>`` for an error answer, or a transport error.
        """
        url = f"{self.url}/rpc"
        try:
            response = await self.client.post(url, content=jsoncodec.dumps(list(request)))
        except httpx.HTTPError as exc:
            raise describe(exc, url) from None
        if response.status_code != 200:
            raise ErrorAnswer(response.status_code, _body_text(response))
        try:
            return jsoncodec.loads(response.content)
        except jsoncodec.JSONError as exc:
            raise TransferError(f"{url}: the answer is not JSON ({exc})") from None

    async def page(self, category: str, position: int, size: int = PAGE_SIZE) -> list[Row]:
        """Messages of ``category`` (``""``: all) from global position ``position`` on."""
        result: list[Row] = await self.rpc(
            "category.get", category, {"position": position, "batchSize": size}
        )
        return result

    async def message_count(self) -> int:
        """How many messages the namespace holds (``ns.info``)."""
        info = await self.rpc("ns.info", self.namespace)
        return int(info["messageCount"])

    async def last_global_position(self) -> int:
        """The highest global position in the namespace, 0 when it is empty."""
        position, _ = await self.head()
        return position

    async def head(self) -> tuple[int, bool | None]:
        """Where the namespace's global order stands: the highest global position (0 when
        empty), and whether nothing can still commit below it (``ns.head``; ``None`` for a server
        without that call, such as the Go server, where the position is searched for)."""
        try:
            answer = await self.rpc("ns.head")
        except ErrorAnswer as exc:
            if exc.code != "METHOD_NOT_FOUND":
                raise
            return await self._search_last(), None
        return int(answer["globalPosition"]), bool(answer["settled"])

    async def _search_last(self) -> int:
        """The highest global position, found with one-message reads: every read at position p
        returns the first message at or after p."""
        first = await self.page("", 1, 1)
        if not first:
            return 0
        low = int(first[0][4])  # known to exist
        high = 0  # 0: no position known to be empty yet
        while high == 0 or high - low > 1:
            probe = min(low * 2, INT64_MAX) if high == 0 else (low + high) // 2
            if probe <= low:
                break
            found = await self.page("", probe, 1)
            if found:
                low = int(found[0][4])
            else:
                high = probe
        return low

    async def pages(
        self, category: str, first: int, last: int, size: int = PAGE_SIZE
    ) -> AsyncGenerator[list[Row], None]:
        """Pages of ``category`` with global positions in ``[first, last]``, in order; the
        next page is requested while the caller handles the current one."""
        pending: asyncio.Task[list[Row]] | None = asyncio.ensure_future(
            self.page(category, first, size)
        )
        try:
            while pending is not None:
                page = await pending
                pending = None
                if not page:
                    return
                end = int(page[-1][4])
                if end >= last:
                    yield [m for m in page if int(m[4]) <= last]
                    return
                pending = asyncio.ensure_future(self.page(category, end + 1, size))
                yield page
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, TransferError):
                    await pending

    async def upload(
        self,
        body: AsyncIterator[bytes],
        *,
        force: bool,
        where: Callable[[int], str],
    ) -> int:
        """Stream ``body`` to ``POST /import`` and read the answer's events.

        Args:
            force: ``?force=true``: the server empties the namespace first.
            where: describes the record at a line number, for error messages.

        Returns:
            The number of records the server imported.

        Raises:
            TransferError: ``<CODE>: <message> (<where>)`` for an error event, ``server error
                (HTTP <status>): <body>`` for an error answer, or a transport error.
        """
        url = f"{self.url}/import"
        params = {"force": "true"} if force else None
        headers = {"Content-Type": "application/x-ndjson"}
        try:
            async with self.client.stream(
                "POST", url, params=params, headers=headers, content=body
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise TransferError(
                        f"server error (HTTP {response.status_code}): {_body_text(response)}"
                    )
                async for text in response.aiter_lines():
                    if not text.startswith("data: "):
                        continue
                    event = jsoncodec.loads(text[6:])
                    if "error" in event:
                        line = int(event.get("line") or 0)
                        place = f" ({where(line)})" if line else ""
                        raise TransferError(f"{event['error']}: {event.get('message', '')}{place}")
                    if event.get("done"):
                        return int(event["imported"])
        except httpx.HTTPError as exc:
            raise describe(exc, url) from None
        except jsoncodec.JSONError as exc:
            raise TransferError(f"{url}: unreadable event ({exc})") from None
        raise TransferError(f"{url}: the server ended the import without a result")
