"""Blob downloads at the links: GET and HEAD with Range, ETag and If-Range.

The bytes go by kernel sendfile over plain HTTP; over HTTPS they are read and encrypted
in user space (the kernel cannot encrypt).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import BinaryIO, Final
from urllib.parse import quote

from aiohttp import web

from geodrop.errors import PreconditionFailed, RangeNotSatisfiable
from geodrop.fileserver import downloads, retention
from geodrop.fileserver.context import FILE_SERVER, FileServer
from geodrop.fileserver.metrics import Direction, metered_transfer
from geodrop.fileserver.sendfile import (
    FAST_CLIENT_BYTES_PER_SECOND,
    SliceSender,
    Socket,
    corked,
)
from geodrop.fileserver.transferurls import verified_grant
from geodrop.metadata.base import Transfer
from geodrop.protocol import ranges, signing
from geodrop.protocol.fileid import parse_file_id
from geodrop.protocol.tus import http_date
from geodrop.storage.base import StoredBlob
from geodrop.web.accesslog import count_body_bytes

# Sent in slices so the link's byte-rate meter moves during a long download. Each
# slice is sized to last about SLICE_SECONDS at the rate the previous one went (within
# the bounds below): a slow download still reports every 8 MiB, while a fast one is not
# cut into a hundred sendfile calls a GiB, each re-arming asyncio's writer: server CPU
# per GiB fell 6-23% in A/B runs of 1 and 8 concurrent downloads (bench/download.py).
# A second a slice keeps the meter within one heartbeat (2 s by default) of the bytes,
# which its rate average (5 s time constant) smooths anyway; against a quarter of a
# second, aria2c's 8 ranged streams (~48 -> ~12 slices a GiB) cost the file server 0.102
# -> 0.090 CPU s/GiB, nginx 0.085 (10 alternating rounds, north restarted with either).
MIN_SENDFILE_SLICE: Final = 8 * 1024 * 1024
MAX_SENDFILE_SLICE: Final = 512 * 1024 * 1024
SLICE_SECONDS: Final = 1.0
# A body this small goes out in one non-blocking sendfile on the event loop when the
# socket has room for it (it nearly always does): a sender thread's hand-offs (submitting,
# waking the thread, waking the loop, the GIL handed back and forth) cost more than the
# send (a page-cache read of at most 64 KiB). Measured with the small-file flow of
# bench/smallfiles.py, together with the file closes and the free-space check no longer
# sent to threads: 206 -> 232 transactions/s, north's CPU 4.5 -> 3.9 ms each.
INLINE_SEND_BYTES: Final = 64 * 1024

# An uploaded HTML or SVG file must never run script in a browser, nor leak where it came
# from: on every answer under /blobs, errors included (the front door adds them).
SERVED_CONTENT_HEADERS: Final = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SAFE_BLOB_HEADERS: Final = {
    **SERVED_CONTENT_HEADERS,
    "Cache-Control": "private, max-age=0, no-transform",
    "Accept-Ranges": "bytes",
}
# Whatever type its uploader declared: a browser must never render a file (SECURITY.md).
SERVED_CONTENT_TYPE: Final = "application/octet-stream"
BLOB_PATH_PREFIX: Final = "/blobs"
# The longest a SigV4 presigned URL may live (S3's limit).
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name in RFC 5987 ``filename*``.

    The fallback (RFC 6266 ``filename``) keeps printable ASCII but for quotes, backslashes,
    ``;``, ``%`` and ``/``: no header injection, and no directory part for a client that
    uses the name as given (RFC 6266 §4.3). ``filename*`` percent-encodes every byte but
    letters, digits and ``-._~``, so it decodes to the exact name.
    """
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;%/' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _authorized(server: FileServer, request: web.Request) -> tuple[str, signing.Grant]:
    file_id = str(parse_file_id(request.match_info["file_id"]))
    return file_id, verified_grant(server, request, signing.Action.DOWNLOAD, file_id)


async def blob(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /blobs/{file_id}?u&exp&sig``."""
    server = request.app[FILE_SERVER]
    file_id, grant = _authorized(server, request)
    transfer = await downloads.visible_transfer(server, file_id, grant.user)
    etag = f'"{transfer.sha256}"'
    last_modified = http_date(transfer.completed_at or transfer.created_at)
    stored = await server.store.open_file(file_id)
    try:
        decision = ranges.decide(
            method=request.method,
            size=stored.size,
            etag=etag,
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            if_match=request.headers.get("If-Match"),
            if_none_match=request.headers.get("If-None-Match"),
            last_modified=last_modified,
        )
        headers = {**SAFE_BLOB_HEADERS, "ETag": etag, "Last-Modified": last_modified}
        outcome = decision.outcome
        if outcome is ranges.RangeOutcome.UNSATISFIABLE:
            headers["Content-Range"] = ranges.unsatisfied_content_range(stored.size)
            raise RangeNotSatisfiable(
                f"the range is outside the file's {stored.size} bytes", headers=headers
            )
        if outcome is ranges.RangeOutcome.PRECONDITION_FAILED:
            raise PreconditionFailed("If-Match does not match the file's ETag", headers=headers)
        if outcome is ranges.RangeOutcome.NOT_MODIFIED:
            return web.Response(status=decision.status, headers=headers)
        span = decision.range
        disposition = content_disposition(transfer.filename)
        if request.method == "GET":
            ttl = min(server.config.limits.signed_url_ttl_seconds, MAX_PRESIGN_SECONDS)
            # The store answers as the link would: the same type and file name.
            location = await stored.presigned_url(
                ttl, content_type=SERVED_CONTENT_TYPE, content_disposition=disposition
            )
            if location is not None:
                return await _redirect_to_store(
                    server, transfer, grant.user, span, stored, location
                )
        if outcome is ranges.RangeOutcome.PARTIAL:
            headers["Content-Range"] = span.content_range(stored.size)
        headers["Content-Disposition"] = disposition
        response = web.StreamResponse(status=decision.status, headers=headers)
        response.content_type = SERVED_CONTENT_TYPE
        response.content_length = span.length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if span.length:
            with metered_transfer(request, grant.link, Direction.DOWNLOAD):
                await _send(server, request, response, stored, span, grant.link)
        # Sent to the end (a resumed download's last request included): one complete download.
        if span.stop == stored.size:
            await retention.record_download(server, transfer, grant.user, time.time())
        await response.write_eof()
        return response
    finally:
        await stored.close()


async def _redirect_to_store(
    server: FileServer,
    transfer: Transfer,
    user: str,
    span: ranges.ByteRange,
    stored: StoredBlob,
    location: str,
) -> web.Response:
    """302 to a presigned URL: the object store serves the bytes, Range included."""
    # The bytes bypass the link, so its meters never see them; a download asked to the end
    # still counts as one, as a streamed one does once sent.
    if span.stop == stored.size:
        await retention.record_download(server, transfer, user, time.time())
    headers = {**SERVED_CONTENT_HEADERS, "Cache-Control": "no-store", "Location": location}
    return web.Response(status=302, headers=headers)


async def _send(
    server: FileServer,
    request: web.Request,
    response: web.StreamResponse,
    stored: StoredBlob,
    span: ranges.ByteRange,
    link: str,
) -> None:
    def count_sent(count: int) -> None:
        server.meters.sent(link, count)
        count_body_bytes(request, count)

    local = stored.local_file()
    transport = request.transport
    # The kernel cannot encrypt: over TLS asyncio's sendfile would silently fall back to
    # 256 KiB reads, a thread hop each, behind aiohttp's back; the store's stream is better.
    tls = transport is not None and transport.get_extra_info("sslcontext") is not None
    sock: Socket | None = transport.get_extra_info("socket") if transport else None
    if local is not None and transport is not None and sock is not None and not tls:
        if span.length <= INLINE_SEND_BYTES and not transport.get_write_buffer_size():
            inline = _send_inline(sock, local, span)
            count_sent(inline)
            if inline == span.length:
                return
            span = ranges.ByteRange(span.start + inline, span.stop)
        sender = SliceSender(sock, local)
        try:
            # Full segments only until the end of the body (nginx's tcp_nopush).
            with corked(sock):
                await _send_slices(transport, sender, local, span, count_sent)
        finally:
            sender.close()
        return
    async for chunk in stored.chunks(span.start, span.stop):
        await response.write(chunk)
        count_sent(len(chunk))


def _send_inline(sock: Socket, local: BinaryIO, span: ranges.ByteRange) -> int:
    """As much of a small ``span`` as the socket takes now, by one non-blocking sendfile."""
    try:
        return os.sendfile(sock.fileno(), local.fileno(), span.start, span.length)
    except BlockingIOError:
        return 0  # no room at all: the slices wait for it


async def _send_slices(
    transport: asyncio.Transport,
    sender: SliceSender,
    local: BinaryIO,
    span: ranges.ByteRange,
    count_sent: Callable[[int], None],
) -> None:
    """Send ``span`` of the local file by kernel sendfile, slice by slice, each sized to
    about :data:`SLICE_SECONDS` of the connection's last rate; ``count_sent`` hears of
    the bytes as they go, those a client took before it went away included."""
    loop = asyncio.get_running_loop()
    position = span.start
    slice_bytes = MIN_SENDFILE_SLICE
    while position < span.stop:
        count = min(slice_bytes, span.stop - position)
        started = loop.time()
        if transport.get_write_buffer_size():
            # Bytes of an earlier answer still wait in the transport: asyncio's
            # sendfile sends them first.
            sent = await _sendfile_on_loop(transport, local, position, count, count_sent)
        else:
            done = await sender.send(position, count)
            sent = done.sent
            count_sent(sent)  # what the client took, before it went away too
            if done.error is not None:
                raise done.error
            if sent < count:
                # A slow client: the event loop waits for it, not a thread.
                rest = count - sent
                sent += await _sendfile_on_loop(transport, local, position + sent, rest, count_sent)
        if sent == 0:
            raise ConnectionResetError("connection lost during sendfile")
        position += sent
        took = loop.time() - started
        if took <= 0 or sent / took >= FAST_CLIENT_BYTES_PER_SECOND:
            sender.client_is_fast()
        rate_slice = sent * SLICE_SECONDS / took if took > 0 else MAX_SENDFILE_SLICE
        slice_bytes = int(min(MAX_SENDFILE_SLICE, max(MIN_SENDFILE_SLICE, rate_slice)))


async def _sendfile_on_loop(
    transport: asyncio.Transport,
    local: BinaryIO,
    position: int,
    count: int,
    count_sent: Callable[[int], None],
) -> int:
    """asyncio's sendfile of ``count`` bytes from ``position``; ``count_sent`` hears of the
    bytes sent, those the client took before it went away included.

    asyncio leaves the file's position after the last byte sent, also when it raises
    (documented for ``loop.sendfile``); it moves it only once a byte went, hence the seek.
    """
    local.seek(position)
    try:
        sent = await asyncio.get_running_loop().sendfile(transport, local, position, count)
    except BaseException:
        count_sent(local.tell() - position)
        raise
    count_sent(sent)
    return sent
