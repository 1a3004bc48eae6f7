"""Big PATCH bodies taken straight from the connection (fileserver/recvfile.py), end to end.

A body of at least DIRECT_BODY_BYTES is read by threads instead of through aiohttp; its
connection closes after the answer. What a client sees must not change otherwise:
checksums, the negotiated sha256, pauses in the middle of the body. (Bodies cut short
and servers killed mid-body: test_resume_upload.py, test_crash_torture.py.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from geodrop.fileserver.recvfile import BYTE_WAIT_MILLISECONDS, DIRECT_BODY_BYTES
from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import (
    LocalFile,
    download,
    file_chunks,
    negotiate_download,
    negotiate_upload,
    patch_headers,
    tus_offset,
    write_random_file,
)
from support.http import session_from

pytestmark = pytest.mark.e2e

SIZE = DIRECT_BODY_BYTES * 2 + 4321


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> LocalFile:
    return write_random_file(tmp_path_factory.mktemp("big") / "big.bin", SIZE)


def _keep_alive_session() -> aiohttp.ClientSession:
    """A session that keeps connections open unless the server closes them."""
    connector = aiohttp.TCPConnector(local_addr=(client_address("north", "telecom"), 0))
    return aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Bearer {user_token('alice')}"}
    )


def _sha1_checksum(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324


async def _pausing_chunks(file: LocalFile, start: int, stop: int) -> AsyncIterator[bytes]:
    """The bytes, with pauses longer than a receiving thread waits for the next ones."""
    pause_every = (stop - start) // 3
    sent_since_pause = 0
    async for chunk in file_chunks(file.path, start, stop):
        yield chunk
        sent_since_pause += len(chunk)
        if sent_since_pause >= pause_every:
            sent_since_pause = 0
            await asyncio.sleep(BYTE_WAIT_MILLISECONDS / 1000 * 4)


async def _bob_gets(cluster: Cluster, file_id: str, original: LocalFile, target: Path) -> None:
    async with session_from(client_address("south", "unicom"), user_token("bob")) as bob:
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        assert await download(bob, offer["url"], target) == original.sha256


async def test_a_big_body_is_stored_and_its_connection_closes_after_the_answer(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    north = cluster.access_url("north")
    small = DIRECT_BODY_BYTES // 8
    async with _keep_alive_session() as alice:
        upload = await negotiate_upload(alice, north, big_file, ["bob"])
        url = upload["upload_url"]
        # A small first PATCH goes through aiohttp: the connection stays open.
        async with alice.patch(
            url, data=file_chunks(big_file.path, 0, small), headers=patch_headers(0, small)
        ) as answer:
            assert answer.status == 204, await answer.text()
            assert answer.headers.get("Connection", "").lower() != "close"
        # The rest is big: taken from the connection, which then closes. It pauses on
        # the way, and carries a tus checksum of its bytes.
        rest = big_file.path.read_bytes()[small:]
        headers = {**patch_headers(small, SIZE - small), "Upload-Checksum": _sha1_checksum(rest)}
        async with alice.patch(
            url, data=_pausing_chunks(big_file, small, SIZE), headers=headers
        ) as answer:
            assert answer.status == 204, await answer.text()
            assert answer.headers["Upload-Offset"] == str(SIZE)
            assert answer.headers["Connection"].lower() == "close"
        assert await tus_offset(alice, url) == SIZE
    await _bob_gets(cluster, upload["file_id"], big_file, tmp_path / "got.bin")


async def _patch_whole(
    session: aiohttp.ClientSession, url: str, file: LocalFile, status: int, **headers: str
) -> None:
    """PATCH all of ``file`` at offset 0; the answer must have ``status``."""
    async with session.patch(
        url,
        data=file_chunks(file.path, 0, file.size),
        headers=patch_headers(0, file.size) | headers,
    ) as answer:
        assert answer.status == status, await answer.text()
        if status == 460:
            assert (await answer.json())["error"]["code"] == "checksum_mismatch"
        # Refused or not, the connection the body was read from closes, and says so.
        assert answer.headers["Connection"].lower() == "close"


async def test_a_big_body_failing_its_checksum_leaves_the_offset_where_it_was(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    north = cluster.access_url("north")
    async with _keep_alive_session() as alice:
        upload = await negotiate_upload(alice, north, big_file, ["bob"])
        url = upload["upload_url"]
        wrong = {"Upload-Checksum": _sha1_checksum(b"other bytes")}
        await _patch_whole(alice, url, big_file, 460, **wrong)
        assert await tus_offset(alice, url) == 0
        await _patch_whole(alice, url, big_file, 204)
    await _bob_gets(cluster, upload["file_id"], big_file, tmp_path / "got.bin")


async def test_a_big_body_that_is_not_the_negotiated_file_starts_over(
    cluster: Cluster, big_file: LocalFile
) -> None:
    """The whole-file sha256 is hashed beside the receiving thread: a file that does not
    match what was negotiated is refused and its upload restarts from 0."""
    north = cluster.access_url("north")
    claimed = replace(big_file, sha256=hashlib.sha256(b"another file").hexdigest())
    async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
        upload = await negotiate_upload(alice, north, claimed, ["bob"])
        url = upload["upload_url"]
        await _patch_whole(alice, url, big_file, 460)
        assert await tus_offset(alice, url) == 0


async def test_a_big_creation_body_longer_than_its_upload_is_refused_and_answered(
    cluster: Cluster, big_file: LocalFile
) -> None:
    """A body that does not fit its upload is not taken from the connection: it is
    refused the usual way (413), and the client hears it."""
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in (("filename", "big.bin"), ("receivers", "bob"))
    )
    headers = {
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(SIZE - 1),
        "Upload-Metadata": metadata,
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(SIZE),
    }
    async with (
        session_from(client_address("north", "telecom"), user_token("alice")) as alice,
        alice.post(
            cluster.access_url("north") + "/tus",
            data=file_chunks(big_file.path, 0, SIZE),
            headers=headers,
        ) as refused,
    ):
        assert refused.status == 413, await refused.text()
        assert (await refused.json())["error"]["code"] == "too_large"
