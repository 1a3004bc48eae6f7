"""Bigger socket reads while a big request body arrives.

asyncio's selector transport reads a connection at most 256 KiB at a time, and each
read becomes a chunk of its own on its way through aiohttp's parser and stream to the
handler (a bytes object, a parser callback, a queue entry, a write and a hash update).
A tus PATCH of a GiB is some 4,000 of those. :func:`larger_reads` lets the connection
read up to :data:`BODY_READ_BYTES` at once for as long as the body arrives: what a read
brings is still only what the kernel holds, so a slow client sends small chunks as
before, while a fast one comes in half as many. Measured with bench/upload.py (256
MiB, alternating runs of 5 rounds): server CPU 2.60-2.68 -> 2.12-2.40 s/GiB, geodrop /
the raw ceiling 0.69-0.71x -> 0.77-0.80x; north's peak RSS with 8 uploads at once
(bench/memory.py) 64-65 -> 68 MiB. Reads of 1 MiB gained no more (0.80-0.83x) for
77 MiB.

aiohttp still pauses reading once its buffer is full, so a connection holds at most
about one read more than before. A tus body of 8 MiB or more on a plain socket to local
storage is not read through aiohttp at all (fileserver/recvfile.py); this serves the
rest (smaller bodies, chunked ones, TLS, object storage). geodrop runs on asyncio's own
event loop (DESIGN.md §5: another loop would cost aiohttp its kernel sendfile); a
transport without this setting is left to read as it always does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from aiohttp import web

BODY_READ_BYTES: Final = 512 * 1024
# The transport attribute asyncio's selector transports read by (a class default).
_READ_SIZE_ATTRIBUTE: Final = "max_size"


@contextlib.contextmanager
def larger_reads(request: web.Request, size: int = BODY_READ_BYTES) -> Iterator[None]:
    """Read the request's connection up to ``size`` bytes at a time inside the block."""
    transport = request.transport
    before = getattr(transport, _READ_SIZE_ATTRIBUTE, None)
    if not isinstance(before, int) or before >= size:
        yield
        return
    setattr(transport, _READ_SIZE_ATTRIBUTE, size)
    try:
        yield
    finally:
        setattr(transport, _READ_SIZE_ATTRIBUTE, before)
