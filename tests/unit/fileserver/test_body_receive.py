"""BodyReceiver: a body from a real socket into a real file, hashed on the way (recvfile.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geodrop.errors import BodyStalled
from geodrop.fileserver import recvfile

IDLE = 60.0  # seconds a client may send nothing


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(server side, client side)`` of a TCP connection on loopback; the server side
    non-blocking, as an event loop's transport holds it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def _send_later(client: socket.socket, parts: list[bytes], pause: float, close: bool) -> None:
    def run() -> None:
        for part in parts:
            client.sendall(part)
            time.sleep(pause)
        if close:
            client.shutdown(socket.SHUT_WR)

    threading.Thread(target=run, daemon=True).start()


async def _receive_all(receiver: recvfile.BodyReceiver, count: int) -> int:
    remaining = count
    while remaining:
        remaining -= await receiver.receive(remaining)
    await receiver.hashed()
    return count


async def test_a_body_is_written_and_hashed_as_it_arrives(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    server, client = connection
    body = os.urandom(5 * recvfile.BUFFER_BYTES + 12345)
    target = tmp_path / "upload"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 (tus allows md5 checksums)
    told: list[int] = []
    try:
        _send_later(client, [body], 0, close=False)
        with recvfile.receiving(server, fd, [sha, md5], told.append, IDLE) as receiver:
            await _receive_all(receiver, len(body))
    finally:
        os.close(fd)
    assert target.read_bytes() == body
    assert sum(told) == len(body)
    assert sha.digest() == hashlib.sha256(body).digest()
    assert md5.digest() == hashlib.md5(body).digest()  # noqa: S324
    # The connection's own socket is non-blocking again, as the event loop needs it.
    assert not server.getblocking()


async def test_a_client_that_pauses_is_waited_for_without_a_thread(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    server, client = connection
    parts = [os.urandom(300_000) for _ in range(3)]
    fd = os.open(tmp_path / "upload", os.O_WRONLY | os.O_CREAT)
    slices: list[int] = []
    try:
        # Each pause is longer than a thread waits for bytes: the slice comes back.
        _send_later(client, parts, recvfile.BYTE_WAIT_MILLISECONDS / 1000 * 3, close=False)
        with recvfile.receiving(server, fd, [], lambda n: None, IDLE) as receiver:
            remaining = sum(map(len, parts))
            while remaining:
                got = await receiver.receive(remaining)
                slices.append(got)
                remaining -= got
    finally:
        os.close(fd)
    assert (tmp_path / "upload").read_bytes() == b"".join(parts)
    assert len(slices) >= len(parts)


async def test_a_closed_connection_is_an_error_after_what_came_is_counted(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    server, client = connection
    sent = os.urandom(2 * recvfile.BUFFER_BYTES + 777)
    fd = os.open(tmp_path / "upload", os.O_WRONLY | os.O_CREAT)
    told: list[int] = []
    try:
        _send_later(client, [sent], 0, close=True)
        with (
            recvfile.receiving(server, fd, [], told.append, IDLE) as receiver,
            pytest.raises(ConnectionResetError),
        ):
            await _receive_all(receiver, len(sent) + 1000)
    finally:
        os.close(fd)
    # What arrived is kept and counted: it is the upload's offset.
    assert (tmp_path / "upload").read_bytes() == sent
    assert sum(told) == len(sent)


@pytest.mark.parametrize("thread_waits", [False, True], ids=["loop waits", "thread waits"])
async def test_a_cancelled_receive_lets_go_at_once_and_writes_nothing_more(
    connection: tuple[socket.socket, socket.socket],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    thread_waits: bool,
) -> None:
    """Cancelled while the event loop waits for a stalled client, or while a thread
    waits for its bytes: either way the call ends at once, and what came before the
    cancellation is kept, nothing after it."""
    if thread_waits:
        monkeypatch.setattr(recvfile, "BYTE_WAIT_MILLISECONDS", 5000)
    server, client = connection
    first = os.urandom(100_000)
    fd = os.open(tmp_path / "upload", os.O_WRONLY | os.O_CREAT)
    try:
        with recvfile.receiving(server, fd, [], lambda n: None, IDLE) as receiver:
            if not thread_waits:
                client.sendall(first)
                assert await receiver.receive(10 * recvfile.BUFFER_BYTES) == len(first)
            task = asyncio.ensure_future(receiver.receive(10 * recvfile.BUFFER_BYTES))
            if thread_waits:
                client.sendall(first)
            await asyncio.sleep(0.2)  # the thread, or the loop, waits for more bytes
            assert not task.done()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 1.0
            with contextlib.suppress(OSError):  # the receiving side is shut
                client.sendall(b"late bytes")
            await asyncio.sleep(0.2)
    finally:
        os.close(fd)
    assert (tmp_path / "upload").read_bytes() == first


def test_buffers_are_made_when_needed_and_dropped_once_idle() -> None:
    """A body waited for on the event loop holds no buffer (recvfile._HashPipeline)."""
    sha = hashlib.sha256()
    pipeline = recvfile._HashPipeline([sha])
    try:
        first, second = pipeline.free_buffer(), pipeline.free_buffer()
        assert pipeline._made == 2
        pipeline.give_back(first)
        pipeline.shrink()
        assert pipeline._made == 1
        second[:5] = b"hello"
        pipeline.hash(second, 5)
        pipeline.drain()
        pipeline.shrink()
        assert pipeline._made == 0
        assert sha.digest() == hashlib.sha256(b"hello").digest()
        # Never more than BUFFERS at once: the next one waits for one to be hashed.
        held = [pipeline.free_buffer() for _ in range(recvfile.BUFFERS)]
        assert pipeline._made == recvfile.BUFFERS
        for buffer in held:
            pipeline.give_back(buffer)
    finally:
        pipeline.stop()


async def test_a_client_that_sends_nothing_for_too_long_ends_the_body(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    """What came is kept and counted; then the body ends (BodyStalled), so the upload's
    lock is let go and the client can resume from a new connection."""
    server, client = connection
    first = os.urandom(200_000)
    fd = os.open(tmp_path / "upload", os.O_WRONLY | os.O_CREAT)
    told: list[int] = []
    try:
        client.sendall(first)
        started = time.monotonic()
        with (
            recvfile.receiving(server, fd, [], told.append, 0.3) as receiver,
            pytest.raises(BodyStalled),
        ):
            await _receive_all(receiver, len(first) + 1000)
        assert 0.3 <= time.monotonic() - started < 3
    finally:
        os.close(fd)
    assert (tmp_path / "upload").read_bytes() == first
    assert sum(told) == len(first)
