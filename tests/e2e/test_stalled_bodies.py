"""An upload body that stops arriving ends after ``limits.body_idle_seconds``, keeping
what came, so its client resumes from a new connection at once instead of meeting the
upload's lock (423) until the dead connection is noticed (TCP keepalive: hours)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from geodrop.fileserver.recvfile import DIRECT_BODY_BYTES
from support.cluster import Cluster, client_address, running_cluster, user_token
from support.e2e_flows import (
    MIB,
    LocalFile,
    file_chunks,
    negotiate_upload,
    patch_headers,
    send_file,
    tus_offset,
    tus_patch,
    write_random_file,
)
from support.http import session_from

pytestmark = pytest.mark.e2e

IDLE_SECONDS = 1
BOTH_WAYS_A_BODY_IS_READ = pytest.mark.parametrize(
    "size", [2 * MIB, DIRECT_BODY_BYTES + MIB], ids=["read by aiohttp", "taken over"]
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    options = {"limits_toml": f"body_idle_seconds = {IDLE_SECONDS}\n"}
    with running_cluster(tmp_path_factory.mktemp("cluster"), **options) as running:
        yield running


@BOTH_WAYS_A_BODY_IS_READ
async def test_a_stalled_body_ends_and_its_upload_resumes_at_once(
    cluster: Cluster, tmp_path: Path, size: int
) -> None:
    original: LocalFile = await asyncio.to_thread(write_random_file, tmp_path / "f.bin", size)
    sent_before_stall = size // 3
    stalled = asyncio.Event()

    async def stalling_body() -> AsyncIterator[bytes]:
        async for chunk in file_chunks(original.path, 0, sent_before_stall):
            yield chunk
        stalled.set()
        await asyncio.sleep(3600)  # a client whose network went away without a word

    north = cluster.access_url("north")
    async with (
        session_from(client_address("north", "telecom"), user_token("alice")) as alice,
        session_from(client_address("north", "telecom"), user_token("alice")) as again,
    ):
        upload = await negotiate_upload(alice, north, original, ["bob"])
        url = upload["upload_url"]
        dead = asyncio.ensure_future(tus_patch(alice, url, 0, stalling_body(), size))
        try:
            await asyncio.wait_for(stalled.wait(), 10)
            # From a new connection, as tus clients resume: not refused by the lock the
            # stalled request held, and what it brought is kept.
            async with asyncio.timeout(IDLE_SECONDS + 4):
                for _ in range(100):  # until the server has written what was sent
                    offset = await tus_offset(again, url)
                    if offset >= sent_before_stall:
                        break
                    await asyncio.sleep(0.05)
                await send_file(again, url, original, start=offset)
            assert offset == sent_before_stall
            assert await tus_offset(again, url) == size
        finally:
            dead.cancel()
            with contextlib.suppress(BaseException):
                await dead


@BOTH_WAYS_A_BODY_IS_READ
async def test_a_client_still_there_hears_that_its_body_stalled(
    cluster: Cluster, tmp_path: Path, size: int
) -> None:
    original: LocalFile = await asyncio.to_thread(write_random_file, tmp_path / "f.bin", size)
    north = cluster.access_url("north")
    async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
        upload = await negotiate_upload(alice, north, original, ["bob"])
    target = urlsplit(upload["upload_url"])
    head = "".join(f"{name}: {value}\r\n" for name, value in patch_headers(0, size).items())
    reader, writer = await asyncio.open_connection(
        target.hostname, target.port, local_addr=(client_address("north", "telecom"), 0)
    )
    try:
        writer.write(
            f"PATCH {target.path}?{target.query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
            f"{head}\r\n".encode()
        )
        writer.write(original.path.read_bytes()[: size // 3])
        # ... and then nothing: nginx's client_body_timeout answers such a client 408.
        async with asyncio.timeout(IDLE_SECONDS + 5):
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", answer_head)[1])  # type: ignore[index]
            error = json.loads(await reader.readexactly(length))["error"]
    finally:
        writer.transport.abort()
    assert answer_head.startswith(b"HTTP/1.1 408 "), answer_head
    assert b"Connection: close" in answer_head  # the rest of the body is never read
    assert error["code"] == "body_stalled"
