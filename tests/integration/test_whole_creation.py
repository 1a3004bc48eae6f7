"""A tus creation-with-upload carrying a whole small file (at most 64 KiB) is taken in one
step: complete when answered, with nothing left behind when it is refused.

Real processes (the module's cluster); the files, folders and metadata rows are read from
outside north's process.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

import aiohttp
import pytest

from geodrop.protocol.tus import TUS_VERSION
from support.cluster import Cluster, client_address, user_token
from support.http import session_from
from support.region_state import file_path, holdings, metadata_rows, upload_path, wait_until
from support.transfer_checks import (
    expect_error,
    inbox_file_ids,
    negotiate_download,
    tus_headers,
    unique_user,
)

WHOLE: Final = 64 * 1024  # tus_handlers.WHOLE_BODY_BYTES


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _create(
    cluster: Cluster, sender: str, receiver: str, body: bytes, **extra: str
) -> aiohttp.ClientResponse:
    metadata = f"filename {_b64('note.txt')},receivers {_b64(receiver)}"
    if "sha256" in extra:
        metadata += f",sha256 {_b64(extra.pop('sha256'))}"
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": str(len(body)),
        "Upload-Metadata": metadata,
        "Content-Type": "application/offset+octet-stream",
        **extra,
    }
    async with session_from(client_address("north", "telecom", 71), user_token(sender)) as s:
        answer = await s.post(
            cluster.link_url("north", "telecom") + "/tus", data=body, headers=headers
        )
        await answer.read()
    return answer


@pytest.mark.parametrize("size", [1, 4096, WHOLE, WHOLE + 1])
async def test_a_creation_with_its_whole_body_is_complete_when_answered(
    cluster: Cluster, size: int
) -> None:
    sender, receiver = unique_user("alice"), unique_user("bob")
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sha1 = base64.b64encode(hashlib.sha1(body).digest()).decode()  # noqa: S324 - tus checksum
    answer = await _create(cluster, sender, receiver, body, **{"Upload-Checksum": f"sha1 {sha1}"})
    assert answer.status == 201, await answer.text()
    assert answer.headers["Upload-Offset"] == answer.headers["Upload-Length"] == str(size)
    location = answer.headers["Location"]
    file_id = location.split("?")[0].rsplit("/", 1)[1]

    [row] = metadata_rows(cluster, "north", "transfers", file_id)
    assert row["state"] == "complete"
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert file_path(cluster, "north", file_id).read_bytes() == body
    assert not upload_path(cluster, "north", file_id).exists()

    async with aiohttp.ClientSession() as session:
        head = await session.head(location, headers={"Tus-Resumable": TUS_VERSION})
        assert head.status == 200
        assert head.headers["Upload-Offset"] == str(size)
        # A client that lost the 201 and sends its last PATCH again: nothing left to do.
        retried = await session.patch(location, headers=tus_headers(size))
        assert retried.status == 204, await retried.text()

    async def announced() -> bool:
        return file_id in await inbox_file_ids(cluster, receiver)

    await wait_until(announced, 10, "the inbox entry")
    download = await negotiate_download(cluster, receiver, file_id)
    assert download.status == 200
    async with aiohttp.ClientSession() as session:
        got = await session.get((await download.json())["url"])
        assert got.status == 200
        assert await got.read() == body


async def test_a_whole_body_that_fails_its_checks_leaves_nothing(cluster: Cluster) -> None:
    sender, receiver = unique_user("alice"), unique_user("bob")
    before = holdings(cluster, sender)
    body = b"a voice note, nearly" * 100
    wrong_sha1 = base64.b64encode(hashlib.sha1(b"other").digest()).decode()  # noqa: S324
    refused = await _create(
        cluster, sender, receiver, body, **{"Upload-Checksum": f"sha1 {wrong_sha1}"}
    )
    await expect_error(refused, 460, "checksum_mismatch")
    assert "Location" not in refused.headers
    negotiated = await _create(cluster, sender, receiver, body, sha256="ab" * 32)
    error = await expect_error(negotiated, 460, "checksum_mismatch")
    assert "sha256" in error["message"]
    assert "Location" not in negotiated.headers
    assert holdings(cluster, sender) == before
    assert await inbox_file_ids(cluster, receiver) == []

    # The same body with the right sha256 is taken.
    taken = await _create(cluster, sender, receiver, body, sha256=hashlib.sha256(body).hexdigest())
    assert taken.status == 201, await taken.text()
    stored, transfers = holdings(cluster, sender)
    assert transfers == before[1] + 1
    assert len(stored) == len(before[0]) + 1
