"""tus concatenation step by step over raw HTTP: partial uploads in parallel, then the final.

Nothing here knows how a region stores files: the same checks run against a region on
local FS + SQLite and one on S3 + PostgreSQL, given the cluster and the region's name.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from geodrop.protocol.tus import encode_metadata
from support.cluster import CARRIERS, Cluster, client_address, user_token
from support.e2e_flows import (
    CHUNK,
    TUS_RESUMABLE,
    LocalFile,
    file_chunks,
    inbox,
    negotiate_download,
    post_json,
    tus_patch,
    wait_for_entry,
)
from support.http import session_from
from support.transfer_checks import (
    expect_error,
    negotiate_upload,
    patch,
    signed_blob_url,
    unique_user,
)

INBOX_SECONDS: Final = 20.0
PartialsCheck = Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Concatenated:
    """A file sent as partial uploads and a final upload."""

    file_id: str
    final_url: str
    partial_urls: list[str]
    link: str


def equal_pieces(size: int, parts: int) -> list[int]:
    """``size`` bytes in ``parts`` pieces that differ by at most one byte."""
    base, extra = divmod(size, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def upload_id(url: str) -> str:
    """The upload id of a tus upload URL."""
    return urlsplit(url).path.rsplit("/", 1)[-1]


async def negotiate_parallel(
    session: aiohttp.ClientSession, access_url: str, file: LocalFile, receivers: Sequence[str]
) -> dict[str, Any]:
    """``POST /v1/uploads`` with ``"parallel": true``: where to create the uploads."""
    body = {
        "name": file.path.name,
        "size": file.size,
        "sha256": file.sha256,
        "receivers": list(receivers),
        "parallel": True,
    }
    return await post_json(session, access_url + "/v1/uploads", body, expected=200)


async def create_partial(session: aiohttp.ClientSession, creation_url: str, length: int) -> str:
    """``POST /tus`` with ``Upload-Concat: partial``; the partial upload's URL."""
    headers = {**TUS_RESUMABLE, "Upload-Concat": "partial", "Upload-Length": str(length)}
    async with session.post(creation_url, headers=headers) as answer:
        text = await answer.text()
        assert answer.status == 201, f"partial creation: {answer.status} {text}"
        assert answer.headers["Upload-Offset"] == "0"
        return answer.headers["Location"]


def final_headers(urls: Sequence[str], metadata: dict[str, str]) -> dict[str, str]:
    """The headers of a final upload's creation."""
    return {
        **TUS_RESUMABLE,
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": encode_metadata(metadata),
    }


async def send_pieces(
    source_address: str, file: LocalFile, urls: Sequence[str], sizes: Sequence[int]
) -> None:
    """PATCH every piece of ``file`` to its partial upload at once, each on its own connection."""

    async def send_piece(url: str, start: int, size: int) -> None:
        async with session_from(source_address) as session:
            body = file_chunks(file.path, start, start + size)
            assert await tus_patch(session, url, 0, body, size) == size

    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    async with asyncio.TaskGroup() as sending:
        for url, start, size in zip(urls, starts, sizes, strict=True):
            sending.create_task(send_piece(url, start, size))


async def send_concatenated(
    cluster: Cluster,
    region: str,
    file: LocalFile,
    parts: int = 4,
    *,
    sender: str = "alice",
    receivers: Sequence[str] = ("bob",),
    carrier: str = "telecom",
    before_final: PartialsCheck | None = None,
) -> Concatenated:
    """Send ``file`` to ``region`` as ``parts`` partial uploads in parallel, then the final.

    ``before_final`` is called with the partial uploads' URLs once they are whole.
    """
    address = client_address(region, carrier)
    async with session_from(address, user_token(sender)) as session:
        offer = await negotiate_parallel(session, cluster.access_url(region), file, receivers)
        sizes = equal_pieces(file.size, parts)
        urls = [await create_partial(session, offer["creation_url"], size) for size in sizes]
        await send_pieces(address, file, urls, sizes)
        if before_final is not None:
            await before_final(urls)
        metadata = {
            "filename": file.path.name,
            "receivers": ",".join(receivers),
            "sha256": file.sha256,
        }
        headers = final_headers(urls, metadata)
        async with session.post(offer["creation_url"], headers=headers) as answer:
            text = await answer.text()
            assert answer.status == 201, f"final creation: {answer.status} {text}"
            assert answer.headers["Upload-Offset"] == str(file.size)
            final_url = answer.headers["Location"]
    return Concatenated(upload_id(final_url), final_url, urls, offer["link"])


async def upload_concatenated(
    cluster: Cluster,
    region: str,
    file: LocalFile,
    parts: int = 4,
    *,
    sender: str = "alice",
    receivers: Sequence[str] = ("bob",),
) -> str:
    """Send ``file`` to ``region`` as ``parts`` parallel partial uploads + final; its file id."""
    sent = await send_concatenated(cluster, region, file, parts, sender=sender, receivers=receivers)
    return sent.file_id


async def head(url: str) -> aiohttp.ClientResponse:
    """tus HEAD of an upload URL (the answer, body read)."""
    async with aiohttp.ClientSession() as session:
        answer = await session.head(url, headers=TUS_RESUMABLE)
        await answer.read()
    return answer


async def streamed_sha256(session: aiohttp.ClientSession, url: str) -> str:
    """GET a whole file and hash it as it streams (nothing kept)."""
    sha = hashlib.sha256()
    async with session.get(url) as answer:
        assert answer.status == 200, f"GET {url}: {answer.status}"
        async for data in answer.content.iter_chunked(CHUNK):
            sha.update(data)
    return sha.hexdigest()


async def check_concatenated_upload(
    cluster: Cluster, region: str, file: LocalFile, parts: int = 4
) -> Concatenated:
    """The whole story of a concatenated upload to ``region``, checked at every step.

    Partial uploads are never files (not downloadable, not announced); the final upload
    is byte-identical to ``file`` after download, lands in its receiver's inbox exactly
    once, refuses PATCH, and its partials are gone once it is made.
    """
    sender, receiver = unique_user("alice"), unique_user("bob")
    receiver_address = client_address("south", "unicom")
    sizes = equal_pieces(file.size, parts)

    async def partials_are_not_files(urls: list[str]) -> None:
        for url, size in zip(urls, sizes, strict=True):
            answer = await head(url)
            assert answer.status == 200, answer.status
            assert answer.headers["Upload-Concat"] == "partial"
            assert answer.headers["Upload-Offset"] == answer.headers["Upload-Length"] == str(size)
        partial_id = upload_id(urls[0])
        async with session_from(client_address(region, "telecom"), user_token(sender)) as alice:
            downloads = cluster.access_url(region) + "/v1/downloads"
            async with alice.post(downloads, json={"file_id": partial_id}) as offer:
                assert offer.status in (404, 409), await offer.text()
            blob_url = signed_blob_url(cluster, partial_id, sender, region=region)
            async with alice.get(blob_url) as blob:
                assert blob.status in (404, 409), await blob.text()
        async with session_from(receiver_address, user_token(receiver)) as bob:
            assert (await inbox(bob, cluster, 0))["entries"] == []

    started = time.monotonic()
    sent = await send_concatenated(
        cluster,
        region,
        file,
        parts,
        sender=sender,
        receivers=[receiver],
        before_final=partials_are_not_files,
    )
    print(
        f"{file.size} bytes in {parts} partial uploads + final: {time.monotonic() - started:.1f} s"
    )
    links = {cluster.link_host(region, carrier) for carrier, _ in CARRIERS}
    assert urlsplit(sent.final_url).hostname in links

    final = await head(sent.final_url)
    assert final.status == 200, final.status
    expected = "final;" + " ".join(f"/tus/{upload_id(url)}" for url in sent.partial_urls)
    assert final.headers["Upload-Concat"] == expected
    assert final.headers["Upload-Offset"] == final.headers["Upload-Length"] == str(file.size)
    patched = await patch(sent.final_url, b"x", file.size)
    await expect_error(patched, 403, "forbidden")
    for url in sent.partial_urls:  # retired once the final upload was made
        assert (await head(url)).status == 410

    async with session_from(receiver_address, user_token(receiver)) as bob:
        entry = await wait_for_entry(bob, cluster, 0, sent.file_id, INBOX_SECONDS)
        assert (entry["sender"], entry["name"]) == (sender, file.path.name)
        assert (entry["size"], entry["sha256"]) == (file.size, file.sha256)
        assert [e["file_id"] for e in (await inbox(bob, cluster, 0))["entries"]] == [sent.file_id]
        offer = await negotiate_download(bob, cluster.access_url("south"), sent.file_id)
        assert (offer["size"], offer["sha256"]) == (file.size, file.sha256)
        assert await streamed_sha256(bob, offer["url"]) == file.sha256
    return sent


async def check_concatenation_refusals(cluster: Cluster, region: str) -> None:
    """What a bad final upload gets (DESIGN.md §7): nothing is made, its partials stay.

    Another sender's partial upload is refused exactly as an unknown one is.
    """
    alice, mallory, bob = unique_user("alice"), unique_user("mallory"), unique_user("bob")
    address = client_address(region, "telecom")
    creation_url = cluster.link_url(region, "telecom") + "/tus"
    data = b"0123456789"

    async def whole_partial(user: str) -> str:
        async with session_from(address, user_token(user)) as session:
            url = await create_partial(session, creation_url, len(data))
        assert (await patch(url, data, 0)).status == 204
        return url

    whole, other_whole, theirs = (
        await whole_partial(alice),
        await whole_partial(alice),
        await whole_partial(mallory),
    )
    async with session_from(address, user_token(alice)) as session:
        half = await create_partial(session, creation_url, 2 * len(data))
        huge = [await create_partial(session, creation_url, 150 * 1024 * 1024) for _ in "ab"]
    assert (await patch(half, data, 0)).status == 204
    ordinary = await negotiate_upload(cluster, alice, [bob], len(data), region=region)
    metadata = {"filename": "f.bin", "receivers": bob}

    async def final(
        urls: Sequence[str], user: str | None = alice, **extra: str
    ) -> aiohttp.ClientResponse:
        headers = {**final_headers(urls, metadata), **extra}
        token = user_token(user) if user else None
        async with (
            session_from(address, token) as session,
            session.post(creation_url, headers=headers) as answer,
        ):
            await answer.read()
            return answer

    unknown = f"/tus/{region}.{'a' * 26}"
    unknown_error = await expect_error(await final([unknown]), 404, "not_found")
    theirs_error = await expect_error(await final([whole, theirs]), 404, "not_found")
    theirs_message = theirs_error["message"].replace("partial upload 2", "partial upload 1")
    assert theirs_message == unknown_error["message"], "another's partial must look unknown"
    await expect_error(await final(["/tus/not-an-id"]), 404, "not_found")
    other_region = "south" if region != "south" else "north"
    await expect_error(await final([f"/tus/{other_region}.{'a' * 26}"]), 404, "not_found")
    await expect_error(await final([whole, half]), 409, "conflict")
    await expect_error(await final([whole, f"/tus/{ordinary.file_id}"]), 400, "bad_request")
    await expect_error(await final(huge), 413, "too_large")
    await expect_error(await final([whole, whole]), 400, "bad_request")
    await expect_error(await final([whole], **{"Upload-Length": "10"}), 400, "bad_request")
    await expect_error(await final([whole], **{"Upload-Concat": "final;"}), 400, "bad_request")
    await expect_error(await final([whole], **{"Upload-Concat": "whole"}), 400, "bad_request")
    await expect_error(await final([whole], **{"Upload-Metadata": ""}), 400, "bad_request")
    bad_digest = encode_metadata({**metadata, "sha256": "0" * 64})
    mismatch = await final([whole, other_whole], **{"Upload-Metadata": bad_digest})
    await expect_error(mismatch, 460, "checksum_mismatch")
    await expect_error(await final([whole], user=None), 401, "unauthorized")

    # Every refusal left the partial uploads as they were: they still make a file.
    for url in (whole, other_whole):
        answer = await head(url)
        assert (answer.status, answer.headers["Upload-Offset"]) == (200, str(len(data)))
    made = await final([whole, other_whole])
    assert made.status == 201
    assert made.headers["Upload-Offset"] == str(2 * len(data))
    # Once used, a partial upload is gone: its sender hears so, anyone else "unknown".
    await expect_error(await final([whole]), 410, "gone")
    await expect_error(await final([whole], user=mallory), 404, "not_found")
