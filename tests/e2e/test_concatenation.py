"""Parallel uploads with tus concatenation, on a real cluster (north: local FS + SQLite).

A 200 MB file goes as four partial uploads in parallel plus a final upload, by raw HTTP
and by geodrop's own client and command; the bodies of the raw-HTTP checks live in
support/concatenation.py, and run in both layouts: north on local FS + SQLite, and north
on SeaweedFS S3 + PostgreSQL with two access units (support/layouts.py), where the
final object must be made of the partials by server-side copies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest

from geodrop.client import Client
from geodrop.protocol import signing
from support.cli_process import CliUser, read_line_starting, started
from support.cluster import Cluster, client_address, running_cluster, user_token
from support.concatenation import (
    check_concatenated_upload,
    check_concatenation_refusals,
    equal_pieces,
    head,
    streamed_sha256,
)
from support.e2e_flows import (
    LocalFile,
    link_reports,
    negotiate_download,
    wait_for_entry,
    wait_until_idle,
    write_random_file,
)
from support.http import session_from
from support.seaweedfs import s3_client
from support.transfer_checks import signed_blob_url, unique_user

pytestmark = pytest.mark.e2e

# Decimal megabytes: above the client's 64 MiB threshold, within the cluster's 200 MiB.
SIZE: Final = 200 * 1000 * 1000
START_SECONDS: Final = 30.0
POLL_SECONDS: Final = 0.002
# tus-js-client as `make web` installs it for the web client (from npm, not in git).
NODE_MODULES: Final = Path(__file__).resolve().parents[2] / "web" / "node_modules"
# tus-js-client, unmodified, sends a file with four parallel partial uploads and prints
# the final upload's URL.
TUS_JS_SEND: Final = """
const fs = require('fs')
const tus = require('tus-js-client')
const [endpoint, token, path, receivers] = process.argv.slice(2)
const upload = new tus.Upload(fs.readFileSync(path), {
  endpoint,
  parallelUploads: 4,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: 'from-tus-js-client.bin', receivers },
  retryDelays: [],
  onError: (error) => { console.error(String(error)); process.exit(1) },
  onSuccess: () => console.log(upload.url),
})
upload.start()
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFile]:
    folder = tmp_path_factory.mktemp("concatenation")
    file = write_random_file(folder / "dataset.bin", SIZE)
    yield file
    file.path.unlink()


@pytest.fixture(scope="module")
def layout_cluster(
    layout_options: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """The module's own cluster in the embedded layout (no options), else a cluster of
    the scaled-out layout."""
    if not layout_options:
        yield request.getfixturevalue("cluster")
        return
    with running_cluster(tmp_path_factory.mktemp("scaled"), **layout_options) as running:
        yield running


def s3_parts(cluster: Cluster, region: str, file_id: str) -> tuple[int, int] | None:
    """How many parts the object of ``file_id`` has and the first one's size, asked of
    the S3 store ``region`` keeps its files in; None for a region on local FS."""
    storage = tomllib.loads(f"storage = {cluster.layout(region).storage}")["storage"]
    if storage["kind"] != "s3":
        return None
    client = s3_client(storage["endpoint_url"], storage["access_key"], storage["secret_key"])
    key = f"{storage.get('prefix', '')}files/{file_id}"
    first = client.head_object(Bucket=storage["bucket"], Key=key, PartNumber=1)
    return first["PartsCount"], first["ContentLength"]


async def test_200_mb_as_four_parallel_partial_uploads(
    layout_cluster: Cluster, big_file: LocalFile
) -> None:
    sent = await check_concatenated_upload(layout_cluster, "north", big_file, parts=4)
    parts = await asyncio.to_thread(s3_parts, layout_cluster, "north", sent.file_id)
    if parts is not None:
        # One part per partial upload, copied inside S3 (UploadPartCopy). Bytes sent again
        # through geodrop would be cut into parts of the region's part size (5 MiB here).
        assert parts == (4, equal_pieces(SIZE, 4)[0])


async def test_refusals(layout_cluster: Cluster) -> None:
    await check_concatenation_refusals(layout_cluster, "north")


def signed_upload_url(cluster: Cluster, path: str, user: str, link: str) -> str:
    """A signed tus URL for the upload at ``path`` (``/tus/ID``) on north's ``link``."""
    upload_id = path.rsplit("/", 1)[-1]
    return signed_blob_url(cluster, upload_id, user, carrier=link, action=signing.Action.UPLOAD)


async def test_client_sends_a_large_file_as_four_partial_uploads(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    sender, receiver = unique_user("alice"), unique_user("bob")
    async with Client(
        cluster.directory_url,
        user_token(sender),
        source_address=client_address("north", "unicom"),
        state_dir=tmp_path / "alice",
    ) as alice:
        sent = await alice.send(big_file.path, [receiver])
    assert (sent.size, sent.sha256, sent.partials, sent.link) == (
        SIZE,
        big_file.sha256,
        4,
        "unicom",
    )
    # The server's word, not the client's: the file is a final upload of four partial
    # uploads, which are gone now.
    final = await head(sent.upload_url)
    assert final.status == 200
    kind, _, paths = final.headers["Upload-Concat"].partition(";")
    assert kind == "final"
    partials = paths.split(" ")
    assert len(partials) == 4
    for path in partials:
        assert (await head(signed_upload_url(cluster, path, sender, "unicom"))).status == 410

    async with Client(
        cluster.directory_url,
        user_token(receiver),
        source_address=client_address("south", "unicom"),
        state_dir=tmp_path / "bob",
    ) as bob:
        entries = (await bob.inbox(wait=10)).entries
        assert [entry.file_id for entry in entries] == [sent.file_id]
        got = await bob.receive(sent.file_id, tmp_path / "received.bin")
    assert got.sha256 == big_file.sha256
    got.path.unlink()


async def test_tus_js_client_parallel_uploads(cluster: Cluster, tmp_path: Path) -> None:
    assert (NODE_MODULES / "tus-js-client").is_dir(), "tus-js-client is missing: run `make web`"
    sender, receiver = unique_user("alice"), unique_user("bob")
    file = await asyncio.to_thread(write_random_file, tmp_path / "js.bin", 20 * 1000 * 1000)
    script = tmp_path / "send.cjs"
    script.write_text(TUS_JS_SEND)
    node = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        cluster.access_url("north") + "/tus",
        user_token(sender),
        str(file.path),
        receiver,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(node.communicate(), 60)
    assert node.returncode == 0, stderr.decode()
    final = await head(stdout.decode().strip())
    kind, _, paths = final.headers["Upload-Concat"].partition(";")
    assert (kind, len(paths.split(" "))) == ("final", 4)
    assert final.headers["Upload-Offset"] == str(file.size)

    async with session_from(client_address("south", "unicom"), user_token(receiver)) as bob:
        file_id = urlsplit(stdout.decode().strip()).path.rsplit("/", 1)[-1]
        entry = await wait_for_entry(bob, cluster, 0, file_id, 10)
        assert (entry["name"], entry["sha256"]) == ("from-tus-js-client.bin", file.sha256)
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        assert await streamed_sha256(bob, offer["url"]) == file.sha256


async def received_bytes(cluster: Cluster) -> int:
    """Bytes north's links have received, once no transfer is running there."""
    access = cluster.access_url("north")
    async with session_from(client_address("north", "mobile")) as session:
        await wait_until_idle(session, access)
        reports = await link_reports(session, access)
    return sum(int(r["bytes_received"]) for r in reports.values())


async def wait_until_north_receives(cluster: Cluster, above: int, seconds: float = 10.0) -> None:
    access = cluster.access_url("north")
    async with session_from(client_address("north", "mobile")) as session:
        async with asyncio.timeout(seconds):
            while True:
                reports = await link_reports(session, access)
                if sum(int(r["bytes_received"]) for r in reports.values()) > above:
                    return
                await asyncio.sleep(POLL_SECONDS)


async def test_killed_parallel_send_resumes_each_partial_upload(
    cluster: Cluster, big_file: LocalFile, tmp_path: Path
) -> None:
    receiver = unique_user("bob")
    alice = CliUser(
        cluster, tmp_path / "home", user_token("alice"), client_address("north", "telecom")
    )
    send = ("send", str(big_file.path), "--to", receiver, "--json")
    before = await received_bytes(cluster)

    async with started(alice.command(*send), alice.env) as first:
        await read_line_starting(first.stderr, "upload ", START_SECONDS)
        await wait_until_north_receives(cluster, before)
        first.send_signal(signal.SIGKILL)
        stdout, _ = await asyncio.wait_for(first.communicate(), 10)
    assert first.returncode == -signal.SIGKILL
    assert stdout == b"", "the send finished before it could be killed"

    kept = await received_bytes(cluster) - before
    (record_path,) = alice.resume_records
    record = json.loads(record_path.read_text())
    assert len(record["partial_sizes"]) == len(record["partial_urls"]) == 4
    assert sum(record["partial_sizes"]) == SIZE
    # What the server counted is what its four partial uploads hold, piece by piece.
    offsets = []
    for url, size in zip(record["partial_urls"], record["partial_sizes"], strict=True):
        answer = await head(url)
        assert answer.headers["Upload-Concat"] == "partial"
        assert answer.headers["Upload-Length"] == str(size)
        offsets.append(int(answer.headers["Upload-Offset"]))
    print(f"killed with {kept} of {SIZE} bytes kept, by piece {offsets}")
    assert 0 < kept <= SIZE
    assert sum(offsets) == kept

    # The same command again sends each piece's rest, never a byte twice, then the final.
    sent = (await alice.run(*send)).json()
    assert (sent["resumed_from"], sent["partials"], sent["size"]) == (kept, 4, SIZE)
    assert sent["sha256"] == big_file.sha256
    assert await received_bytes(cluster) - before == SIZE
    assert urlsplit(sent["upload_url"]).path == f"/tus/{sent['file_id']}"
    done = (await alice.run("status", sent["file_id"], "--json")).json()
    assert (done["state"], done["size"], done["sha256"]) == ("complete", SIZE, big_file.sha256)
    assert alice.resume_records == []
