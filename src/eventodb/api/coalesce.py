"""One send per response: a response's head and body leave in one system call.

uvicorn writes a response's head and its body with two ``transport.write`` calls, and the
event loop sends each at once: two system calls, and on a local network two packets for the
client to read. :class:`CoalescingTransport` holds a connection's first write of a turn of the
event loop until the next write, which takes it along, or until the end of the turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

COPY_LIMIT = 64 * 1024
"""Bytes up to which a write is copied to go out with the held one."""


class CoalescingTransport(asyncio.Transport):
    """Wraps a transport; holds a write and sends it with the next one, or at the end of the
    event loop's turn (writes pair up: a third write in the same turn is held again).

    Everything that ends or inspects the connection (``close``, ``write_eof``,
    ``get_write_buffer_size``) sees the held bytes as written.
    """

    __slots__ = ("_flush_due", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_due = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) > COPY_LIMIT:  # a big body: a second system call costs less than a copy
                self._transport.write(held)
                self._transport.write(data)
            else:
                self._transport.write(held + bytes(data))
            return
        self._held = bytes(data)
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _flush(self) -> None:
        self._flush_due = False
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)
