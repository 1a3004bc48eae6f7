"""HTTPS on every listener, and server-to-server calls that verify the peers' certificates.

A throw-away CA signs one server certificate valid for every testbed address (IP SANs);
the cluster serves it from its ``[tls]`` table and checks peers against the CA.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geodrop.client import Client
from geodrop.errors import NetworkError
from support.certs import TlsFiles, make_ca, make_server_cert
from support.cli_process import cli_environment, geodrop, run
from support.cluster import Cluster, client_address, running_cluster, user_token
from support.transfer_checks import expect_error, unique_user

ALICE = client_address("north", "telecom")
BOB = client_address("south", "unicom")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    root = tmp_path_factory.mktemp("tls")
    return make_server_cert(root / "server", make_ca(root / "ca"), Cluster.hosts())


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("tls-cluster"), tls=tls_files) as running:
        yield running


def trusting(cluster: Cluster, source: str, token: str | None = None) -> aiohttp.ClientSession:
    """A session from ``source`` that trusts the cluster's CA.

    Its connections stay open until the session closes them (no ``force_close``): aiohttp
    aborts TLS connections at that point, where a per-request close would start a TLS
    shutdown that the test's event loop may not live to finish (an unclosed transport).
    """
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=cluster.ssl_context() or True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(connector=connector, headers=headers)


async def regions(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The directory's view of each region: ``alive``, ``heartbeats`` received, …"""
    async with trusting(cluster, ALICE) as session:
        answer = await session.get(cluster.directory_url + "/v1/regions")
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    return {region["region"]: region for region in body["regions"]}


async def test_every_listener_serves_https_and_the_urls_say_so(tls_cluster: Cluster) -> None:
    assert tls_cluster.tls is not None
    async with Client(
        tls_cluster.directory_url, source_address=BOB, ca_file=tls_cluster.tls.ca
    ) as client:
        where = await client.locate()
    assert where.region == "south"
    assert where.access_url == tls_cluster.access_url("south")
    assert where.access_url.startswith("https://")
    urls = [tls_cluster.directory_url]
    urls += [tls_cluster.access_url(region) for region in ("north", "east", "south")]
    urls += [tls_cluster.link_url("north", carrier) for carrier in ("telecom", "unicom", "mobile")]
    async with trusting(tls_cluster, ALICE) as session:
        for url in urls:
            answer = await session.get(url + "/healthz")
            assert answer.status == 200, url
    # Heartbeats (file server → directory) went over TLS too.
    deadline = time.monotonic() + 10
    while min(r["heartbeats"] for r in (await regions(tls_cluster)).values()) == 0:
        assert time.monotonic() < deadline, await regions(tls_cluster)
        await asyncio.sleep(0.1)


async def test_upload_and_cross_region_download_over_https(
    tls_cluster: Cluster, tmp_path: Path
) -> None:
    """Alice uploads at north (tus); Bob downloads at south, which asks north over TLS."""
    assert tls_cluster.tls is not None
    receiver = unique_user("bob")
    data = os.urandom(3 * 1024 * 1024 + 12345)  # several read chunks, not a round number
    source = tmp_path / "photo.bin"
    source.write_bytes(data)
    async with Client(
        tls_cluster.directory_url,
        user_token("alice"),
        source_address=ALICE,
        state_dir=tmp_path / "alice-state",
        ca_file=tls_cluster.tls.ca,
    ) as alice:
        sent = await alice.send(source, [receiver])
    assert sent.region == "north"
    assert sent.upload_url.startswith(tls_cluster.link_url("north", "telecom"))

    async with Client(
        tls_cluster.directory_url,
        user_token(receiver),
        source_address=BOB,
        state_dir=tmp_path / "bob-state",
        ca_file=tls_cluster.tls.ca,
    ) as bob:
        # The inbox entry came from north to the directory over TLS.
        page = await bob.inbox(wait=10)
        assert [entry.file_id for entry in page.entries] == [sent.file_id]
        got = await bob.receive(sent.file_id, tmp_path / "received.bin")
    assert got.region == "north"
    assert got.url.startswith(tls_cluster.link_url("north", "unicom") + "/blobs/")
    assert hashlib.sha256((tmp_path / "received.bin").read_bytes()).digest() == (
        hashlib.sha256(data).digest()
    )

    # A ranged read of the same blob over TLS (the user-space path, not sendfile).
    async with trusting(tls_cluster, BOB, user_token(receiver)) as session:
        answer = await session.post(
            tls_cluster.access_url("south") + "/v1/downloads", json={"file_id": sent.file_id}
        )
        assert answer.status == 200, await answer.text()
        url = (await answer.json())["url"]
        start, stop = 1024 * 1024 - 7, 2 * 1024 * 1024 + 9
        ranged = await session.get(url, headers={"Range": f"bytes={start}-{stop - 1}"})
        assert ranged.status == 206
        assert ranged.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(data)}"
        assert await ranged.read() == data[start:stop]


async def test_a_client_that_does_not_trust_the_ca_is_refused(tls_cluster: Cluster) -> None:
    targets = [
        tls_cluster.directory_url + "/v1/locate",
        tls_cluster.access_url("north") + "/healthz",
        tls_cluster.link_url("south", "mobile") + "/healthz",
    ]
    async with aiohttp.ClientSession() as session:  # the system's authorities only
        for url in targets:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(url)
    async with Client(tls_cluster.directory_url, source_address=BOB, retries=0) as client:
        with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.locate()


async def test_plain_http_gets_no_answer_from_a_tls_listener(tls_cluster: Cluster) -> None:
    plain = tls_cluster.directory_url.replace("https://", "http://") + "/healthz"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(plain)


async def test_peers_verify_each_others_certificates(tmp_path: Path, tls_files: TlsFiles) -> None:
    """A file server that trusts another CA can neither heartbeat nor ask a peer region.

    North runs with the cluster's CA; south's config names a CA that did not sign the
    servers' certificate. South's listeners still serve the right certificate, so the
    test reaches them; only its outgoing calls fail verification.
    """
    other_ca, _ = make_ca(tmp_path / "other-ca", "some other CA")
    cluster = Cluster(tmp_path, tls=tls_files)
    distrusting = tmp_path / "distrusting.toml"  # beside cluster.toml: same relative paths
    good_table = cluster.tls_toml()
    assert good_table in cluster.toml()
    distrusting.write_text(cluster.toml().replace(good_table, cluster.tls_toml(ca_file=other_ca)))
    try:
        cluster.start("directory")
        cluster.start("north")
        cluster.start("south", config=distrusting)
        # South's heartbeats never verify the directory's certificate; north's do.
        deadline = time.monotonic() + 10
        while (await regions(cluster))["north"]["heartbeats"] < 3:
            assert time.monotonic() < deadline, await regions(cluster)
            await asyncio.sleep(cluster.heartbeat_interval)
        await asyncio.sleep(cluster.heartbeat_timeout)  # past the directory's start-up grace
        seen = await regions(cluster)
        assert seen["north"]["alive"]
        assert seen["south"]["heartbeats"] == 0
        assert not seen["south"]["alive"]
        assert "CERTIFICATE_VERIFY_FAILED" in cluster.log("south")

        # South cannot ask north for a download address: 503, not a silent plain call.
        receiver = unique_user("bob")
        file_id = await _upload_at_north(cluster, receiver, b"kept at north")
        async with trusting(cluster, BOB, user_token(receiver)) as session:
            answer = await session.post(
                cluster.access_url("south") + "/v1/downloads", json={"file_id": file_id}
            )
            error = await expect_error(answer, 503, "peer_unavailable")
        assert "CERTIFICATE_VERIFY_FAILED" in error["message"]
        # The same request at north, which trusts the right CA, is served.
        async with trusting(cluster, ALICE, user_token(receiver)) as session:
            answer = await session.post(
                cluster.access_url("north") + "/v1/downloads", json={"file_id": file_id}
            )
            assert answer.status == 200, await answer.text()
    finally:
        cluster.stop_all()


async def _upload_at_north(cluster: Cluster, receiver: str, data: bytes) -> str:
    body: dict[str, Any] = {
        "name": "kept.txt",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "receivers": [receiver],
    }
    async with trusting(cluster, ALICE, user_token("alice")) as session:
        answer = await session.post(cluster.access_url("north") + "/v1/uploads", json=body)
        assert answer.status == 201, await answer.text()
        created = await answer.json()
        patched = await session.patch(
            created["upload_url"],
            data=data,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert patched.status == 204, await patched.text()
    return str(created["file_id"])


async def test_the_cli_trusts_the_ca_named_by_ca_file(tls_cluster: Cluster, tmp_path: Path) -> None:
    assert tls_cluster.tls is not None
    env = cli_environment(tmp_path / "home")
    common = ["--directory", tls_cluster.directory_url, "--source-address", BOB, "--json"]
    trusted = await run(geodrop("locate", *common, "--ca-file", str(tls_cluster.tls.ca)), env)
    where = trusted.json()
    assert where["region"] == "south"
    assert where["access_url"] == tls_cluster.access_url("south")

    untrusted = await run(geodrop("locate", *common, "--retries", "0"), env)
    assert untrusted.returncode == 5, untrusted.stderr  # network: exit codes in the README
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr

    missing = await run(geodrop("locate", *common, "--ca-file", str(tmp_path / "nope.pem")), env)
    assert missing.returncode == 2, missing.stderr
    assert "--ca-file" in missing.stderr
