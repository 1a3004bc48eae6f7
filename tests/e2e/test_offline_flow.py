"""The invention end to end: upload in the north, download in the south from north's link.

Alice (north, China Telecom) leaves a 50 MB file for Bob (south, China Unicom), who
is already waiting on his inbox. Bob negotiates with his own region, south, which
only relays an address: the bytes come straight from north's Unicom link.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import (
    download,
    file_chunks,
    inbox,
    inbox_cursor,
    link_reports,
    locate,
    negotiate_download,
    negotiate_upload,
    send_file,
    sha256_of,
    tus_patch,
    write_random_file,
)
from support.http import session_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(layout_cluster: Cluster) -> Cluster:
    """The flow runs in each layout: embedded, and north scaled out on S3 + PostgreSQL."""
    return layout_cluster


# Decimal megabytes: a size no 1 MiB chunk divides evenly.
FILE_SIZE = 50 * 1000 * 1000


async def test_offline_flow(cluster: Cluster, tmp_path: Path) -> None:
    original = await asyncio.to_thread(write_random_file, tmp_path / "holiday.mp4", FILE_SIZE)
    alice_address = client_address("north", "telecom")
    bob_address = client_address("south", "unicom")
    bob_token = user_token("bob")
    async with (
        session_from(alice_address, user_token("alice")) as alice,
        session_from(bob_address, bob_token) as bob,
    ):
        # Both learn their region and carrier from their source address alone.
        alice_at = await locate(alice, cluster)
        assert alice_at["client_ip"] == alice_address
        assert (alice_at["region"], alice_at["carrier"], alice_at["match"]) == (
            "north",
            "telecom",
            "override",
        )
        assert alice_at["access_url"] == cluster.access_url("north")
        bob_at = await locate(bob, cluster)
        assert (bob_at["region"], bob_at["carrier"], bob_at["match"]) == (
            "south",
            "unicom",
            "override",
        )
        assert bob_at["access_url"] == cluster.access_url("south")

        # Bob is waiting before Alice has sent a byte: one long-poll, no polling loop.
        cursor = await inbox_cursor(bob, cluster)
        waiting = asyncio.create_task(inbox(bob, cluster, cursor, wait=30))
        try:
            upload = await negotiate_upload(alice, alice_at["access_url"], original, ["bob"])
            assert upload["region"] == "north"
            assert upload["carrier"] == "telecom"
            link = urlsplit(upload["upload_url"]).hostname
            assert link == cluster.link_host("north", "telecom")
            file_id = upload["file_id"]

            # The first half: the file is not complete, so Bob's request is still open.
            half = FILE_SIZE // 2 + 1
            offset = await tus_patch(
                alice, upload["upload_url"], 0, file_chunks(original.path, 0, half), half
            )
            assert offset == half
            await asyncio.sleep(0.2)
            assert not waiting.done(), "the long-poll answered before there was anything to say"
            await send_file(alice, upload["upload_url"], original, start=half)
            completed_at = time.monotonic()
            answer = await asyncio.wait_for(waiting, timeout=15)
        finally:
            waiting.cancel()
        woke_after = time.monotonic() - completed_at
        entries = [e for e in answer["entries"] if e["file_id"] == file_id]
        assert len(entries) == 1, answer
        entry = entries[0]
        assert entry["sender"] == "alice"
        assert entry["name"] == "holiday.mp4"
        assert entry["size"] == FILE_SIZE
        assert entry["sha256"] == original.sha256
        assert entry["region"] == "north"
        assert woke_after < 10, f"the long-poll answered {woke_after:.1f} s after completion"

        # Bob negotiates with his own region; south relays north's address for his carrier.
        offer = await negotiate_download(bob, bob_at["access_url"], file_id)
        assert offer["region"] == "north"
        assert offer["link"] == "unicom"
        assert offer["carrier"] == "unicom"
        assert offer["size"] == FILE_SIZE
        assert offer["sha256"] == original.sha256
        assert (
            urlsplit(offer["url"]).hostname == cluster.link_host("north", "unicom") == "127.1.2.1"
        )

        sha = await download(bob, offer["url"], tmp_path / "bob.mp4")
        assert sha == original.sha256

        south = await link_reports(bob, cluster.access_url("south"))
        for name, report in south.items():
            assert report["bytes_sent"] == 0, (name, report)
            assert report["bytes_received"] == 0, (name, report)
        # Several access units share their link figures a few times a second: wait for them.
        deadline = time.monotonic() + 5
        while True:
            north = await link_reports(bob, cluster.access_url("north"))
            moved = (north["unicom"]["bytes_sent"], north["telecom"]["bytes_received"])
            if min(moved) >= FILE_SIZE or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert north["unicom"]["bytes_sent"] >= FILE_SIZE
        assert north["telecom"]["bytes_received"] >= FILE_SIZE

    # Plain HTTP: directory 307 → south's access unit 302 → north's Unicom link.
    target = tmp_path / "curl.mp4"
    url = f"{cluster.directory_url}/v1/files/{file_id}?access_token={quote(bob_token)}"
    curl = await asyncio.to_thread(
        subprocess.run,
        [
            "/usr/bin/curl",
            "--silent",
            "--show-error",
            "--fail",
            "--location",
            "--interface",
            bob_address,
            "--max-time",
            "60",
            "--output",
            str(target),
            "--write-out",
            "%{url_effective} %{num_redirects} %{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert curl.returncode == 0, curl.stderr
    effective, redirects, status = curl.stdout.split()
    assert urlsplit(effective).hostname == cluster.link_host("north", "unicom")
    assert (redirects, status) == ("2", "200")
    assert target.stat().st_size == FILE_SIZE
    assert await asyncio.to_thread(sha256_of, target) == original.sha256

    async with session_from(bob_address, bob_token) as bob:
        south = await link_reports(bob, cluster.access_url("south"))
    assert all(r["bytes_sent"] == 0 and r["bytes_received"] == 0 for r in south.values()), south
