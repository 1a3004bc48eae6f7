"""A region scaled out: two stateless access units over one S3 store and one PostgreSQL.

The access unit writing an upload into S3 is killed in the middle of the request; the
client resumes through the region's other unit, on the same addresses (SO_REUSEPORT, no
sticky sessions), and the file arrives whole. The region never looks down meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from support.cluster import Cluster, client_address, running_cluster, user_token
from support.e2e_flows import (
    MIB,
    download,
    file_chunks,
    locate,
    negotiate_download,
    negotiate_upload,
    send_file,
    tus_offset,
    tus_patch,
    write_random_file,
)
from support.http import session_from
from support.layouts import MIXED, SCALED_REGION, Backends, cluster_options
from support.postgres import PostgresServer
from support.seaweedfs import SeaweedFS

pytestmark = [pytest.mark.e2e, pytest.mark.s3, pytest.mark.postgres]

FILE_SIZE = 40 * MIB + 12345
# Enough for the dying unit to have stored two 5 MiB parts before it is killed.
SENT_BEFORE_KILL = 16 * MIB


@pytest.fixture
def scaled(
    tmp_path: Path, postgres_server: PostgresServer, seaweedfs: SeaweedFS
) -> Iterator[tuple[Cluster, Backends]]:
    backends = Backends(postgres_server, seaweedfs)
    root = tmp_path / "cluster"
    root.mkdir()
    try:
        with running_cluster(root, **cluster_options(MIXED, backends)) as cluster:
            yield cluster, backends
    finally:
        backends.drop()


def _unit_holding(cluster: Cluster, client_ip: str, link_host: str) -> str | None:
    """The access unit with an established connection from ``client_ip`` to ``link_host``."""
    for name in cluster.units(SCALED_REGION):
        process = cluster.processes.get(name)
        if process is None:
            continue
        for connection in psutil.Process(process.pid).net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_ESTABLISHED
                and connection.raddr
                and connection.raddr.ip == client_ip
                and connection.laddr.ip == link_host
            ):
                return name
    return None


def _bucket_objects(seaweedfs: SeaweedFS, bucket: str) -> dict[str, int]:
    client = seaweedfs.client()
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["Size"]
    return found


def _bucket_of(cluster: Cluster) -> str:
    storage = cluster.layout(SCALED_REGION).storage
    return storage.split('bucket = "', 1)[1].split('"', 1)[0]


async def test_upload_survives_the_death_of_its_access_unit(
    scaled: tuple[Cluster, Backends], tmp_path: Path
) -> None:
    cluster, backends = scaled
    assert len(cluster.units(SCALED_REGION)) == 2
    original = await asyncio.to_thread(write_random_file, tmp_path / "big.bin", FILE_SIZE)
    alice_ip = client_address("north", "telecom")
    link_host = cluster.link_host("north", "telecom")
    north = cluster.access_url("north")
    killed: dict[str, Any] = {}

    async with session_from(alice_ip, user_token("alice")) as alice:
        upload = await negotiate_upload(alice, north, original, ["bob"])
        url = upload["upload_url"]
        assert upload["link"] == "telecom"

        async def body_then_kill() -> AsyncIterator[bytes]:
            async for chunk in file_chunks(original.path, 0, SENT_BEFORE_KILL):
                yield chunk
            # The connection is held by one unit: find it, wait until S3 holds parts of
            # what it received (HEAD may be answered by either unit: both read S3), kill it.
            deadline = time.monotonic() + 20
            holder = None
            while holder is None:
                assert time.monotonic() < deadline, "no unit holds the upload's connection"
                holder = await asyncio.to_thread(_unit_holding, cluster, alice_ip, link_host)
                await asyncio.sleep(0.05)
            async with session_from(alice_ip) as probe:
                while await tus_offset(probe, url) < 10 * MIB:
                    assert time.monotonic() < deadline, "no part reached S3"
                    await asyncio.sleep(0.1)
            killed["name"] = holder
            killed["process"] = cluster.processes[holder]
            # The dying unit drops this request: the body is torn down while stop() waits.
            await asyncio.to_thread(cluster.stop, holder, signal.SIGKILL)
            async for chunk in file_chunks(original.path, SENT_BEFORE_KILL, FILE_SIZE):
                yield chunk

        with pytest.raises(aiohttp.ClientError) as dropped:
            await tus_patch(alice, url, 0, body_then_kill(), FILE_SIZE)
        assert "process" in killed, f"the upload failed before the kill: {dropped.value!r}"
        assert killed["name"] not in cluster.processes
        assert await asyncio.to_thread(killed["process"].wait, 10) == -signal.SIGKILL

        # The surviving unit answers on the same addresses, from what S3 holds: the parts
        # the dead unit recorded (5 MiB each), never more than was sent.
        offset = await tus_offset(alice, url)
        assert 10 * MIB <= offset <= SENT_BEFORE_KILL, offset
        await send_file(alice, url, original, start=offset)
        assert await tus_offset(alice, url) == FILE_SIZE

        # The region never looked down: one unit still beats for it.
        await asyncio.sleep(cluster.heartbeat_timeout + 0.5)
        where = await locate(alice, cluster)
        assert (where["region"], where["match"]) == ("north", "override")

    file_id = upload["file_id"]
    objects = await asyncio.to_thread(_bucket_objects, backends.seaweedfs, _bucket_of(cluster))
    stored = {key: size for key, size in objects.items() if key.endswith(file_id)}
    assert list(stored.values()) == [FILE_SIZE], objects
    async with session_from(client_address("south", "unicom"), user_token("bob")) as bob:
        offer = await negotiate_download(bob, cluster.access_url("south"), file_id)
        assert offer["region"] == "north"
        assert await download(bob, offer["url"], tmp_path / "got.bin") == original.sha256
