"""A big PATCH body straight from the connection's socket into the upload's file, from threads.

Through aiohttp, every read of a body becomes a bytes object, is copied once more by
the HTTP parser into another, queued on the request's stream and handed to the handler,
which writes it and passes it to the hash thread: the event loop's thread did all of
that but the hash. Here, once the request's head is parsed, the connection stops being
read by the event loop and the body is read the way the raw ceiling of bench/upload.py
reads it: a thread per body being received, the socket blocking for a slice of it,
``recv_into`` a few reused buffers and ``os.write`` from them, while a second thread
hashes each buffer once it is written. The event loop only hears when a slice is done.
Measured with bench/upload.py's client (1 GiB in one PATCH, fsynced, the same machine,
rounds one after the other): 1.01-1.04 GB/s at 1.58-1.63 CPU s/GiB through aiohttp,
1.09-1.19 GB/s at 1.25-1.31 s/GiB here; what is left is the kernel's (receiving, the
page cache, ext4) and sha256's, about half each.

The HTTP parser never sees the bytes read here, so the connection cannot carry another
request: it closes after the answer (:func:`take_over_body`). A client that
sends nothing for :data:`BYTE_WAIT_MILLISECONDS` hands its slice back and is waited for
by the event loop, which costs no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web

from geodrop.errors import BodyStalled
from geodrop.fileserver.sendfile import Socket, blocking, timeval
from geodrop.web.frontdoor import CLOSES_CONNECTION

if TYPE_CHECKING:
    from hashlib import _Hash

# Bodies being received at once, one thread each; more wait for a thread.
RECEIVER_THREADS: Final = 16
# How long a receiving thread waits for bytes (SO_RCVTIMEO) before it hands the rest of
# its slice back to the event loop. A fast sender's next segment is there within
# microseconds; a slow client (1 MB/s: a 64 KiB burst every ~60 ms) then holds a thread
# for a fraction of its time instead of all of it, so a few threads serve many of them.
BYTE_WAIT_MILLISECONDS: Final = 20
# A body of at least this many bytes (by its Content-Length) is received here; a smaller
# one is not worth the connection it costs.
DIRECT_BODY_BYTES: Final = 8 * 1024 * 1024
# One recv_into / write / hash unit, and how many of them one body has in flight
# between receiving and hashing: the memory a body being received holds. bench/upload.py
# (1 GiB, one PATCH): 2 buffers of 1 MiB 0.93-1.15 GB/s, 3 1.22-1.27, 4 1.09-1.24;
# bench/memory.py's 8 transfers at once: north's peak RSS 80, 87-90 and 97 MiB.
BUFFER_BYTES: Final = 1024 * 1024
BUFFERS: Final = 3

# A receiving thread hands its slice back after this long, so the link meters and a
# cancelled request hear of it at least this often.
SLICE_SECONDS: Final = 1.0
# ... and after this many bytes: each slice's bytes are written back by the store's
# writer (storage/writeback.py), so the final fsync has at most about this much to do.
SLICE_BYTES: Final = 32 * 1024 * 1024

# take_over_body leans on how aiohttp's request handler behaves once a body's stream is
# ended early: draining and ending it resumes reading (paused again here), and a closed
# protocol ends the connection after the answer. That was verified against these
# releases (tests/e2e/test_big_patch_bodies.py and the resume and crash tests); under any
# other, every body is read through aiohttp, slower but relying on nothing internal.
TAKE_OVER_VERIFIED: Final = ("3.14.",)
take_over_verified = aiohttp.__version__.startswith(TAKE_OVER_VERIFIED)

_receivers = ThreadPoolExecutor(max_workers=RECEIVER_THREADS, thread_name_prefix="recvfile")


@dataclass(frozen=True, slots=True)
class TakenBody:
    """A request body the event loop no longer reads (:func:`take_over_body`)."""

    buffered: bytes  # what aiohttp had read of it already
    sock: Socket  # the connection, where the rest of it is
    remaining: int  # how many bytes of it are still to come


def take_over_body(request: web.Request, room: int) -> TakenBody | None:
    """Stop the event loop reading ``request``'s connection, and hand its body over.

    None (nothing changes) for a body under :data:`DIRECT_BODY_BYTES`, of unknown length
    or longer than ``room`` (refused the usual way, its connection kept), on a
    connection that is not a plain socket (TLS, a test client), or under an aiohttp
    release this was not verified with (:data:`TAKE_OVER_VERIFIED`). Otherwise the
    connection is closed after the answer, and aiohttp neither reads nor waits for the
    rest of the body.
    """
    transport = request.transport
    length = request.content_length
    if (
        not take_over_verified
        or transport is None
        or length is None
        or not DIRECT_BODY_BYTES <= length <= room
    ):
        return None
    sock: Socket | None = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        return None
    if not isinstance(transport, asyncio.ReadTransport):
        return None
    transport.pause_reading()
    chunks = []
    while data := request.content.read_nowait(-1):
        chunks.append(data)
    request.content.feed_eof()
    request.protocol.close()
    request[CLOSES_CONNECTION] = True
    # Draining and the end of the stream let aiohttp resume reading (its flow control):
    # paused again, last, before the event loop runs, so no byte more reaches it.
    transport.pause_reading()
    buffered = b"".join(chunks)
    return TakenBody(buffered, sock, length - len(buffered))


class BodyReceiver:
    """Receives the rest of one body into one file (:meth:`receive`), hashing it on the way.

    Args:
        sock: the connection's socket, no longer read by the event loop.
        fd: the upload's file, positioned where the body's bytes go.
        hashes: updated with every byte received, in order, on a thread of their own.
        written: told, on the event loop, of the bytes each slice wrote to the file,
            a slice that failed part way included.
        idle_seconds: how long the client may send nothing (:class:`BodyStalled` after).
    """

    def __init__(
        self,
        sock: Socket,
        fd: int,
        hashes: Sequence[_Hash],
        written: Callable[[int], None],
        idle_seconds: float,
    ) -> None:
        self._written = written
        self._idle_seconds = idle_seconds
        # Duplicates: the descriptors the threads use cannot be closed and reused under
        # them; both are closed once no thread uses them (close).
        self._in = socket.socket(fileno=os.dup(sock.fileno()))
        self._fd = os.dup(fd)
        self._may_block = True
        try:
            self._in.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(BYTE_WAIT_MILLISECONDS)
            )
        except OSError:
            self._may_block = False  # then the event loop waits for every buffer's bytes
        self._hashing = _HashPipeline(hashes)
        self._cancelled = threading.Event()
        self._receiving = threading.Lock()

    async def receive(self, count: int) -> int:
        """Receive up to ``count`` bytes into the file; how many were written. Fewer when
        the client sent nothing for :data:`BYTE_WAIT_MILLISECONDS` (then this waits for
        its next bytes on the event loop before it returns).

        Raises:
            ConnectionResetError: the client closed the connection before the body's end.
            BodyStalled: it sent nothing for ``idle_seconds``.
            OSError: the file could not be written (what was written stays).
        """
        loop = asyncio.get_running_loop()
        if self._may_block:
            work = loop.run_in_executor(_receivers, self._receive_blocking, count)
        else:
            work = loop.run_in_executor(_receivers, self._receive_available, count)
        try:
            done = await asyncio.shield(work)
        except asyncio.CancelledError:
            # Nothing more may reach the file once the upload's lock is let go: end the
            # thread's wait for bytes and wait for its last write.
            self._cancelled.set()
            with contextlib.suppress(OSError):
                self._in.shutdown(socket.SHUT_RD)
            await asyncio.wait([work])
            if not work.cancelled() and work.exception() is None:
                self._written(work.result().written)
            raise
        if done.written:
            self._written(done.written)
        if done.error is not None:
            raise done.error
        if done.written == 0:
            await self._readable(loop)
        return done.written

    async def hashed(self) -> None:
        """Wait until every byte received so far is hashed."""
        await asyncio.to_thread(self._hashing.drain)

    def close(self) -> None:
        """Release the duplicates and the hashing thread (call once receiving is over)."""
        self._cancelled.set()
        self._hashing.stop()
        with self._receiving:
            self._in.close()
            os.close(self._fd)

    async def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._in.fileno()

        def heard() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, heard)
        try:
            async with idle_limit(self._idle_seconds):
                await ready
        finally:
            loop.remove_reader(fd)

    def _receive_blocking(self, count: int) -> _Slice:
        with self._receiving, blocking(self._in.fileno()):
            return self._receive_locked(count, wait=True)

    def _receive_available(self, count: int) -> _Slice:
        with self._receiving:
            return self._receive_locked(count, wait=False)

    def _receive_locked(self, count: int, *, wait: bool) -> _Slice:
        done = _Slice()
        deadline = time.monotonic() + SLICE_SECONDS
        while done.written < count and not self._cancelled.is_set():
            buffer = self._hashing.free_buffer()
            view = memoryview(buffer)[: min(BUFFER_BYTES, count - done.written)]
            try:
                filled, ended = _fill(self._in, view, wait=wait)
            except OSError as exc:  # the connection failed
                filled, ended, done.error = 0, False, exc
            if filled:  # received bytes are kept even when cancelled: they are the offset
                kept = 0
                try:
                    while kept < filled:
                        kept += os.write(self._fd, view[kept:filled])
                except OSError as exc:  # what was written stays: it is the offset
                    done.error = exc
                done.written += kept
                self._hashing.hash(buffer, kept)
            else:
                self._hashing.give_back(buffer)
            if ended:
                done.error = ConnectionResetError(
                    "the client closed the connection before the body's end"
                )
            if done.error is not None or filled < len(view):
                # Failed, or the client stalled: the event loop waits for it, the body
                # holding no buffer meanwhile.
                self._hashing.shrink()
                break
            if time.monotonic() > deadline:
                break
        return done


@dataclass(slots=True)
class _Slice:
    """What one slice of a body came to."""

    written: int = 0  # bytes written to the file
    error: BaseException | None = None  # why it ended early, if it failed


def _fill(sock: socket.socket, view: memoryview, *, wait: bool) -> tuple[int, bool]:
    """Receive into ``view`` until it is full, the client stalls or the connection ends;
    ``(bytes received, whether the connection ended)``."""
    filled = 0
    while filled < len(view):
        try:
            got = sock.recv_into(view[filled:])
        except (BlockingIOError, InterruptedError):
            break  # nothing for BYTE_WAIT_MILLISECONDS (or, not waiting, nothing now)
        if got == 0:
            return filled, True
        filled += got
        if not wait:
            break
    return filled, False


class _HashPipeline:
    """A thread hashing written buffers in order, handing each back once hashed.

    Buffers are made when a slice needs them, up to :data:`BUFFERS`, and dropped when
    a slice ends because its client stalled (:meth:`shrink`): a body waited for on the
    event loop holds none, so memory goes with the bodies being received, not with
    the bodies open.
    """

    def __init__(self, hashes: Sequence[_Hash]) -> None:
        self._hashes = tuple(hashes)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._made = 0  # buffers in use, free or being hashed (the receiving side's count)
        self._filled: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def free_buffer(self) -> bytearray:
        """A buffer to receive into (waits while all are still being hashed)."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if self._made < BUFFERS:
                self._made += 1
                return bytearray(BUFFER_BYTES)
        return self._free.get()

    def shrink(self) -> None:
        """Drop the buffers not being hashed (those are dropped at the next shrink)."""
        while True:
            try:
                self._free.get_nowait()
            except queue.Empty:
                return
            self._made -= 1

    def give_back(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def hash(self, buffer: bytearray, length: int) -> None:
        """Hash the first ``length`` bytes of ``buffer`` after those given before."""
        if not self._hashes or not length:
            self._free.put(buffer)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="upload hash", daemon=True)
            self._thread.start()
        with self._idle:
            self._pending += 1
        self._filled.put((buffer, length))

    def drain(self) -> None:
        """Wait until every buffer given is hashed."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def stop(self) -> None:
        if self._thread is not None:
            self._filled.put(None)
            self._thread = None

    def _run(self) -> None:
        while (item := self._filled.get()) is not None:
            buffer, length = item
            view = memoryview(buffer)[:length]
            for sha in self._hashes:
                sha.update(view)
            view.release()
            self._free.put(buffer)
            with self._idle:
                self._pending -= 1
                if not self._pending:
                    self._idle.notify_all()


@contextlib.asynccontextmanager
async def idle_limit(seconds: float) -> AsyncIterator[None]:
    """Inside the block, waiting ``seconds`` for a body's next bytes raises
    :class:`BodyStalled` (``limits.body_idle_seconds``, for either way a body is read)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BodyStalled(f"the body brought no byte for {seconds:g} s") from None


@contextlib.contextmanager
def receiving(
    sock: Socket,
    fd: int,
    hashes: Sequence[_Hash],
    written: Callable[[int], None],
    idle_seconds: float,
) -> Iterator[BodyReceiver]:
    """A :class:`BodyReceiver` for the block, closed after it."""
    receiver = BodyReceiver(sock, fd, hashes, written, idle_seconds)
    try:
        yield receiver
    finally:
        receiver.close()
