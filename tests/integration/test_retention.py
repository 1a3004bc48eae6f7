"""Retention on a real cluster with tiny limits: expiry really deletes, and says so (410).

A completed file is kept until every receiver has it, then for the grace period, and
never past its retention; an unfinished upload expires; an optional download limit.
Once deleted, only a tombstone stays: the sender and receivers hear 410, anyone else
the same 404 as for an id that never existed, and the inbox entries go.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from support.cluster import Cluster, client_address, user_token
from support.http import session_from
from support.region_state import (
    UNTHROTTLED,
    file_path,
    metadata_rows,
    set_limits,
    upload_path,
    wait_until,
)
from support.transfer_checks import (
    TUS_VERSION,
    expect_error,
    inbox_file_ids,
    negotiate_download,
    negotiate_upload,
    patch,
    peer_headers,
    signed_blob_url,
    unique_user,
    upload_file,
)

RETENTION: Final = 8
UPLOAD_EXPIRY: Final = 3
GRACE: Final = 1
SWEEP: Final = 0.25
# Expiry is noticed within one sweep; the rest is slack for a loaded machine.
SLACK: Final = 3.0
UNKNOWN_NORTH_ID: Final = "north." + "q" * 26
SENDER: Final = "alice"


def _start(root: Path, **limits: object) -> Cluster:
    cluster = Cluster(root)
    set_limits(
        cluster,
        retention_seconds=RETENTION,
        upload_expiry_seconds=UPLOAD_EXPIRY,
        received_grace_seconds=GRACE,
        sweep_interval_seconds=SWEEP,
        **UNTHROTTLED,
        **limits,
    )
    try:
        cluster.start_all()
    except BaseException:
        cluster.stop_all()
        raise
    return cluster


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose files live seconds; no download limit."""
    cluster = _start(tmp_path_factory.mktemp("short-lived"))
    yield cluster
    cluster.stop_all()


@pytest.fixture(scope="module")
def one_download(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster whose files may be downloaded once (limits.max_downloads = 1)."""
    cluster = _start(tmp_path_factory.mktemp("one-download"), max_downloads=1)
    yield cluster
    cluster.stop_all()


# -- helpers ------------------------------------------------------------------------------


async def _status(cluster: Cluster, user: str, file_id: str, region: str = "north") -> Any:
    async with session_from(client_address(region, "telecom"), user_token(user)) as session:
        answer = await session.get(cluster.access_url(region) + f"/v1/files/{file_id}/status")
        await answer.read()
    return answer


async def _get(url: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        answer = await session.get(url)
        await answer.read()
    return answer


async def _download_whole(cluster: Cluster, user: str, file_id: str, data: bytes) -> str:
    """Negotiate and download the whole file as ``user``; returns the signed URL used."""
    negotiated = await negotiate_download(cluster, user, file_id)
    assert negotiated.status == 200, await negotiated.text()
    url: str = (await negotiated.json())["url"]
    answer = await _get(url)
    assert answer.status == 200
    assert await answer.read() == data
    if user != SENDER:
        # The last byte is on its way before the server has counted the download.
        await wait_until(_received_by(cluster, user, file_id), 5, "the download to be counted")
    return url


async def _refusal(answer: aiohttp.ClientResponse, status: int, code: str) -> tuple[int, str, str]:
    error = await expect_error(answer, status, code)
    return answer.status, error["code"], error["message"]


async def _gone_for(cluster: Cluster, user: str, file_id: str) -> None:
    """``user`` hears 410 for ``file_id`` from every door: negotiation (here and relayed),
    the plain-HTTP redirect, and status."""
    for region in ("north", "south"):
        await _refusal(await negotiate_download(cluster, user, file_id, region=region), 410, "gone")
        await _refusal(await _status(cluster, user, file_id, region), 410, "gone")
    async with session_from(client_address("north", "telecom"), user_token(user)) as session:
        redirect = await session.get(
            cluster.access_url("north") + f"/v1/files/{file_id}", allow_redirects=False
        )
        await _refusal(redirect, 410, "gone")


async def _not_found_as_for_no_file(cluster: Cluster, user: str, file_id: str) -> None:
    """``user`` hears exactly what they hear for an id that never existed."""
    for region in ("north", "south"):
        seen = await _refusal(
            await negotiate_download(cluster, user, file_id, region=region), 404, "not_found"
        )
        never = await _refusal(
            await negotiate_download(cluster, user, UNKNOWN_NORTH_ID, region=region),
            404,
            "not_found",
        )
        assert seen == never
        seen = await _refusal(await _status(cluster, user, file_id, region), 404, "not_found")
        never = await _refusal(
            await _status(cluster, user, UNKNOWN_NORTH_ID, region), 404, "not_found"
        )
        assert seen == never
    seen = await _refusal(await _get(signed_blob_url(cluster, file_id, user)), 404, "not_found")
    never = await _refusal(
        await _get(signed_blob_url(cluster, UNKNOWN_NORTH_ID, user)), 404, "not_found"
    )
    assert seen == never


def _assert_tombstone(cluster: Cluster, file_id: str, sender: str, receivers: list[str]) -> None:
    assert metadata_rows(cluster, "north", "transfers", file_id) == []
    [tombstone] = metadata_rows(cluster, "north", "tombstones", file_id)
    # Who sent to whom, and when: nothing about the file (no name, size or digest).
    assert set(tombstone) == {
        "id",
        "sender",
        "receivers",
        "created_at",
        "expired_at",
        "inbox_pending",
    }
    assert tombstone["sender"] == sender
    assert json.loads(tombstone["receivers"]) == receivers
    assert tombstone["expired_at"] <= time.time()


# -- retention ------------------------------------------------------------------------------


async def test_an_expired_file_is_deleted_and_its_people_hear_gone(short_lived: Cluster) -> None:
    cluster = short_lived
    bob, carol = unique_user("bob"), unique_user("carol")
    data = b"<html><script>kept for a while</script></html>"
    done = await upload_file(cluster, "alice", [bob, carol], data)
    completed = time.time()
    stored = file_path(cluster, "north", done.file_id)
    assert stored.read_bytes() == data
    await wait_until(_inbox_holds(cluster, bob, done.file_id), 10, "the inbox entry to arrive")
    # A signed URL handed out while the file lived; downloading part of it is no delivery.
    url = (await (await negotiate_download(cluster, bob, done.file_id)).json())["url"]
    async with aiohttp.ClientSession() as session:
        part = await session.get(url, headers={"Range": "bytes=0-3"})
        assert part.status == 206
        await part.read()
    # The directory is down when the file expires: its inbox entries go once it is back.
    cluster.stop("directory")

    await wait_until(
        _retired(cluster, stored, done.file_id), RETENTION + SLACK, "the expired file to go"
    )
    assert time.time() - completed >= RETENTION - 0.5, "deleted before its retention ran out"

    _assert_tombstone(cluster, done.file_id, "alice", [bob, carol])
    for user in ("alice", bob, carol):
        await _gone_for(cluster, user, done.file_id)
    await _refusal(await _get(url), 410, "gone")
    await _not_found_as_for_no_file(cluster, unique_user("mallory"), done.file_id)

    cluster.start("directory")
    for receiver in (bob, carol):
        await wait_until(
            _inbox_holds(cluster, receiver, done.file_id, expected=False),
            10,
            "the expired file's inbox entry to go",
        )

    async def withdrawal_recorded() -> bool:
        [tombstone] = metadata_rows(cluster, "north", "tombstones", done.file_id)
        return bool(tombstone["inbox_pending"] == 0)

    await wait_until(withdrawal_recorded, 5, "north to record the acknowledged removal")


async def test_a_file_goes_after_the_grace_once_every_receiver_has_it(
    short_lived: Cluster,
) -> None:
    cluster = short_lived
    bob, carol = unique_user("bob"), unique_user("carol")
    data = b"for two receivers"
    done = await upload_file(cluster, "alice", [bob, carol], data)
    completed = time.time()
    stored = file_path(cluster, "north", done.file_id)
    await _download_whole(cluster, "alice", done.file_id, data)  # the sender's: not a delivery
    await _download_whole(cluster, bob, done.file_id, data)
    # Longer than the grace and a sweep: carol has not got it, so it stays.
    await wait_until(_after(GRACE + 4 * SWEEP), 5, "time to pass")
    assert stored.exists()
    await _download_whole(cluster, carol, done.file_id, data)
    delivered = time.time()

    took = await wait_until(
        _retired(cluster, stored, done.file_id), GRACE + SLACK, "the delivered file to go"
    )
    assert took >= GRACE - 0.5
    assert time.time() < completed + RETENTION, "that was retention, not delivery"
    _assert_tombstone(cluster, done.file_id, "alice", [bob, carol])
    await _gone_for(cluster, bob, done.file_id)
    assert time.time() - delivered < RETENTION


async def test_an_unfinished_upload_expires_and_its_area_is_deleted(
    short_lived: Cluster,
) -> None:
    cluster = short_lived
    receiver = unique_user("bob")
    upload = await negotiate_upload(cluster, "alice", [receiver], 10)
    created = time.time()
    answer = await patch(upload.url, b"01234", 0)
    assert answer.status == 204
    # tus expiration: the client is told when the upload will go.
    expires = answer.headers["Upload-Expires"]
    expires_at = email.utils.parsedate_to_datetime(expires).timestamp()
    assert abs(expires_at - (created + UPLOAD_EXPIRY)) <= 2, expires
    area = upload_path(cluster, "north", upload.file_id)
    assert area.stat().st_size == 5

    await wait_until(
        _retired(cluster, area, upload.file_id), UPLOAD_EXPIRY + SLACK, "the upload to go"
    )

    async with aiohttp.ClientSession() as session:
        head = await session.head(upload.url, headers={"Tus-Resumable": TUS_VERSION})
        assert head.status == 410
    await _refusal(await patch(upload.url, b"56789", 5), 410, "gone")
    _assert_tombstone(cluster, upload.file_id, "alice", [receiver])
    await _gone_for(cluster, "alice", upload.file_id)
    await _not_found_as_for_no_file(cluster, unique_user("mallory"), upload.file_id)
    assert await inbox_file_ids(cluster, receiver) == []


async def test_max_downloads_ends_the_file(one_download: Cluster) -> None:
    cluster = one_download
    bob, carol = unique_user("bob"), unique_user("carol")
    data = b"read once"
    done = await upload_file(cluster, "alice", [bob, carol], data)
    stored = file_path(cluster, "north", done.file_id)
    await _download_whole(cluster, "alice", done.file_id, data)  # the sender's does not count
    url = await _download_whole(cluster, bob, done.file_id, data)

    # The limit is reached: no second download, by anyone, though carol never had it.
    for user in (bob, carol):
        await _refusal(await negotiate_download(cluster, user, done.file_id), 410, "gone")
    await _refusal(await _get(url), 410, "gone")
    await _not_found_as_for_no_file(cluster, unique_user("mallory"), done.file_id)

    await wait_until(
        _retired(cluster, stored, done.file_id), GRACE + SLACK, "the used-up file to go"
    )
    _assert_tombstone(cluster, done.file_id, "alice", [bob, carol])
    for user in ("alice", bob, carol):
        await _gone_for(cluster, user, done.file_id)


async def test_only_the_owning_region_may_remove_inbox_entries(short_lived: Cluster) -> None:
    cluster = short_lived
    receiver = unique_user("bob")
    done = await upload_file(cluster, "alice", [receiver], b"stays")
    await wait_until(_inbox_holds(cluster, receiver, done.file_id), 10, "the inbox entry")
    path = "/v1/peer/inbox/remove"
    body = json.dumps({"file_id": done.file_id}).encode()
    async with aiohttp.ClientSession() as session:
        unsigned = await session.post(
            cluster.directory_url + path, data=body, headers={"Content-Type": "application/json"}
        )
        await expect_error(unsigned, 401, "unauthorized")
        signed = peer_headers(path, body, "region:south")
        other_region = await session.post(
            cluster.directory_url + path,
            data=body,
            headers=signed,
        )
        await expect_error(other_region, 403, "forbidden")
    assert done.file_id in await inbox_file_ids(cluster, receiver)


# -- conditions -------------------------------------------------------------------------------


Condition = Callable[[], Awaitable[bool]]


def _received_by(cluster: Cluster, receiver: str, file_id: str) -> Condition:
    async def received() -> bool:
        answer = await _status(cluster, SENDER, file_id)
        assert answer.status == 200
        status = await answer.json()
        return any(
            r["user"] == receiver and r["received_at"] is not None for r in status["receivers"]
        )

    return received


def _inbox_holds(cluster: Cluster, user: str, file_id: str, *, expected: bool = True) -> Condition:
    async def holds() -> bool:
        return (file_id in await inbox_file_ids(cluster, user)) is expected

    return holds


def _retired(cluster: Cluster, path: Path, file_id: str) -> Condition:
    """Data first, then metadata: the file has left the disk and its tombstone is written."""

    async def retired() -> bool:
        if await asyncio.to_thread(path.exists):
            return False
        rows = await asyncio.to_thread(metadata_rows, cluster, "north", "tombstones", file_id)
        return bool(rows)

    return retired


def _after(seconds: float) -> Condition:
    deadline = time.monotonic() + seconds

    async def passed() -> bool:
        return time.monotonic() >= deadline

    return passed
