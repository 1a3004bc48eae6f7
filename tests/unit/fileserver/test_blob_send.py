"""Tests of how blob_handlers sends bytes: kernel sendfile over plain HTTP, a stream over TLS.

The plain-HTTP sends go through a real connected socket pair (sendfile needs a socket)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any, BinaryIO, cast

import pytest
from aiohttp import web

from geodrop.config import LinkConfig, ListenAddress
from geodrop.fileserver import blob_handlers, sendfile
from geodrop.fileserver.blob_handlers import _send
from geodrop.fileserver.context import FileServer
from geodrop.fileserver.links import LinkMeters
from geodrop.fileserver.sendfile import SliceSender, SliceSent
from geodrop.protocol.ranges import ByteRange
from geodrop.storage.base import StoredBlob
from geodrop.web.accesslog import BODY_BYTES_SENT

DATA = bytes(range(256)) * 40  # 10,240 bytes
SPAN = ByteRange(100, 9000)


class FakeRequest(dict[object, Any]):
    """A request's mapping (where handlers keep what they count) and its transport."""

    def __init__(self, transport: FakeTransport) -> None:
        super().__init__()
        self.transport = transport


class FakeTransport:
    def __init__(self, sslcontext: object | None, sock: socket.socket, buffered: int) -> None:
        self._extra = {"sslcontext": sslcontext, "socket": sock}
        self.buffered = buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_write_buffer_size(self) -> int:
        return self.buffered


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair: the server's non-blocking end (as asyncio keeps it), the client's."""
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)
    with server_end, client_end:
        yield server_end, client_end


def read_all(sock: socket.socket, into: bytearray) -> threading.Thread:
    def read() -> None:
        while chunk := sock.recv(65536):
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def telecom_meters() -> LinkMeters:
    """The meters of a file server with one link, ``telecom``."""
    link = LinkConfig(
        "telecom", "https://127.1.1.1:7701", ListenAddress("127.1.1.1", 7701), "telecom", 1000.0
    )
    return LinkMeters((link,))


class Written:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class LocalBlob:
    def __init__(self, file: IO[bytes], data: bytes) -> None:
        self.file = file
        self.data = data

    def local_file(self) -> IO[bytes]:
        return self.file

    async def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        for offset in range(start, stop, 4096):
            yield self.data[offset : min(offset + 4096, stop)]


async def send(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connection: tuple[socket.socket, socket.socket],
    *,
    tls: bool = False,
    buffered: int = 0,
    data: bytes = DATA,
    span: ByteRange = SPAN,
    client_reads: bool = True,
) -> dict[str, Any]:
    """``_send`` of ``span`` of a file holding ``data``; what went where. asyncio's own
    sendfile is replaced by one that records its calls and claims to send everything."""
    path = tmp_path / "blob"
    path.write_bytes(data)
    loop_sendfile_calls: list[tuple[int, int]] = []

    async def fake_sendfile(transport: object, file: object, offset: int, count: int) -> int:
        loop_sendfile_calls.append((offset, count))
        return count

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", fake_sendfile)
    meters = telecom_meters()
    server = cast(FileServer, SimpleNamespace(meters=meters))
    server_end, client_end = connection
    transport = FakeTransport(object() if tls else None, server_end, buffered)
    fake_request = FakeRequest(transport)
    request = cast(web.Request, fake_request)
    written = Written()
    received = bytearray()
    reader = read_all(client_end, received) if client_reads else None
    with path.open("rb") as file:
        await asyncio.wait_for(
            _send(
                server,
                request,
                cast(web.StreamResponse, written),
                cast(StoredBlob, LocalBlob(file, data)),
                span,
                "telecom",
            ),
            5,
        )
    if reader is not None:
        server_end.shutdown(socket.SHUT_WR)
        await asyncio.to_thread(reader.join, 10)
    return {
        "loop_sendfile": loop_sendfile_calls,
        "written": b"".join(written.chunks),
        "received": bytes(received),
        "metered": meters.reports()[0].bytes_sent,
        "counted": fake_request.get(BODY_BYTES_SENT, 0),
    }


async def send_unread(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connection: tuple[socket.socket, socket.socket],
    size: int,
) -> dict[str, Any]:
    """:func:`send` of a whole ``size``-byte file to a client that reads nothing."""
    data = b"x" * size
    span = ByteRange(0, size)
    return await send(tmp_path, monkeypatch, connection, data=data, span=span, client_reads=False)


async def test_a_small_body_goes_in_one_sendfile_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    def no_thread(*args: object) -> None:
        raise AssertionError("a small body needs no sender thread")

    monkeypatch.setattr(blob_handlers, "SliceSender", no_thread)
    sent = await send(tmp_path, monkeypatch, connection)
    assert sent["received"] == DATA[100:9000]
    assert sent["loop_sendfile"] == []
    assert sent["written"] == b""
    assert sent["metered"] == sent["counted"] == 8900


async def test_plain_http_sends_by_kernel_sendfile_from_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    data = DATA * 20  # 200 KiB: more than is sent inline
    span = ByteRange(100, len(data) - 100)
    assert span.length > blob_handlers.INLINE_SEND_BYTES
    threads: list[SliceSender] = []

    class CountedSender(SliceSender):
        def __init__(self, sock: sendfile.Socket, file: BinaryIO) -> None:
            super().__init__(sock, file)
            threads.append(self)

    monkeypatch.setattr(blob_handlers, "SliceSender", CountedSender)
    sent = await send(tmp_path, monkeypatch, connection, data=data, span=span)
    assert sent["received"] == data[span.start : span.stop]
    assert len(threads) == 1
    assert sent["loop_sendfile"] == []
    assert sent["metered"] == sent["counted"] == span.length


async def test_a_small_body_the_socket_has_no_room_for_goes_on_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    """Nobody reads and the socket's buffer is full: the inline send takes nothing, the
    sender thread nothing after its wait, and asyncio's sendfile (faked here) it all."""
    server_end, _ = connection
    with contextlib.suppress(BlockingIOError):
        while True:
            server_end.send(b"z" * 65536)
    size = blob_handlers.INLINE_SEND_BYTES
    sent = await send_unread(tmp_path, monkeypatch, connection, size)
    assert sent["loop_sendfile"] == [(0, size)]
    assert sent["metered"] == sent["counted"] == size


async def test_bytes_still_in_the_transport_go_first_through_asyncio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    """An earlier answer's bytes waiting in the transport must not be overtaken."""
    sent = await send(tmp_path, monkeypatch, connection, buffered=512)
    assert sent["loop_sendfile"] == [(100, 8900)]
    assert sent["received"] == b""


async def test_a_slow_clients_slice_goes_on_through_asyncio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    """The client takes nothing: the thread sends what the buffers hold, then asyncio's
    sendfile (which costs no thread while it waits) gets the rest of the slice."""
    size = 8 * 1024 * 1024  # one slice
    sent = await send_unread(tmp_path, monkeypatch, connection, size)
    [(offset, count)] = sent["loop_sendfile"]
    assert 0 < offset < size  # the thread's share: what the socket buffers took
    assert offset + count == size
    assert sent["metered"] == sent["counted"] == size


async def test_tls_streams_the_bytes_instead_of_sendfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connection: tuple[socket.socket, socket.socket]
) -> None:
    """The kernel cannot encrypt; asyncio's own fallback for TLS is 3-4x slower (measured)."""
    sent = await send(tmp_path, monkeypatch, connection, tls=True)
    assert sent["loop_sendfile"] == []
    assert sent["received"] == b""
    assert sent["written"] == DATA[100:9000]


def leave_after(sock: socket.socket, count: int, into: bytearray) -> threading.Thread:
    """A client that reads ``count`` bytes, then goes away with the rest unread."""

    def read() -> None:
        while len(into) < count and (chunk := sock.recv(min(65536, count - len(into)))):
            into.extend(chunk)
        sock.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


async def send_whole_file(server: FileServer, request: FakeRequest, path: Path) -> None:
    """``_send`` of the whole file at ``path`` on ``request``'s transport, over the link
    ``telecom``; at most 10 s."""
    with path.open("rb") as file:
        await asyncio.wait_for(
            _send(
                server,
                cast(web.Request, request),
                cast(web.StreamResponse, Written()),
                cast(StoredBlob, LocalBlob(file, b"")),
                ByteRange(0, os.fstat(file.fileno()).st_size),
                "telecom",
            ),
            10,
        )


async def test_a_client_gone_mid_slice_is_told_with_the_bytes_it_took(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket]
) -> None:
    size = 16 * 1024 * 1024
    path = tmp_path / "big"
    path.write_bytes(b"x" * size)
    server_end, client_end = connection
    received = bytearray()
    reader = leave_after(client_end, 1024 * 1024, received)
    with path.open("rb") as file:
        sender = SliceSender(server_end, file)
        done = await asyncio.wait_for(sender.send(0, size), 5)
        sender.close()
    reader.join(5)
    assert isinstance(done.error, ConnectionError)
    assert len(received) <= done.sent < size  # what the client read, and its buffers held


@pytest.mark.parametrize("waits_first", [False, True], ids=["thread", "thread-then-asyncio"])
async def test_the_bytes_sent_before_a_client_went_away_are_metered_and_counted(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket], waits_first: bool
) -> None:
    """A client reads 1 MiB of a slice and goes away. One that first takes nothing for a
    while gets the rest of its slice from asyncio's sendfile (a real transport here) once
    the sender thread hands it back: the thread's share and asyncio's are counted both."""
    size = 16 * 1024 * 1024
    path = tmp_path / "big"
    path.write_bytes(b"x" * size)
    meters = telecom_meters()
    server = cast(FileServer, SimpleNamespace(meters=meters))
    server_end, client_end = connection
    transport: FakeTransport | asyncio.Transport = FakeTransport(None, server_end, 0)
    if waits_first:
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
            asyncio.Protocol, server_end
        )
    request = FakeRequest(cast(FakeTransport, transport))
    received = bytearray()

    def read_then_leave() -> None:
        if waits_first:
            time.sleep(4 * sendfile.ROOM_WAIT_MILLISECONDS / 1000)
        leave_after(client_end, 1024 * 1024, received).join(5)

    client = threading.Thread(target=read_then_leave, daemon=True)
    client.start()
    try:
        with pytest.raises(ConnectionError):
            await send_whole_file(server, request, path)
    finally:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
    await asyncio.to_thread(client.join, 5)
    counted = request[BODY_BYTES_SENT]
    assert len(received) == 1024 * 1024
    assert len(received) <= counted < size
    assert meters.reports()[0].bytes_sent == counted


async def test_a_client_that_takes_nothing_gets_its_thread_back_and_the_socket_released(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket]
) -> None:
    """Nobody reads: once the socket's buffer is full the thread waits a moment only,
    hands the rest back (the event loop can wait for such a client), and the duplicate
    descriptor it wrote to is closed afterwards."""
    size = 16 * 1024 * 1024
    path = tmp_path / "big"
    path.write_bytes(b"x" * size)
    server_end, _ = connection
    with path.open("rb") as file:
        sender = SliceSender(server_end, file)
        duplicate = sender._out.fileno()
        started = asyncio.get_running_loop().time()
        done = await asyncio.wait_for(sender.send(0, size), 5)
        assert 0 < done.sent < size  # what the buffers took
        assert done.error is None
        assert asyncio.get_running_loop().time() - started < 2
        sender.close()
        for _ in range(100):
            if not _is_open(duplicate):
                break
            await asyncio.sleep(0.05)
        assert not _is_open(duplicate)


async def test_without_a_send_timeout_the_thread_leaves_the_slice_to_the_event_loop(
    tmp_path: Path,
    connection: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blocking send with no timeout could wait for a stalled client for good."""
    real_setsockopt = socket.socket.setsockopt

    def no_send_timeout(sock: socket.socket, level: int, option: int, value: Any) -> None:
        if option == socket.SO_SNDTIMEO:
            raise OSError("not supported here")
        real_setsockopt(sock, level, option, value)

    monkeypatch.setattr(socket.socket, "setsockopt", no_send_timeout)
    path = tmp_path / "big"
    path.write_bytes(b"x" * (16 * 1024 * 1024))
    server_end, _ = connection  # nobody reads
    with path.open("rb") as file:
        sender = SliceSender(server_end, file)
        assert await asyncio.wait_for(sender.send(0, 16 * 1024 * 1024), 5) == SliceSent(0)
        assert not os.get_blocking(server_end.fileno())
        sender.close()


async def test_a_cancelled_send_stops_its_thread(
    tmp_path: Path,
    connection: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady reader keeps the thread sending; cancelling the download stops it short."""
    monkeypatch.setattr(sendfile, "ROOM_WAIT_MILLISECONDS", 2000)  # never slow enough
    size = 64 * 1024 * 1024
    path = tmp_path / "big"
    path.write_bytes(b"x" * size)
    server_end, client_end = connection
    received = 0
    stop = threading.Event()

    def steady() -> None:  # ~32 MB/s: the whole file would take about 2 s
        nonlocal received
        while not stop.is_set():
            try:
                received += len(client_end.recv(65536))
            except OSError:
                return
            stop.wait(0.002)

    reader = threading.Thread(target=steady, daemon=True)
    reader.start()
    try:
        with path.open("rb") as file:
            sender = SliceSender(server_end, file)
            task = asyncio.ensure_future(sender.send(0, size))
            await asyncio.sleep(0.3)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The thread lets go of the socket once it notices.
            assert await asyncio.to_thread(sender._sending.acquire, True, 5)
            sender._sending.release()
            sender.close()
            assert received < size // 2
    finally:
        stop.set()


async def test_a_client_gone_is_a_connection_error(
    tmp_path: Path, connection: tuple[socket.socket, socket.socket]
) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * (16 * 1024 * 1024))
    server_end, client_end = connection
    with path.open("rb") as file:
        sender = SliceSender(server_end, file)
        client_end.close()
        done = await asyncio.wait_for(sender.send(0, 16 * 1024 * 1024), 5)
        assert done.sent == 0
        assert isinstance(done.error, ConnectionError)
        assert not os.get_blocking(server_end.fileno())  # as the event loop needs it
        sender.close()


async def test_a_slow_reader_is_waited_for_inside_one_sendfile(
    tmp_path: Path,
    connection: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader slower than the sender fills the socket's buffer again and again: the
    kernel waits for room inside the thread's sendfile, so the slice takes one call, not
    one per time the buffer filled, and none ends in EAGAIN. Afterwards the socket is
    non-blocking again, as the event loop needs it."""
    monkeypatch.setattr(sendfile, "ROOM_WAIT_MILLISECONDS", 2000)
    size = 8 * 1024 * 1024
    path = tmp_path / "big"
    path.write_bytes(os.urandom(size))
    server_end, client_end = connection
    calls: list[int | None] = []
    real_sendfile = os.sendfile

    def counted(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        try:
            sent = real_sendfile(out_fd, in_fd, offset, count)
        except BlockingIOError:
            calls.append(None)
            raise
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counted)
    received = bytearray()

    def slow() -> None:
        while len(received) < size:
            received.extend(client_end.recv(256 * 1024))
            threading.Event().wait(0.001)

    reader = threading.Thread(target=slow, daemon=True)
    reader.start()
    with path.open("rb") as file:
        sender = SliceSender(server_end, file)
        assert await asyncio.wait_for(sender.send(0, size), 20) == SliceSent(size)
        assert not os.get_blocking(server_end.fileno())
        sender.close()
    reader.join(5)
    assert bytes(received) == path.read_bytes()
    assert calls == [size]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def tcp_connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection: the server's non-blocking end, the client's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_end = socket.create_connection(listener.getsockname())
        server_end, _ = listener.accept()
    server_end.setblocking(False)
    with server_end, client_end:
        yield server_end, client_end


class RecordingSocket:
    """A socket whose setsockopt calls are written down (the rest is the real one's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))
        self.sock.setsockopt(level, option, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def corked_now(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) != 0


async def test_the_body_goes_out_corked_and_the_cork_comes_out_after(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tcp_connection: tuple[socket.socket, socket.socket],
) -> None:
    """Full TCP segments while sendfile sends (nginx's tcp_nopush); the cork comes out at
    the end, so the last partial segment leaves at once and the next answer is not held.
    A client this fast (loopback) gets the wider send buffer after its first slice."""
    server_end, client_end = tcp_connection
    recording = RecordingSocket(server_end)
    data = DATA * 20  # more than goes in one inline send, which needs no cork
    span = ByteRange(100, len(data))
    sent = await send(
        tmp_path,
        monkeypatch,
        cast(tuple[socket.socket, socket.socket], (recording, client_end)),
        data=data,
        span=span,
    )
    assert sent["received"] == data[100:]
    assert sent["loop_sendfile"] == []
    cork = (socket.IPPROTO_TCP, socket.TCP_CORK)
    wider = sendfile._send_buffer_request()  # 0 where the kernel's own sizing is as good
    widened = [(socket.SOL_SOCKET, socket.SO_SNDBUF, wider)] if wider else []
    assert [(level, option, value) for level, option, value in recording.options] == [
        (*cork, 1),
        *widened,
        (*cork, 0),
    ]
    assert not corked_now(server_end)


def test_the_cork_comes_out_when_the_send_fails(
    tcp_connection: tuple[socket.socket, socket.socket],
) -> None:
    server_end, _ = tcp_connection
    seen: list[bool] = []

    def failing_send() -> None:
        with sendfile.corked(server_end):
            seen.append(corked_now(server_end))
            raise ConnectionResetError("the client closed the connection")

    with pytest.raises(ConnectionResetError):
        failing_send()
    assert seen == [True]
    assert not corked_now(server_end)


def test_a_socket_that_cannot_be_corked_sends_as_it_is(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    """A Unix socket has no TCP_CORK: the block runs all the same."""
    server_end, client_end = connection
    with sendfile.corked(server_end):
        server_end.send(b"body")
    assert client_end.recv(16) == b"body"
