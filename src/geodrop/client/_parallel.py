"""Parallel sending: a large file as partial uploads over parallel connections, then one
final upload that the server concatenates them into (tus concatenation).

Each partial upload is an ordinary resumable tus upload of one piece of the file. The
resume record lists them as they are created, so a killed send resumes every piece from
the server's offset; the final upload is made last, in one request, and only then does
the file exist (and reach its receivers' inboxes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin, urlsplit

import aiohttp

from geodrop.client._http import raise_for_error
from geodrop.client._models import Progress, SentFile
from geodrop.client._state import PendingUpload
from geodrop.client._tus import TUS_VERSION, send_bytes, server_offset
from geodrop.errors import (
    ChecksumMismatch,
    Forbidden,
    GeodropError,
    Gone,
    IntegrityError,
    NetworkError,
    NotFound,
)
from geodrop.protocol.tus import encode_metadata

if TYPE_CHECKING:
    from geodrop.client._client import Client

MIB: Final = 1024 * 1024
# Below this size one connection is as good: the partial and final requests and the
# server's read-back of the whole file would cost more than parallel streams win.
PARALLEL_THRESHOLD: Final = 64 * MIB
DEFAULT_PARTIALS: Final = 4
# The client keeps at most 16 connections (_client.py): more pieces would only queue.
MAX_PARTIALS: Final = 16
# Pieces but the last are a multiple of this: on S3 each partial upload becomes a part
# of one multipart upload, and every part but the last must be at least 5 MiB.
PIECE_GRANULE: Final = 8 * MIB
# The final upload is answered once the server has concatenated the pieces and read the
# whole file back for its sha256: allow for a slow store.
FINAL_SECONDS_BASE: Final = 60.0
FINAL_BYTES_PER_SECOND: Final = 10 * MIB


@dataclass(frozen=True, slots=True)
class LocalFile:
    """The file being sent, and what it is sent as."""

    path: Path
    name: str
    size: int
    sha256: str
    receivers: tuple[str, ...]


def split(size: int, parts: int) -> list[int]:
    """The sizes of the pieces a file of ``size`` bytes is sent in, at most ``parts`` of them.

    Every piece but the last has the same size, a multiple of :data:`PIECE_GRANULE`; the
    last holds the rest. A small file has fewer pieces; one piece means no split.
    """
    if parts <= 1 or size <= PIECE_GRANULE:
        return [size]
    granules = -(-size // PIECE_GRANULE)
    each = -(-granules // parts) * PIECE_GRANULE
    pieces = [each] * (size // each)
    if size % each:
        pieces.append(size % each)
    return pieces


def pieces(size: int, parallel: int | None) -> list[int]:
    """How to send a file of ``size`` bytes: :data:`DEFAULT_PARTIALS` pieces from
    :data:`PARALLEL_THRESHOLD` on unless ``parallel`` says how many (1: no split)."""
    if parallel is None:
        parallel = DEFAULT_PARTIALS if size >= PARALLEL_THRESHOLD else 1
    return split(size, parallel)


async def server_offsets(client: Client, pending: PendingUpload) -> list[int] | None:
    """How far the server has each partial upload of ``pending`` created so far.

    Returns:
        The offsets, or None if one of them is gone (expired or deleted): the others
        are then deleted too, so that they do not hold the sender's quota, and the
        send starts afresh.
    """
    offsets: list[int] = []
    for url in pending.partial_urls:
        try:
            offsets.append(await client.retrying(functools.partial(server_offset, client, url)))
        except (NotFound, Gone, Forbidden):
            await _delete_quietly(client, pending.partial_urls)
            return None
    return offsets


async def send(
    client: Client,
    key: str,
    pending: PendingUpload,
    file: LocalFile,
    offsets: list[int],
    progress: Callable[[Progress], None] | None,
) -> SentFile:
    """Create the partial uploads not yet created, send every piece at once, make the final.

    Args:
        key: the resume record of the send.
        offsets: how far the server has each partial upload already created.

    Raises:
        IntegrityError: the file changed while it was sent (its sha256 does not match).
    """
    resumed_from = sum(offsets)
    urls = list(pending.partial_urls)
    offsets = list(offsets)
    for size in pending.partial_sizes[len(urls) :]:
        create = functools.partial(_create_partial, client, pending, size)
        urls.append(await client.retrying(create))
        offsets.append(0)
        # Saved one by one: a send killed now must not forget a partial upload it made.
        pending = replace(pending, partial_urls=tuple(urls))
        client.records.save(key, pending)
    tracker = _Tracker(progress, offsets, file.size)
    start = 0
    try:
        async with asyncio.TaskGroup() as pieces_sent:
            for index, (url, size) in enumerate(zip(urls, pending.partial_sizes, strict=True)):
                reached = functools.partial(tracker.reached, index)
                pieces_sent.create_task(
                    send_bytes(client, url, file.path, start, size, offsets[index], reached)
                )
                start += size
    except ExceptionGroup as failed:
        # The first piece that failed stopped the others; callers expect its error alone.
        raise _first(failed) from None
    try:
        final_url = await client.retrying(
            functools.partial(_create_final, client, pending.creation_url, urls, file)
        )
    except ChecksumMismatch:
        client.records.forget(key)
        await _delete_quietly(client, urls)
        raise IntegrityError(
            f"{file.path} changed while it was being sent; send it again"
        ) from None
    client.records.forget(key)
    return SentFile(
        file_id=urlsplit(final_url).path.rsplit("/", 1)[-1],
        name=file.name,
        size=file.size,
        sha256=file.sha256,
        region=pending.region,
        link=pending.link,
        upload_url=final_url,
        resumed_from=resumed_from,
        partials=len(urls),
    )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class _Tracker:
    """Reports the progress of all pieces together."""

    def __init__(
        self, progress: Callable[[Progress], None] | None, offsets: list[int], total: int
    ) -> None:
        self._progress = progress
        self._offsets = list(offsets)
        self._total = total

    def reached(self, index: int, offset: int) -> None:
        self._offsets[index] = offset
        if self._progress is not None:
            self._progress(Progress("upload", sum(self._offsets), self._total))


async def _create_partial(client: Client, pending: PendingUpload, size: int) -> str:
    """tus creation of one partial upload; its URL."""
    headers = {
        **client.auth_headers(),
        "Tus-Resumable": TUS_VERSION,
        "Upload-Concat": "partial",
        "Upload-Length": str(size),
    }
    return await _created(client, pending.creation_url, headers)


async def _create_final(client: Client, creation_url: str, urls: list[str], file: LocalFile) -> str:
    """tus creation of the final upload of ``urls``; the server answers once it is complete."""
    metadata = {"filename": file.name, "receivers": ",".join(file.receivers), "sha256": file.sha256}
    headers = {
        **client.auth_headers(),
        "Tus-Resumable": TUS_VERSION,
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": encode_metadata(metadata),
    }
    seconds = FINAL_SECONDS_BASE + file.size / FINAL_BYTES_PER_SECOND
    timeout = aiohttp.ClientTimeout(sock_connect=FINAL_SECONDS_BASE, sock_read=seconds)
    return await _created(client, creation_url, headers, timeout)


async def _created(
    client: Client,
    creation_url: str,
    headers: dict[str, str],
    read_timeout: aiohttp.ClientTimeout | None = None,
) -> str:
    """POST a tus creation request; the created upload's URL."""
    try:
        async with client.session.post(
            creation_url, headers=headers, timeout=read_timeout
        ) as answer:
            await raise_for_error(answer)
            return urljoin(creation_url, answer.headers["Location"])
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(f"cannot reach {creation_url}: {exc}") from None


async def _delete_quietly(client: Client, urls: tuple[str, ...] | list[str]) -> None:
    """tus termination of uploads no longer wanted; they expire anyway if this fails."""
    for url in urls:
        with contextlib.suppress(GeodropError, aiohttp.ClientError, TimeoutError, OSError):
            async with client.session.delete(url, headers={"Tus-Resumable": TUS_VERSION}) as answer:
                await raise_for_error(answer)
