"""A download cut mid-way resumes with HTTP Range and If-Range, and ends byte-identical."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest

from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import (
    MIB,
    negotiate_download,
    seeded_random,
    sha256_of,
    upload_for,
    write_random_file,
)
from support.http import session_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(layout_cluster: Cluster) -> Cluster:
    """Runs in each layout: embedded, and north scaled out on S3 + PostgreSQL."""
    return layout_cluster


BOB = client_address("south", "unicom")


async def test_resume_download(cluster: Cluster, tmp_path: Path) -> None:
    rng = seeded_random()
    size = 6 * MIB + rng.randrange(MIB)
    original = await asyncio.to_thread(write_random_file, tmp_path / "film.bin", size)
    file_id = await upload_for(cluster, original)
    etag = f'"{original.sha256}"'
    async with session_from(BOB, user_token("bob")) as bob:
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        url = offer["url"]

        # Read up to a random byte, then drop the connection.
        cut = rng.randrange(1, size)
        head = bytearray()
        async with bob.get(url) as whole:
            assert whole.status == 200
            assert whole.headers["ETag"] == etag
            assert whole.headers["Accept-Ranges"] == "bytes"
            assert whole.content_length == size
            while len(head) < cut:
                data = await whole.content.read(min(64 * 1024, cut - len(head)))
                assert data, f"the body ended at {len(head)} of {size}"
                head += data
            whole.close()
        assert len(head) == cut

        async with bob.get(url, headers={"Range": f"bytes={cut}-", "If-Range": etag}) as rest:
            assert rest.status == 206
            assert rest.headers["Content-Range"] == f"bytes {cut}-{size - 1}/{size}"
            assert rest.content_length == size - cut
            assert rest.headers["ETag"] == etag
            tail = await rest.read()
        assert hashlib.sha256(bytes(head) + tail).hexdigest() == original.sha256

        # If-Range names another version: the range is ignored and the whole file comes
        # back (RFC 9110 §13.1.5), so a client never splices two different files.
        stale = f'"{"0" * 64}"'
        async with bob.get(url, headers={"Range": f"bytes={cut}-", "If-Range": stale}) as fresh:
            assert fresh.status == 200
            assert fresh.content_length == size
            assert "Content-Range" not in fresh.headers
            assert hashlib.sha256(await fresh.read()).hexdigest() == original.sha256

    # curl resumes a partial file where it stops (-C -): it asks for the rest with Range.
    partial = tmp_path / "curl.bin"
    keep = rng.randrange(1, size)
    with original.path.open("rb") as source:
        partial.write_bytes(source.read(keep))
    curl = await asyncio.to_thread(
        subprocess.run,
        [
            "/usr/bin/curl",
            "--silent",
            "--show-error",
            "--fail",
            "--continue-at",
            "-",
            "--interface",
            BOB,
            "--max-time",
            "60",
            "--output",
            str(partial),
            "--write-out",
            "%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout == "206"
    assert partial.stat().st_size == size
    assert await asyncio.to_thread(sha256_of, partial) == original.sha256
