"""The client's tus requests: how far an upload is, and sending the rest of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import aiohttp

from geodrop.client._http import raise_for_error
from geodrop.errors import NetworkError, OffsetMismatch

if TYPE_CHECKING:
    from geodrop.client._client import Client

CHUNK: Final = 1024 * 1024
TUS_VERSION: Final = "1.0.0"

# Told the offset an upload has reached, after each chunk sent.
Reached = Callable[[int], None]


async def _file_body(
    path: Path, start: int, offset: int, length: int, reached: Reached
) -> AsyncIterator[bytes]:
    """Bytes ``[start + offset, start + length)`` of ``path``: those of an upload of the
    ``length`` bytes at ``start`` that the server lacks."""
    # Opened and closed on the event loop (no disk work for a file only read): done in a
    # thread, a cancellation at the wrong moment dropped the open file unclosed.
    file: BinaryIO = path.open("rb")
    try:
        await asyncio.to_thread(file.seek, start + offset)
        done = offset
        while done < length and (
            chunk := await asyncio.to_thread(file.read, min(CHUNK, length - done))
        ):
            yield chunk
            done += len(chunk)
            reached(done)
    finally:
        file.close()


async def server_offset(client: Client, url: str) -> int:
    headers = {"Tus-Resumable": TUS_VERSION}
    try:
        async with client.session.head(url, headers=headers) as answer:
            await raise_for_error(answer)
            return int(answer.headers["Upload-Offset"])
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(f"cannot reach {url}: {exc}") from None


async def _patch(
    client: Client, url: str, path: Path, start: int, offset: int, length: int, reached: Reached
) -> int:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length - offset),
    }
    body = _file_body(path, start, offset, length, reached)
    try:
        async with client.session.patch(url, data=body, headers=headers) as answer:
            await raise_for_error(answer)
            return int(answer.headers["Upload-Offset"])
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(f"upload interrupted: {exc}") from None


async def send_bytes(
    client: Client, url: str, path: Path, start: int, length: int, offset: int, reached: Reached
) -> None:
    """Send the upload at ``url`` (the ``length`` bytes of ``path`` at ``start``) from
    ``offset`` on; after a network failure, ask the server where to go on from.

    Raises:
        NetworkError: the network stayed down through every retry.
        ChecksumMismatch: the finished file does not match the negotiated sha256.
    """
    for attempt in range(client.retries + 1):
        if offset >= length:
            return
        try:
            offset = await _patch(client, url, path, start, offset, length, reached)
        except (NetworkError, OffsetMismatch):
            if attempt == client.retries:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
            offset = await client.retrying(lambda: server_offset(client, url))
