"""An upload cut at a random byte, by the client or by a crash of the server, resumes (tus).

DESIGN.md §7: "a crash at any byte leaves an upload resumable". The cut points come
from a seeded generator whose seed is printed, so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from support.cluster import Cluster, client_address, running_cluster, user_token
from support.e2e_flows import (
    MIB,
    LocalFile,
    download,
    file_chunks,
    link_reports,
    negotiate_download,
    negotiate_upload,
    patch_headers,
    seeded_random,
    send_file,
    tus_offset,
    tus_patch,
    wait_until_idle,
    wait_until_received,
    write_random_file,
)
from support.http import session_from
from support.region_state import upload_path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(layout_cluster: Cluster) -> Cluster:
    """Runs in each layout: embedded, and north scaled out on S3 + PostgreSQL."""
    return layout_cluster


BODY_CHUNK = 64 * 1024


class CutConnection(Exception):
    """Raised by a request body to drop its connection in the middle of the body."""


async def cut_body(
    path: Path,
    start: int,
    cut: int,
    before_cut: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Bytes ``[start, cut)`` of ``path``, then the connection drops."""
    async for chunk in file_chunks(path, start, cut, BODY_CHUNK):
        yield chunk
    if before_cut is not None:
        await before_cut()
    raise CutConnection(f"cut at byte {cut}")


async def check_download(cluster: Cluster, file_id: str, original: LocalFile, target: Path) -> None:
    """Bob, in the south, negotiates with south and gets the whole file, byte-identical."""
    async with session_from(client_address("south", "unicom"), user_token("bob")) as bob:
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        assert offer["size"] == original.size
        assert offer["sha256"] == original.sha256
        assert await download(bob, offer["url"], target) == original.sha256


async def test_resume_upload(cluster: Cluster, tmp_path: Path) -> None:
    rng = seeded_random()
    size = 8 * MIB + rng.randrange(MIB)
    original = await asyncio.to_thread(write_random_file, tmp_path / "cut.bin", size)
    north = cluster.access_url("north")
    async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
        upload = await negotiate_upload(alice, north, original, ["bob"])
        url, link = upload["upload_url"], upload["link"]
        await wait_until_idle(alice, north, quiet=cluster.quiet_seconds("north"))
        received_before = (await link_reports(alice, north))[link]["bytes_received"]

        # First cut: every byte before it has reached the server when the connection drops.
        cut = rng.randrange(1, size - 1)

        async def all_arrived() -> None:
            await wait_until_received(alice, north, link, received_before + cut)

        with pytest.raises(aiohttp.ClientError) as dropped:
            await tus_patch(alice, url, 0, cut_body(original.path, 0, cut, all_arrived), size)
        assert isinstance(dropped.value.__cause__, CutConnection), dropped.value
        await wait_until_idle(alice, north, quiet=cluster.quiet_seconds("north"))
        offset = await tus_offset(alice, url)
        assert 0 < offset <= cut, (offset, cut)

        # Second cut, anywhere after the first and with no waiting: the server keeps
        # at most what was sent and never goes back.
        second_cut = rng.randrange(offset + 1, size)
        with pytest.raises(aiohttp.ClientError):
            await tus_patch(
                alice, url, offset, cut_body(original.path, offset, second_cut), size - offset
            )
        await wait_until_idle(alice, north, quiet=cluster.quiet_seconds("north"))
        resumed_at = await tus_offset(alice, url)
        assert offset <= resumed_at <= second_cut, (offset, resumed_at, second_cut)

        # A PATCH at a stale offset is refused and changes nothing (tus core: 409).
        if resumed_at > 0:
            stale = resumed_at - 1
            async with alice.patch(url, data=b"x", headers=patch_headers(stale, 1)) as refused:
                assert refused.status == 409
                assert (await refused.json())["error"]["code"] == "offset_mismatch"
            assert await tus_offset(alice, url) == resumed_at

        await send_file(alice, url, original, start=resumed_at)
        assert await tus_offset(alice, url) == size
    await check_download(cluster, upload["file_id"], original, tmp_path / "got.bin")


async def test_resume_upload_after_crash(tmp_path: Path) -> None:
    rng = seeded_random()
    size = 16 * MIB + rng.randrange(MIB)
    original = await asyncio.to_thread(write_random_file, tmp_path / "crash.bin", size)
    root = tmp_path / "cluster"
    root.mkdir()
    # A cluster of its own: north goes down in the middle of this test.
    with running_cluster(root) as cluster:
        north = cluster.access_url("north")
        async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
            upload = await negotiate_upload(alice, north, original, ["bob"])
            url, link = upload["upload_url"], upload["link"]
            kill_at = rng.randrange(1, size - 1)

            async def crash_mid_body() -> AsyncIterator[bytes]:
                async for chunk in file_chunks(original.path, 0, kill_at, BODY_CHUNK):
                    yield chunk
                await wait_until_received(alice, north, link, kill_at)
                await asyncio.to_thread(cluster.stop, "north", signal.SIGKILL)
                async for chunk in file_chunks(original.path, kill_at, size, BODY_CHUNK):
                    yield chunk

            with pytest.raises(aiohttp.ClientError):
                await tus_patch(alice, url, 0, crash_mid_body(), size)
            assert "north" not in cluster.processes

            await asyncio.to_thread(cluster.start, "north")
            offset = await tus_offset(alice, url)
            assert 0 < offset <= kill_at, (offset, kill_at)
            await send_file(alice, url, original, start=offset)
            assert await tus_offset(alice, url) == size
        await check_download(cluster, upload["file_id"], original, tmp_path / "got.bin")


async def test_an_upload_area_a_machine_crash_lost_is_made_again(tmp_path: Path) -> None:
    """The local store does not fsync a new upload area's name (storage/localfs.py): a
    crash of the machine before the next commit may lose it, with nothing in it. Here
    north is killed and the areas deleted, as such a crash leaves them; the records
    survived (they are fsynced), so each upload goes on from 0, whether its client asks
    first (HEAD) or sends straight away (PATCH at 0); a PATCH at another offset is told
    the offset is 0 (409), as after any lost bytes."""
    rng = seeded_random()
    originals = [
        await asyncio.to_thread(write_random_file, tmp_path / f"{n}.bin", MIB + rng.randrange(MIB))
        for n in range(3)
    ]
    root = tmp_path / "cluster"
    root.mkdir()
    with running_cluster(root) as cluster:
        north = cluster.access_url("north")
        async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
            uploads = [await negotiate_upload(alice, north, f, ["bob"]) for f in originals]
            areas = [upload_path(cluster, "north", u["upload_id"]) for u in uploads]
            assert all(area.exists() for area in areas)
            await asyncio.to_thread(cluster.stop, "north", signal.SIGKILL)
            for area in areas:
                area.unlink()
            await asyncio.to_thread(cluster.start, "north")
            asked, sent, ahead = zip(uploads, originals, strict=True)

            assert await tus_offset(alice, asked[0]["upload_url"]) == 0
            await send_file(alice, asked[0]["upload_url"], asked[1])

            await send_file(alice, sent[0]["upload_url"], sent[1])

            half = ahead[1].size // 2
            async with alice.patch(
                ahead[0]["upload_url"],
                data=file_chunks(ahead[1].path, half, ahead[1].size),
                headers=patch_headers(half, ahead[1].size - half),
            ) as refused:
                assert refused.status == 409, await refused.text()
            assert await tus_offset(alice, ahead[0]["upload_url"]) == 0
            await send_file(alice, ahead[0]["upload_url"], ahead[1])
        for upload, original in zip(uploads, originals, strict=True):
            await check_download(cluster, upload["file_id"], original, tmp_path / "got.bin")
