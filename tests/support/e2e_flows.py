"""The client side of geodrop's flows, step by step, over real sockets.

The end-to-end tests drive a running cluster with these: locate, negotiate, send
bytes with tus, wait on the inbox, download. Each step asserts the status it
expects, so a failing step says which request went wrong and what the server said.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import aiohttp

from support.cluster import Cluster, client_address, user_token
from support.http import session_from

MIB: Final = 1024 * 1024
CHUNK: Final = MIB
TUS_RESUMABLE: Final = {"Tus-Resumable": "1.0.0"}
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file on the test's disk and what it should hash to."""

    path: Path
    size: int
    sha256: str


def seeded_random() -> random.Random:
    """A generator whose seed is printed, so a failing run can be replayed."""
    seed = random.SystemRandom().randrange(2**32)
    print(f"random seed: {seed}")
    return random.Random(seed)


def write_random_file(path: Path, size: int) -> LocalFile:
    """Write ``size`` random bytes, a chunk at a time, and return the file's sha256."""
    sha = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            data = os.urandom(min(CHUNK, remaining))
            sha.update(data)
            out.write(data)
            remaining -= len(data)
    return LocalFile(path, size, sha.hexdigest())


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as source:
        while data := source.read(CHUNK):
            sha.update(data)
    return sha.hexdigest()


async def file_chunks(
    path: Path, start: int, stop: int, chunk: int = CHUNK
) -> AsyncIterator[bytes]:
    """Bytes ``[start, stop)`` of ``path``, read a chunk at a time (never the whole file)."""
    # Opened and closed here, not in a thread: a request cancelled while a thread opened
    # the file, or before a thread closed it, dropped the open file unclosed (a
    # ResourceWarning, an error under -W error, seen in test_concatenation). Neither does
    # disk work for a file only read.
    source: BinaryIO = path.open("rb")
    try:
        position = start
        while position < stop:
            data = await asyncio.to_thread(
                os.pread, source.fileno(), min(chunk, stop - position), position
            )
            if not data:
                raise EOFError(f"{path} ends at {position}, before {stop}")
            position += len(data)
            yield data
    finally:
        source.close()


# -- JSON requests ----------------------------------------------------------------------


async def _json(response: aiohttp.ClientResponse, expected: int) -> dict[str, Any]:
    text = await response.text()
    assert response.status == expected, (
        f"{response.method} {response.url}: {response.status}, expected {expected}: {text}"
    )
    body = json.loads(text)
    assert isinstance(body, dict), text
    return body


async def get_json(session: aiohttp.ClientSession, url: str, expected: int = 200) -> dict[str, Any]:
    async with session.get(url, allow_redirects=False) as response:
        return await _json(response, expected)


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], expected: int = 200
) -> dict[str, Any]:
    async with session.post(url, json=body, allow_redirects=False) as response:
        return await _json(response, expected)


# -- the flows ------------------------------------------------------------------------------


async def locate(session: aiohttp.ClientSession, cluster: Cluster) -> dict[str, Any]:
    """``GET /v1/locate`` at the directory."""
    return await get_json(session, cluster.directory_url + "/v1/locate")


async def negotiate_upload(
    session: aiohttp.ClientSession, access_url: str, file: LocalFile, receivers: Sequence[str]
) -> dict[str, Any]:
    """``POST /v1/uploads`` at an access unit: the upload URL on one of its links."""
    body = {
        "name": file.path.name,
        "size": file.size,
        "sha256": file.sha256,
        "receivers": list(receivers),
    }
    return await post_json(session, access_url + "/v1/uploads", body, expected=201)


async def tus_offset(session: aiohttp.ClientSession, upload_url: str) -> int:
    """tus ``HEAD``: how many bytes the server holds."""
    async with session.head(upload_url, headers=TUS_RESUMABLE) as response:
        assert response.status == 200, f"HEAD {upload_url}: {response.status}"
        return int(response.headers["Upload-Offset"])


def patch_headers(offset: int, length: int) -> dict[str, str]:
    """The headers of a tus ``PATCH`` of ``length`` bytes at ``offset``."""
    return {
        **TUS_RESUMABLE,
        "Upload-Offset": str(offset),
        "Content-Type": OFFSET_CONTENT_TYPE,
        "Content-Length": str(length),
    }


async def tus_patch(
    session: aiohttp.ClientSession,
    upload_url: str,
    offset: int,
    body: AsyncIterable[bytes],
    length: int,
) -> int:
    """tus ``PATCH`` of ``length`` bytes at ``offset``; returns the server's new offset."""
    headers = patch_headers(offset, length)
    async with session.patch(upload_url, data=body, headers=headers) as response:
        text = await response.text()
        assert response.status == 204, f"PATCH at {offset}: {response.status} {text}"
        return int(response.headers["Upload-Offset"])


async def send_file(
    session: aiohttp.ClientSession,
    upload_url: str,
    file: LocalFile,
    start: int = 0,
    patch_size: int | None = None,
) -> None:
    """Send ``file`` from ``start`` to its end, in PATCHes of at most ``patch_size`` bytes."""
    offset = start
    step = patch_size or file.size
    while offset < file.size:
        stop = min(file.size, offset + step)
        new_offset = await tus_patch(
            session, upload_url, offset, file_chunks(file.path, offset, stop), stop - offset
        )
        assert new_offset == stop
        offset = new_offset


async def upload_for(
    cluster: Cluster, file: LocalFile, receivers: Sequence[str] = ("bob",), sender: str = "alice"
) -> str:
    """``sender``, a north/telecom client, uploads ``file`` to north; returns its file id."""
    async with session_from(client_address("north", "telecom"), user_token(sender)) as session:
        upload = await negotiate_upload(session, cluster.access_url("north"), file, receivers)
        await send_file(session, upload["upload_url"], file)
    file_id = upload["file_id"]
    assert isinstance(file_id, str)
    return file_id


async def negotiate_download(
    session: aiohttp.ClientSession, access_url: str, file_id: str
) -> dict[str, Any]:
    """``POST /v1/downloads`` at an access unit: a signed URL, wherever the file is kept."""
    return await post_json(session, access_url + "/v1/downloads", {"file_id": file_id})


async def download(session: aiohttp.ClientSession, url: str, target: Path) -> str:
    """GET a whole file to ``target``, streaming; returns its sha256."""
    sha = hashlib.sha256()
    async with session.get(url) as response:
        assert response.status == 200, f"GET {url}: {response.status} {await response.text()}"
        out: BinaryIO = target.open("wb")  # on the loop, as file_chunks' file
        try:
            async for data in response.content.iter_chunked(CHUNK):
                sha.update(data)
                await asyncio.to_thread(out.write, data)
        finally:
            out.close()
    return sha.hexdigest()


async def link_reports(session: aiohttp.ClientSession, access_url: str) -> dict[str, Any]:
    """``GET /v1/status`` of an access unit: its link reports by link name."""
    status = await get_json(session, access_url + "/v1/status")
    return {link["name"]: link for link in status["links"]}


# -- the inbox ------------------------------------------------------------------------------


async def inbox(
    session: aiohttp.ClientSession, cluster: Cluster, after: int, wait: float = 0
) -> dict[str, Any]:
    """``GET /v1/inbox``: entries after the cursor, long-polling up to ``wait`` seconds."""
    url = f"{cluster.directory_url}/v1/inbox?after={after}&wait={wait:.3f}"
    return await get_json(session, url)


async def inbox_cursor(session: aiohttp.ClientSession, cluster: Cluster) -> int:
    """The cursor after every entry already in the caller's inbox."""
    cursor = 0
    for _ in range(1000):
        page = await inbox(session, cluster, cursor)
        if not page["entries"]:
            return cursor
        cursor = int(page["cursor"])
    raise AssertionError("the inbox never ends")


async def wait_for_entry(
    session: aiohttp.ClientSession, cluster: Cluster, after: int, file_id: str, seconds: float
) -> dict[str, Any]:
    """The caller's inbox entry for ``file_id``, long-polling for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    cursor = after
    while (remaining := deadline - time.monotonic()) > 0:
        page = await inbox(session, cluster, cursor, wait=remaining)
        for entry in page["entries"]:
            if entry["file_id"] == file_id:
                assert isinstance(entry, dict)
                return entry
        cursor = int(page["cursor"])
    raise AssertionError(f"{file_id} did not reach the inbox within {seconds} s")


async def wait_until_idle(
    session: aiohttp.ClientSession, access_url: str, seconds: float = 10.0, quiet: float = 0.0
) -> None:
    """Wait until no link of a file server has a transfer in progress.

    After a client drops a PATCH, the server may still be writing what had reached it;
    an offset read before it finishes could be stale. With ``quiet``, the links must also
    stay idle, their byte counts unchanged, for that long: a region's several access
    units learn each other's figures a few times a second, so one unit's "idle" may be
    another's figure from before the transfer began.
    """
    deadline = time.monotonic() + seconds
    quiet_since: float | None = None
    last: dict[str, tuple[int, int]] = {}
    while True:
        reports = await link_reports(session, access_url)
        busy = {name: r["active_transfers"] for name, r in reports.items() if r["active_transfers"]}
        counts = {name: (r["bytes_received"], r["bytes_sent"]) for name, r in reports.items()}
        now = time.monotonic()
        if busy or counts != last:
            quiet_since = None if busy else now
        elif quiet_since is None:
            quiet_since = now
        last = counts
        if quiet_since is not None and now - quiet_since >= quiet:
            return
        assert now < deadline, f"transfers still active after {seconds} s: {busy}"
        await asyncio.sleep(0.05)


async def wait_until_received(
    session: aiohttp.ClientSession, access_url: str, link: str, total: int, seconds: float = 10.0
) -> None:
    """Wait until ``link`` of a file server has received ``total`` bytes since it started."""
    deadline = time.monotonic() + seconds
    while (await link_reports(session, access_url))[link]["bytes_received"] < total:
        assert time.monotonic() < deadline, f"{link} did not receive {total} bytes in {seconds} s"
        await asyncio.sleep(0.02)
