"""``geodrop send`` and ``geodrop receive`` killed mid-transfer resume when run again.

The proof is the server's: north's per-link byte counters (``GET /v1/status``) show
that the rerun sent or fetched only the remainder, never a byte twice.

Loopback moves about 1 GB/s, so the file is large (150 MB) and the kill is tied to
what the command itself reports: its first plain progress line of the transfer
phase on stderr, and for a send, the server's first received bytes. The rest of the
file is still far from sent when SIGKILL lands.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from support.cli_process import CliUser, read_line_starting, started
from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import (
    MIB,
    LocalFile,
    link_reports,
    sha256_of,
    upload_for,
    wait_until_idle,
    write_random_file,
)
from support.http import session_from
from support.transfer_checks import unique_user

pytestmark = pytest.mark.e2e

# Decimal megabytes plus an odd tail: no 1 MiB chunk or 8 MiB sendfile slice divides it.
SIZE: Final = 150 * 1000 * 1000 + 4321
START_SECONDS: Final = 30.0  # until the command reports its first transfer progress
POLL_SECONDS: Final = 0.002


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFile]:
    folder = tmp_path_factory.mktemp("big")
    file = write_random_file(folder / "archive.tar", SIZE)
    yield file
    file.path.unlink()


async def counter(cluster: Cluster, region: str, field: str, link: str | None = None) -> int:
    """``field`` (bytes_sent or bytes_received) of one link of ``region``, or of all its links,
    once no transfer is running there."""
    access = cluster.access_url(region)
    async with session_from(client_address("north", "mobile")) as session:
        await wait_until_idle(session, access)
        reports = await link_reports(session, access)
    return sum(int(r[field]) for name, r in reports.items() if link in (None, name))


async def wait_until_north_receives(cluster: Cluster, above: int, seconds: float = 10.0) -> None:
    """Poll until north's links together have received more than ``above`` bytes."""
    access = cluster.access_url("north")
    async with session_from(client_address("north", "mobile")) as session:
        async with asyncio.timeout(seconds):
            while True:
                reports = await link_reports(session, access)
                if sum(int(r["bytes_received"]) for r in reports.values()) > above:
                    return
                await asyncio.sleep(POLL_SECONDS)


def is_prefix(part: Path, whole: Path) -> bool:
    """Whether ``part`` holds the first bytes of ``whole``, compared a chunk at a time."""
    with part.open("rb") as head, whole.open("rb") as full:
        while chunk := head.read(MIB):
            if full.read(len(chunk)) != chunk:
                return False
    return True


async def test_killed_send_resumes_with_only_the_rest(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    alice = CliUser(
        cluster, tmp_path / "home", user_token("alice"), client_address("north", "telecom")
    )
    # One upload: a parallel send (the default at this size) resumes piece by piece,
    # test_concatenation.py's test_killed_parallel_send_resumes_each_partial_upload.
    send = ("send", str(big_file.path), "--to", unique_user("bob"), "--json", "--parallel", "1")
    received_before = await counter(cluster, "north", "bytes_received")

    async with started(alice.command(*send), alice.env) as first:
        await read_line_starting(first.stderr, "upload ", START_SECONDS)
        await wait_until_north_receives(cluster, received_before)
        first.send_signal(signal.SIGKILL)
        stdout, _ = await asyncio.wait_for(first.communicate(), 10)
    assert first.returncode == -signal.SIGKILL
    assert stdout == b"", "the send finished before it could be killed"

    # What the server counted is exactly what it kept: its offset for the upload.
    kept = await counter(cluster, "north", "bytes_received") - received_before
    print(f"killed with {kept} of {SIZE} bytes kept")
    assert 0 < kept < SIZE, kept
    (record,) = alice.resume_records
    file_id = json.loads(record.read_text())["file_id"]
    halfway = (await alice.run("status", file_id, "--json")).json()
    assert (halfway["state"], halfway["offset"], halfway["size"]) == ("uploading", kept, SIZE)

    # The same command again resumes at the server's offset and sends only the rest.
    sent = (await alice.run(*send)).json()
    assert (sent["file_id"], sent["resumed_from"]) == (file_id, kept)
    assert (sent["size"], sent["sha256"]) == (SIZE, big_file.sha256)
    assert await counter(cluster, "north", "bytes_received") - received_before == SIZE
    done = (await alice.run("status", file_id, "--json")).json()
    assert (done["state"], done["offset"], done["sha256"]) == ("complete", SIZE, big_file.sha256)
    assert alice.resume_records == []


async def test_killed_receive_resumes_with_only_the_rest(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    receiver = unique_user("bob")
    file_id = await upload_for(cluster, big_file, receivers=(receiver,))
    bob = CliUser(
        cluster, tmp_path / "home", user_token(receiver), client_address("south", "unicom")
    )
    target = tmp_path / "archive.tar"
    part = target.with_name(target.name + ".part")
    receive = ("receive", file_id, "-o", str(target), "--json")

    async with started(bob.command(*receive), bob.env) as first:
        await read_line_starting(first.stderr, "download ", START_SECONDS)
        first.send_signal(signal.SIGKILL)
        stdout, _ = await asyncio.wait_for(first.communicate(), 10)
    assert first.returncode == -signal.SIGKILL
    assert stdout == b"", "the receive finished before it could be killed"
    assert not target.exists()
    kept = part.stat().st_size
    print(f"killed with {kept} of {SIZE} bytes kept")
    assert 0 < kept < SIZE, kept
    assert await asyncio.to_thread(is_prefix, part, big_file.path), (
        "the .part is not the file's start"
    )

    # The bytes come from north's unicom link; the rerun asks it only for the rest.
    sent_before = await counter(cluster, "north", "bytes_sent", link="unicom")
    got = (await bob.run(*receive)).json()
    assert (got["resumed_from"], got["link"], got["sha256"]) == (kept, "unicom", big_file.sha256)
    assert await counter(cluster, "north", "bytes_sent", link="unicom") - sent_before == SIZE - kept
    assert not part.exists()
    assert await asyncio.to_thread(sha256_of, target) == big_file.sha256
