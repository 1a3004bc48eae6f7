"""Kernel sendfile of a stored file to a download's connection, from a thread.

asyncio's ``loop.sendfile`` calls ``sendfile`` again each time the event loop hears the
socket has room. Here one thread per slice in flight sends it, as a thread-per-connection
server does, with the socket switched to blocking for the slice: the kernel waits for
room inside one ``sendfile`` call, and the event loop only hears when a slice is done.
The thread writes to a duplicate of the socket's descriptor, so the number it writes to
cannot be closed and reused under it, and a cancelled download shuts the connection's
sending side, which ends the call at once.

A non-blocking socket in the thread cost a return to Python, and a trip out of and back
into the GIL, each time its buffer filled. Measured with bench/download.py's aria2c and 8
ranged streams (1 GiB, strace -c of the file server over 4 GiB): 480 sendfile, 400 poll
and 1,670 futex calls per GiB before, 44, none and 1,180 blocking for the slice; CPU per
GiB (cgroup cpuacct, 10 alternating rounds against nginx on the same machine) 0.098 s
-> 0.090 s, nginx 0.069 s; with 8 curl streams 0.116 s -> 0.103 s, nginx 0.129 s.

While a body goes out the connection is corked (:func:`corked`, nginx's
``tcp_nopush``): a client's receive windows decide how big the sender's TCP segments
may get, and uncorked each send leaves with whatever room the last window update
made, so most segments stayed at half a 64 KiB window. Measured (1 GiB, curl, one
stream, alternating rounds, same machine): 34 KiB segments and 2.04 GB/s at 0.49 CPU
s/GiB uncorked; corked 64 KiB, 2.69 GB/s and 0.36 s/GiB, nginx (``tcp_nopush on``) 64
KiB, 2.80 GB/s and 0.37 s/GiB. aria2c with 8 streams: 22 -> 50 KiB, 0.80 -> 0.97
GB/s. Earlier, with 8 curl streams, the thread per slice cut the server's CPU per GiB
from 0.345 s (asyncio's sendfile, corked) to 0.29 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol

# Slices being sent at once, one thread each; more wait for a thread (a thread never
# waits long for a slow client, below, so none waits long for a thread).
SENDER_THREADS: Final = 32
# How long a thread's sendfile waits for room in the socket (SO_SNDTIMEO) before it hands
# the rest of its slice back: a client that slow is waited for by the event loop, which
# costs no thread.
ROOM_WAIT_MILLISECONDS: Final = 100


class Socket(Protocol):
    """What a transport's ``socket`` extra gives (asyncio's TransportSocket)."""

    def fileno(self) -> int: ...

    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...

    def getsockopt(self, level: int, option: int, /) -> int: ...


@contextlib.contextmanager
def corked(sock: Socket) -> Iterator[None]:
    """Hold back partial TCP segments while the block sends (Linux ``TCP_CORK``); what is
    left goes out when the cork comes out. A socket that cannot be corked (not TCP, not
    Linux) sends as it is."""
    option: int | None = getattr(socket, "TCP_CORK", None)
    corked_by: int | None = None  # the option set, once it is
    if option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
            corked_by = option
    try:
        yield
    finally:
        if corked_by is not None:
            with contextlib.suppress(OSError):  # the connection may be gone already
                sock.setsockopt(socket.IPPROTO_TCP, corked_by, 0)


_senders = ThreadPoolExecutor(max_workers=SENDER_THREADS, thread_name_prefix="sendfile")

# The send buffer a client that takes bytes fast gets (widen_send_buffer), at most, and
# how fast is fast: the buffer (doubled by Linux) then holds at most a quarter of a
# second of the client's bytes, less than the link meter already lags by (a slice
# of blob_handlers lasts about a second).
SEND_BUFFER_BYTES: Final = 8 * 1024 * 1024
FAST_CLIENT_BYTES_PER_SECOND: Final = 64 * 1024 * 1024
_WMEM_MAX: Final = Path("/proc/sys/net/core/wmem_max")
_TCP_WMEM: Final = Path("/proc/sys/net/ipv4/tcp_wmem")


@functools.cache
def _send_buffer_request() -> int:
    """What to ask SO_SNDBUF for; 0 when that would not beat the kernel's own sizing.

    Linux caps the request at ``net.core.wmem_max`` and doubles it; once set, the
    buffer no longer grows by itself, up to ``net.ipv4.tcp_wmem``'s maximum. On a stock
    kernel (wmem_max 208 KiB, tcp_wmem up to 4 MiB) asking would shrink the buffer.
    """
    try:
        wmem_max = int(_WMEM_MAX.read_text())
        grows_to = int(_TCP_WMEM.read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux, or not readable: leave the kernel's own sizing alone
    wanted = min(SEND_BUFFER_BYTES, wmem_max)
    return wanted if wanted * 2 > grows_to else 0


def widen_send_buffer(sock: Socket) -> bool:
    """Give a fast client's connection a send buffer of up to :data:`SEND_BUFFER_BYTES`,
    if that is more than the kernel's own sizing has given it; whether it did.

    Linux sizes a TCP send buffer itself, up to ``net.ipv4.tcp_wmem``'s maximum (4 MiB
    by default); a sendfile fills it, returns, and waits for room again. Where
    ``net.core.wmem_max`` allows more (:func:`_send_buffer_request`), a fast client
    gets more. Over a fast
    path each wait is a hand-over between the sender thread, the GIL and the client,
    and the receiving side's TCP work lands in the sender's context more often.
    Measured with bench/download.py's 8 curl streams (1 GiB each, alternating rounds):
    geodrop's CPU per GiB 1.55-1.89x nginx's with the kernel's 4 MiB, 0.67-0.98x with 8
    MiB (the client's CPU rose by as much: the work moved back to the receiver); with
    aria2c's 8 ranged streams 1.38-1.62x -> 1.30x. A
    buffer only holds what the client has not yet taken, so a slow client would only
    pin more page cache with it: only a client that took a slice at
    :data:`FAST_CLIENT_BYTES_PER_SECOND` or more gets one (:meth:`SliceSender.client_is_fast`).
    """
    wanted = _send_buffer_request()
    if not wanted:
        return False
    try:
        # Linux doubles what is asked (room for its bookkeeping) and reports the doubled size.
        if wanted * 2 <= sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF):
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wanted)
    except OSError:
        return False  # the connection is gone: nothing to widen
    return True


@dataclass(frozen=True, slots=True)
class SliceSent:
    """What sending one slice came to."""

    sent: int  # bytes of the file the connection took
    error: OSError | None = None  # the connection failed after those bytes


class SliceSender:
    """Sends slices of one file to one connection (:meth:`send`), until :meth:`close`."""

    def __init__(self, sock: Socket, file: BinaryIO) -> None:
        self._sock = sock
        # The duplicate the threads write to. Its options and blocking mode are the
        # connection's own: it is blocking only while a thread sends a slice, which the
        # event loop does not write to meanwhile (it still reads, on readiness only).
        self._out = socket.socket(fileno=os.dup(sock.fileno()))
        # Without a send timeout a stalled client could hold a thread for good: then the
        # thread sends nothing and the event loop sends every slice.
        self._may_block = True
        try:
            self._out.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(ROOM_WAIT_MILLISECONDS)
            )
        except OSError:
            self._may_block = False
        self._widened = False
        self._file_fd = file.fileno()
        self._cancelled = threading.Event()
        # Held by the thread sending a slice: the descriptor is closed only after it.
        self._sending = threading.Lock()

    async def send(self, offset: int, count: int) -> SliceSent:
        """Send up to ``count`` bytes of the file from ``offset``. Fewer when the file
        ended first, when the client took no bytes for :data:`ROOM_WAIT_MILLISECONDS`
        (send the rest another way), or when the connection failed (the client went
        away: the error comes with the bytes it took before)."""
        if not self._may_block:
            return SliceSent(0)  # no send timeout (see __init__): the event loop sends it
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(_senders, self._send_blocking, offset, count)
        except asyncio.CancelledError:
            self._cancelled.set()
            # A body cut short ends its connection anyway; shutting the sending side
            # now ends a sendfile still waiting for room instead of after the slice.
            with contextlib.suppress(OSError):  # gone already
                self._out.shutdown(socket.SHUT_WR)
            raise

    def client_is_fast(self) -> None:
        """Say the client took a slice at :data:`FAST_CLIENT_BYTES_PER_SECOND` or more:
        its connection gets a wider send buffer (:func:`widen_send_buffer`), once."""
        if not self._widened:
            self._widened = True
            widen_send_buffer(self._sock)

    def close(self) -> None:
        """Stop any slice still being sent and release the duplicate descriptor, once
        no thread uses it (in a sender thread: the event loop never waits for one)."""
        self._cancelled.set()
        _senders.submit(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._sending:
            self._out.close()

    def _send_blocking(self, offset: int, count: int) -> SliceSent:
        with self._sending:
            return self._send_locked(offset, count)

    def _send_locked(self, offset: int, count: int) -> SliceSent:
        sent = 0
        out = self._out.fileno()
        with blocking(out):
            while sent < count and not self._cancelled.is_set():
                try:
                    n = os.sendfile(out, self._file_fd, offset + sent, count - sent)
                except BlockingIOError:
                    break  # nothing taken for ROOM_WAIT_MILLISECONDS: not worth a thread
                except OSError as exc:  # the connection failed
                    return SliceSent(sent, exc)
                if n == 0:
                    break  # the file is shorter than it was said to be
                # Fewer bytes than asked: the client stalled part way (the wait for room
                # timed out) or a signal came; the next call waits again.
                sent += n
        return SliceSent(sent)


def timeval(milliseconds: int) -> bytes:
    """A ``struct timeval`` for socket timeouts."""
    return struct.pack("ll", milliseconds // 1000, milliseconds % 1000 * 1000)


@contextlib.contextmanager
def blocking(fd: int) -> Iterator[None]:
    """Make the socket blocking while the block runs, non-blocking again after."""
    os.set_blocking(fd, True)
    try:
        yield
    finally:
        os.set_blocking(fd, False)
