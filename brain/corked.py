"""uvicorn's HTTP/1.1 protocol (httptools), with a response's headers and body leaving in one send().

uvicorn writes the status line and headers of a response as soon as the app starts it, and the body in a second
write: two send() calls, and on a busy server the client is woken for the headers, reads them, and sleeps again
until the body comes. aiohttp coalesces the two for the same reason (aio-libs/aiohttp#10991); uvicorn does not.
Here the connection's writes are held until the end of the event loop's current turn (a "cork", as Bun and
Linux's TCP_CORK call it) and then go out as one. A tile answered in one send() costs the server and the client
less CPU (measured with `make bench-postgis`; see the README).

Nothing else changes: flow control, keep-alive and closing are uvicorn's, and a large body is never held (writes
over CORK_LIMIT bytes go out at once).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: bytes held at most before a write goes out (a tile is up to ~500 KB; holding more would only cost memory)
CORK_LIMIT = 1 << 20


class CorkedTransport:
    """A transport that holds writes until the end of the event loop's turn and then sends them as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._size += len(data)
        if self._size > CORK_LIMIT:
            self.flush()

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held (a scheduled flush after an explicit one finds nothing to do)."""
        if self._held:
            held, self._held, self._size = self._held, [], 0
            if not self._transport.is_closing():
                self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name: str):  # everything else is the real transport's
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a CorkedTransport: pass it as `uvicorn.run(..., http=...)`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
