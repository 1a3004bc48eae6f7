"""aria2c, unmodified, downloads a file over several connections at once (DESIGN.md §2).

Bob (south/unicom) negotiates with his region and hands the signed URL, which points at
north's unicom link, to aria2c with four connections per server and 1 MiB pieces. The
file must arrive intact, and the server must have seen the connections side by side,
each asking for its own range. aria2c's overall rate is capped so that the link
reports, polled while it runs, catch the connections open together.

aria2c is required, not optional: ``.ci/run`` installs it (``apt-get install aria2``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import pytest

from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import (
    MIB,
    link_reports,
    negotiate_download,
    sha256_of,
    upload_for,
    write_random_file,
)
from support.http import session_from
from support.transfer_checks import unique_user

pytestmark = pytest.mark.e2e

SIZE: Final = 16 * MIB + 777  # sixteen pieces and a short one
CONNECTIONS: Final = 4
RATE_LIMIT: Final = "8M"  # bytes/s over all connections: about two seconds in all
DOWNLOAD_SECONDS: Final = 60.0
POLL_SECONDS: Final = 0.02
BOB: Final = client_address("south", "unicom")
CONTENT_RANGE: Final = re.compile(r"^Content-Range: bytes (\d+)-(\d+)/(\d+)$", re.MULTILINE)


def aria2c() -> str:
    path = shutil.which("aria2c")
    assert path is not None, "aria2c is missing: apt-get install aria2 (.ci/run does)"
    return path


async def test_aria2c_downloads_with_several_connections(cluster: Cluster, tmp_path: Path) -> None:
    program = aria2c()
    original = await asyncio.to_thread(write_random_file, tmp_path / "dataset.bin", SIZE)
    receiver = unique_user("bob")
    file_id = await upload_for(cluster, original, receivers=(receiver,))
    async with session_from(BOB, user_token(receiver)) as bob:
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
    assert urlsplit(offer["url"]).hostname == cluster.link_host("north", "unicom")

    out = tmp_path / "out"
    log = tmp_path / "aria2c.log"
    process = await asyncio.create_subprocess_exec(
        program,
        "--no-conf=true",
        f"--max-connection-per-server={CONNECTIONS}",
        f"--split={CONNECTIONS}",
        "--min-split-size=1M",
        f"--interface={BOB}",
        f"--max-overall-download-limit={RATE_LIMIT}",
        "--file-allocation=none",
        "--max-tries=3",
        "--retry-wait=1",
        "--summary-interval=0",
        "--show-console-readout=false",
        "--console-log-level=warn",
        f"--log={log}",
        "--log-level=info",
        f"--dir={out}",
        "--out=dataset.bin",
        offer["url"],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    finished = asyncio.ensure_future(process.communicate())
    peak = 0
    try:
        async with (
            asyncio.timeout(DOWNLOAD_SECONDS),
            session_from(client_address("north", "mobile")) as watcher,
        ):
            while not finished.done():
                reports = await link_reports(watcher, cluster.access_url("north"))
                peak = max(peak, int(reports["unicom"]["active_transfers"]))
                await asyncio.wait({finished}, timeout=POLL_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
        output, _ = await asyncio.wait_for(finished, 10)
    assert process.returncode == 0, output.decode(errors="replace")

    assert await asyncio.to_thread(sha256_of, out / "dataset.bin") == original.sha256
    # The server's side: several transfers on north's unicom link at the same time.
    assert 2 <= peak <= CONNECTIONS, peak
    # aria2c's side: the server answered its ranged requests with the ranges asked for.
    answered = {
        (int(first), int(last))
        for first, last, total in CONTENT_RANGE.findall(log.read_text())
        if int(total) == SIZE
    }
    assert len(answered) >= 2, log.read_text()[-4000:]
    assert all(0 <= first <= last < SIZE for first, last in answered), answered
