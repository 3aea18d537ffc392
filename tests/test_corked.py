"""brain.corked: a response's writes leave together at the end of the loop's turn, on a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from brain.corked import CORK_LIMIT, CorkedTransport


def _pending(peer: socket.socket) -> bytes:
    """What the peer can read right now (b'' when nothing has arrived yet)."""
    try:
        return peer.recv(1 << 22)
    except BlockingIOError:
        return b""


def _read_all(peer: socket.socket, n: int) -> bytes:
    peer.setblocking(True)
    out = b""
    while len(out) < n:
        chunk = peer.recv(1 << 22)
        assert chunk, f"connection closed after {len(out)} of {n} bytes"
        out += chunk
    peer.setblocking(False)
    return out


@contextlib.asynccontextmanager
async def _corked_connection():
    """A CorkedTransport on a real loopback TCP connection, and the socket at the other end."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as server:
        transport, _ = await loop.create_connection(asyncio.Protocol, *server.getsockname())
        peer, _ = server.accept()
        peer.setblocking(False)
        with peer:
            yield CorkedTransport(transport, loop), peer


def test_writes_of_one_turn_leave_as_one_and_nothing_is_lost():
    async def run() -> None:
        async with _corked_connection() as (corked, peer):

            corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
            corked.write(b"tile")
            assert _pending(peer) == b"", "a write went out before the loop's turn ended"
            await asyncio.sleep(0.05)
            assert _pending(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntile"

            # a body over the limit is not held back
            big = bytes(range(256)) * (CORK_LIMIT // 256 + 1)
            corked.write(big)
            assert _read_all(peer, len(big)) == big

            # close sends what is held first; the peer then sees the end of the stream
            corked.write(b"last")
            corked.close()
            await asyncio.sleep(0.05)
            assert _read_all(peer, 4) == b"last"
            peer.setblocking(True)
            assert peer.recv(10) == b""

    asyncio.run(run())


def test_abort_drops_what_is_held():
    async def run() -> None:
        async with _corked_connection() as (corked, peer):
            corked.write(b"never sent")
            corked.abort()
            await asyncio.sleep(0.05)
            peer.settimeout(5)
            try:
                got = peer.recv(100)
            except ConnectionResetError:
                got = b""
            assert got == b""

    asyncio.run(run())
