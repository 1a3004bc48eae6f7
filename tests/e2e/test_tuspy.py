"""tuspy, PyPI's tus client, unmodified, uploads to geodrop (DESIGN.md §5).

tuspy speaks through ``requests`` from 127.0.0.1, which the cluster's geo table
maps to the default region (north) and carrier ``any``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tusclient.client import TusClient
from tusclient.uploader.uploader import Uploader

from support.cluster import CARRIERS, Cluster, client_address, user_token
from support.e2e_flows import (
    MIB,
    LocalFile,
    download,
    inbox_cursor,
    negotiate_download,
    negotiate_upload,
    tus_offset,
    wait_for_entry,
    write_random_file,
)
from support.http import session_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(layout_cluster: Cluster) -> Cluster:
    """Runs in each layout: embedded, and north scaled out on S3 + PostgreSQL."""
    return layout_cluster


SIZE = 3 * MIB + 12345
CHUNK_SIZE = SIZE // 4 + 1  # four PATCHes, the last one short


def tuspy_upload_at(url: str, path: Path) -> int:
    """tuspy resumes (HEAD) and completes (PATCHes) an upload at a known URL."""
    with path.open("rb") as stream:
        uploader = Uploader(file_stream=stream, url=url, chunk_size=CHUNK_SIZE)
        assert uploader.offset == 0  # tuspy asked the server with HEAD
        uploader.upload()
        return int(uploader.offset)


def tuspy_create_and_upload(
    creation_url: str, token: str, path: Path, metadata: dict[str, str]
) -> tuple[str, int]:
    """tuspy creates the upload itself (POST, tus creation) and sends it; (its URL, offset)."""
    client = TusClient(creation_url, headers={"Authorization": f"Bearer {token}"})
    with path.open("rb") as stream:
        uploader = client.uploader(file_stream=stream, chunk_size=CHUNK_SIZE, metadata=metadata)
        uploader.upload()
        return str(uploader.url), int(uploader.offset)


async def check_received(cluster: Cluster, cursor: int, file_id: str, original: LocalFile) -> None:
    """Bob finds the file in his inbox and downloads it, byte-identical."""
    async with session_from(client_address("south", "unicom"), user_token("bob")) as bob:
        entry = await wait_for_entry(bob, cluster, cursor, file_id, seconds=10)
        assert entry["sender"] == "alice"
        assert entry["name"] == original.path.name
        assert entry["size"] == original.size
        assert entry["sha256"] == original.sha256
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        got = original.path.with_name("got-" + original.path.name)
        assert await download(bob, offer["url"], got) == original.sha256


async def bob_cursor(cluster: Cluster) -> int:
    async with session_from(client_address("south", "unicom"), user_token("bob")) as bob:
        return await inbox_cursor(bob, cluster)


async def test_tuspy_at_negotiated_url(cluster: Cluster, tmp_path: Path) -> None:
    original = await asyncio.to_thread(write_random_file, tmp_path / "tuspy-at-url.bin", SIZE)
    cursor = await bob_cursor(cluster)
    async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
        upload: dict[str, Any] = await negotiate_upload(
            alice, cluster.access_url("north"), original, ["bob"]
        )
        offset = await asyncio.to_thread(tuspy_upload_at, upload["upload_url"], original.path)
        assert offset == SIZE
        assert await tus_offset(alice, upload["upload_url"]) == SIZE
    await check_received(cluster, cursor, upload["file_id"], original)


async def test_tuspy_creation(cluster: Cluster, tmp_path: Path) -> None:
    original = await asyncio.to_thread(write_random_file, tmp_path / "tuspy-created.bin", SIZE)
    cursor = await bob_cursor(cluster)
    metadata = {"filename": original.path.name, "receivers": "bob"}
    url, offset = await asyncio.to_thread(
        tuspy_create_and_upload,
        cluster.access_url("north") + "/tus",
        user_token("alice"),
        original.path,
        metadata,
    )
    assert offset == SIZE
    # The upload lives on one of north's links, not on the access address it was created at.
    north_links = {cluster.link_host("north", carrier) for carrier, _ in CARRIERS}
    assert urlsplit(url).hostname in north_links
    file_id = urlsplit(url).path.rsplit("/", 1)[-1]
    await check_received(cluster, cursor, file_id, original)
