"""Storage full (DESIGN.md §7: 507), on a real 20 MiB tmpfs as north's storage.

An upload that cannot fit is refused at negotiation; one that was accepted but runs out
of space mid-PATCH (two uploads that each fit alone) gets 507 while writing. Neither
leaves a half-written file or an inbox entry, files already there stay intact, and the
cut upload resumes once there is room again.

Mounting needs root (or CAP_SYS_ADMIN); without it the test fails and says so.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from support.cluster import Cluster, client_address, user_token
from support.http import session_from
from support.region_state import (
    UNTHROTTLED,
    file_path,
    set_limits,
    set_storage_path,
    upload_path,
    wait_until,
)
from support.transfer_checks import (
    TUS_VERSION,
    assert_inbox_stays_empty,
    expect_error,
    inbox_file_ids,
    negotiate_download,
    negotiate_upload,
    patch,
    unique_user,
)

MIB: Final = 1024 * 1024
TMPFS_SIZE: Final = 20 * MIB
HEADROOM: Final = MIB  # limits.min_free_bytes


@pytest.fixture
def tiny_storage(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "north-storage"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            "the storage-full test mounts a 20 MiB tmpfs as north's storage and could not:"
            f" {mounted.stderr.strip() or mounted.returncode} (run the tests as root, or"
            " with CAP_SYS_ADMIN)"
        )
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)


async def _whole_download(cluster: Cluster, user: str, file_id: str) -> str:
    negotiated = await negotiate_download(cluster, user, file_id)
    assert negotiated.status == 200, await negotiated.text()
    async with (
        aiohttp.ClientSession() as session,
        session.get((await negotiated.json())["url"]) as got,
    ):
        assert got.status == 200
        return hashlib.sha256(await got.read()).hexdigest()


async def _status(cluster: Cluster, user: str, file_id: str) -> dict[str, object]:
    async with session_from(client_address("north", "telecom"), user_token(user)) as session:
        answer = await session.get(cluster.access_url("north") + f"/v1/files/{file_id}/status")
        assert answer.status == 200, await answer.text()
        status: dict[str, object] = await answer.json()
    return status


def _committed(root: Path) -> dict[str, int]:
    return {
        path.name: path.stat().st_size for path in (root / "files").rglob("*") if path.is_file()
    }


async def test_storage_full_is_507_and_leaves_nothing_half_written(
    tmp_path: Path, tiny_storage: Path
) -> None:
    root = tmp_path / "cluster"
    root.mkdir()
    cluster = Cluster(root)
    set_storage_path(cluster, "north", tiny_storage)
    set_limits(cluster, min_free_bytes=HEADROOM, **UNTHROTTLED)
    try:
        cluster.start_all()
        await _run(cluster, tiny_storage)
    finally:
        cluster.stop_all()


async def _run(cluster: Cluster, storage: Path) -> None:
    existing_data, first_data, cut_data = (os.urandom(n) for n in (3 * MIB, 9 * MIB, 9 * MIB))
    receivers = {name: unique_user(name) for name in ("existing", "first", "cut")}

    existing = await negotiate_upload(
        cluster,
        "alice",
        [receivers["existing"]],
        len(existing_data),
        sha256=hashlib.sha256(existing_data).hexdigest(),
    )
    assert (await patch(existing.url, existing_data, 0)).status == 204

    # 1. Cannot fit at all: refused before anything is created.
    too_big = unique_user("too-big")
    async with session_from(client_address("north", "telecom"), user_token("alice")) as s:
        answer = await s.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "huge.iso", "size": 30 * MIB, "receivers": [too_big]},
        )
        await expect_error(answer, 507, "insufficient_storage")
        creation = await s.post(
            cluster.link_url("north", "telecom") + "/tus",
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(30 * MIB),
                "Upload-Metadata": f"filename aHVnZS5pc28=,receivers {_b64(too_big)}",
            },
        )
        await expect_error(creation, 507, "insufficient_storage")
        assert creation.headers["Tus-Resumable"] == TUS_VERSION

    # 2. Two uploads that each fit alone, but not together: both are accepted...
    first, cut = [
        await negotiate_upload(
            cluster, "alice", [receivers[name]], len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        for name, data in (("first", first_data), ("cut", cut_data))
    ]
    assert (await patch(first.url, first_data, 0)).status == 204
    # ...and the second runs out of space while its bytes are written.
    answer = await patch(cut.url, cut_data, 0)
    await expect_error(answer, 507, "insufficient_storage")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION

    # Nothing half-written is a file: the committed files are exactly the whole ones.
    assert await asyncio.to_thread(_committed, storage) == {
        existing.file_id: len(existing_data),
        first.file_id: len(first_data),
    }
    assert not await asyncio.to_thread(file_path(cluster, "north", cut.file_id).exists)
    kept = (await asyncio.to_thread(upload_path(cluster, "north", cut.file_id).stat)).st_size
    assert 0 < kept < len(cut_data)
    status = await _status(cluster, "alice", cut.file_id)
    assert (status["state"], status["offset"]) == ("uploading", kept)
    assert status["receivers"] == [
        {"user": receivers["cut"], "announced": False, "received_at": None}
    ]
    refused = await negotiate_download(cluster, receivers["cut"], cut.file_id)
    await expect_error(refused, 409, "conflict")

    # Files already there are intact.
    for name, upload, data in (("existing", existing, existing_data), ("first", first, first_data)):
        assert await _whole_download(cluster, receivers[name], upload.file_id) == (
            hashlib.sha256(data).hexdigest()
        )

    # Room again (the sender deletes the first upload): the cut one resumes and completes.
    async with aiohttp.ClientSession() as session:
        deleted = await session.delete(first.url, headers={"Tus-Resumable": TUS_VERSION})
        assert deleted.status == 204
        head = await session.head(cut.url, headers={"Tus-Resumable": TUS_VERSION})
        assert head.status == 200
        offset = int(head.headers["Upload-Offset"])
    assert offset == kept
    # Until it completes, the cut upload is in no inbox (a witness file proves north has
    # delivered everything it had to by now).
    await assert_inbox_stays_empty(cluster, receivers["cut"])
    assert (await patch(cut.url, cut_data[offset:], offset)).status == 204
    assert await _whole_download(cluster, receivers["cut"], cut.file_id) == (
        hashlib.sha256(cut_data).hexdigest()
    )
    # The deleted file's inbox entry is withdrawn; the completed one's arrives.
    await wait_until(
        lambda: _holds(cluster, receivers["first"], first.file_id, False), 10, "withdrawal"
    )
    await wait_until(lambda: _holds(cluster, receivers["cut"], cut.file_id, True), 10, "entry")


async def _holds(cluster: Cluster, user: str, file_id: str, expected: bool) -> bool:
    return (file_id in await inbox_file_ids(cluster, user)) is expected


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
