"""Moving bytes: tus uploads and Range downloads that resume where they stopped."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import aiohttp

from geodrop.client import _parallel
from geodrop.client._http import raise_for_error
from geodrop.client._models import Progress, ReceivedFile, SentFile
from geodrop.client._state import PendingUpload
from geodrop.client._tus import CHUNK, send_bytes, server_offset
from geodrop.errors import (
    BadRequest,
    ChecksumMismatch,
    Forbidden,
    Gone,
    IntegrityError,
    NetworkError,
    NotFound,
)

if TYPE_CHECKING:
    from geodrop.client._client import Client

ProgressCallback = Callable[[Progress], None]

PART_SUFFIX: Final = ".part"


def _report(progress: ProgressCallback | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(Progress(phase, done, total))


async def file_sha256(path: Path, progress: ProgressCallback | None = None) -> str:
    """The sha256 of a file, read in a thread so the event loop stays free."""
    total = await _size(path)
    sha = hashlib.sha256()
    # Opened and closed on the event loop, as _tus._file_body's file.
    file: BinaryIO = path.open("rb")
    try:
        done = 0
        while chunk := await asyncio.to_thread(file.read, 8 * CHUNK):
            sha.update(chunk)
            done += len(chunk)
            _report(progress, "hashing", done, total)
    finally:
        file.close()
    return sha.hexdigest()


async def _size(path: Path) -> int:
    """The size of a file, 0 if there is none."""

    def size() -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    return await asyncio.to_thread(size)


# -- sending -------------------------------------------------------------------


async def _negotiate_upload(
    client: Client, name: str, size: int, sha256: str, receivers: list[str], pieces: list[int]
) -> PendingUpload:
    """A new upload; a parallel one if the file is in several ``pieces`` and the server can."""
    location = await client.locate()
    payload: dict[str, Any] = {"name": name, "size": size, "sha256": sha256, "receivers": receivers}
    if len(pieces) > 1:
        payload["parallel"] = True
    answer: dict[str, Any] = await client.retrying(
        lambda: client.request_json("POST", f"{location.access_url}/v1/uploads", payload=payload)
    )
    if "creation_url" in answer:
        most = int(answer["max_partials"])
        return PendingUpload(
            "",
            "",
            answer["region"],
            answer["link"],
            creation_url=answer["creation_url"],
            partial_sizes=tuple(pieces if len(pieces) <= most else _parallel.split(size, most)),
        )
    # A server without concatenation ignores "parallel" and creates an ordinary upload.
    return PendingUpload(answer["file_id"], answer["upload_url"], answer["region"], answer["link"])


async def send(
    client: Client,
    path: Path,
    receivers: list[str],
    name: str,
    progress: ProgressCallback | None,
    parallel: int | None,
) -> SentFile:
    """Upload ``path``; an earlier interrupted send of the same file resumes.

    A large file goes as partial uploads over parallel connections and a final upload
    (tus concatenation, see _parallel.py); ``parallel`` is how many (None: by size).
    """
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror}") from None
    if not await asyncio.to_thread(path.is_file):
        raise BadRequest(f"{path}: not a regular file")
    sha256 = await file_sha256(path, progress)
    key = client.records.key(client.directory_url, sha256, size, name, receivers)
    pending = client.records.load(key)
    offset = 0
    piece_offsets: list[int] = []
    if pending is not None and pending.parallel:
        found = await _parallel.server_offsets(client, pending)
        if found is None:
            client.records.forget(key)  # a piece expired or was deleted: start afresh
            pending = None
        else:
            piece_offsets = found
    elif pending is not None:
        earlier = pending
        try:
            offset = await client.retrying(lambda: server_offset(client, earlier.upload_url))
        except (NotFound, Gone, Forbidden):
            client.records.forget(key)  # expired or deleted on the server: start afresh
            pending = None
    if pending is None:
        pieces = _parallel.pieces(size, parallel)
        pending = await _negotiate_upload(client, name, size, sha256, receivers, pieces)
        client.records.save(key, pending)
    if pending.parallel:
        file = _parallel.LocalFile(path, name, size, sha256, tuple(receivers))
        return await _parallel.send(client, key, pending, file, piece_offsets, progress)
    resumed_from = offset
    upload = pending
    try:
        await send_bytes(
            client,
            upload.upload_url,
            path,
            0,
            size,
            offset,
            lambda done: _report(progress, "upload", done, size),
        )
    except ChecksumMismatch:
        client.records.forget(key)
        raise IntegrityError(f"{path} changed while it was being sent; send it again") from None
    client.records.forget(key)
    _report(progress, "upload", size, size)
    return SentFile(
        file_id=upload.file_id,
        name=name,
        size=size,
        sha256=sha256,
        region=upload.region,
        link=upload.link,
        upload_url=upload.upload_url,
        resumed_from=resumed_from,
    )


# -- receiving -----------------------------------------------------------------


def safe_file_name(name: str) -> str:
    """A name that stays inside the folder it is written to."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())
    return base if base not in ("", ".", "..") else "download"


async def _negotiate_download(client: Client, file_id: str) -> dict[str, Any]:
    location = await client.locate()
    answer: dict[str, Any] = await client.retrying(
        lambda: client.request_json(
            "POST", f"{location.access_url}/v1/downloads", payload={"file_id": file_id}
        )
    )
    return answer


async def _fetch(
    client: Client, address: dict[str, Any], part: Path, progress: ProgressCallback | None
) -> None:
    """Append the rest of the file to ``part`` (all of it if the server answers 200)."""
    size = int(address["size"])
    offset = await _size(part)
    if offset > size:
        offset = 0
        await asyncio.to_thread(part.unlink)
    if offset == size:
        return
    headers = {}
    if offset:
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{address["sha256"]}"'}
    try:
        async with client.session.get(address["url"], headers=headers) as answer:
            await raise_for_error(answer)
            mode = "ab" if answer.status == 206 else "wb"
            done = offset if answer.status == 206 else 0
            # Opened and closed on the event loop: closing in a thread, a cancellation
            # (Ctrl-C) could skip it and leave the tail of the buffer unwritten until the
            # file was collected. Neither waits for the disk (no fsync here).
            file = part.open(mode)
            try:
                async for chunk in answer.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(file.write, chunk)
                    done += len(chunk)
                    _report(progress, "download", done, size)
            finally:
                file.close()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(f"download interrupted: {exc}") from None


async def receive(
    client: Client,
    file_id: str,
    destination: Path | None,
    progress: ProgressCallback | None,
) -> ReceivedFile:
    """Download a file, resuming from ``DESTINATION.part``, and verify its sha256."""
    address = await _negotiate_download(client, file_id)
    target = destination or Path.cwd() / safe_file_name(str(address["name"]))
    if await asyncio.to_thread(target.is_dir):
        target = target / safe_file_name(str(address["name"]))
    part = target.with_name(target.name + PART_SUFFIX)
    resumed_from = await _size(part)
    for attempt in range(client.retries + 1):
        try:
            await _fetch(client, address, part, progress)
            break
        except (Forbidden, Gone):
            address = await _negotiate_download(client, file_id)  # the signed URL expired
        except NetworkError:
            if attempt == client.retries:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    digest = await file_sha256(part)
    if digest != address["sha256"]:
        await asyncio.to_thread(part.unlink)
        raise IntegrityError(
            f"{file_id}: received bytes have sha256 {digest}, expected {address['sha256']}"
        )
    await asyncio.to_thread(os.replace, part, target)
    return ReceivedFile(
        file_id=file_id,
        path=target,
        size=int(address["size"]),
        sha256=digest,
        region=str(address["region"]),
        link=str(address["link"]),
        url=str(address["url"]),
        resumed_from=resumed_from,
    )
