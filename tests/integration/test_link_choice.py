"""Link choice under real load (DESIGN.md §3): carrier first, then the less-loaded link.

North gets a second telecom link. One of north's two telecom links is loaded with real
downloads held open mid-transfer (the server counts a transfer as active while its
response is in flight, and sendfile blocks once the socket buffers are full); then
north/telecom clients must be sent to the other one at least 90% of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from geodrop.fileserver.background import LINK_SHARE_SECONDS
from support.cluster import Cluster, ExtraLink, client_address, running_cluster, user_token
from support.http import session_from
from support.transfer_checks import upload_file

HELD_LINK: Final = "telecom"
FREE_LINK: Final = "telecom-2"
FREE_LINK_HOST: Final = "127.1.1.2"
NEGOTIATIONS: Final = 200
HELD_DOWNLOADS: Final = 3
FILE_SIZE: Final = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def two_telecom_links(
    tmp_path_factory: pytest.TempPathFactory, layout_options: dict[str, Any]
) -> Iterator[Cluster]:
    """A cluster whose north region has two telecom links (in each layout: scaled out, north's
    two access units each see the downloads the other serves)."""
    root: Path = tmp_path_factory.mktemp("link-choice")
    with running_cluster(
        root,
        extra_links=[ExtraLink("north", FREE_LINK, "telecom", FREE_LINK_HOST)],
        **layout_options,
    ) as running:
        yield running


async def _link_status(cluster: Cluster) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        answer = await session.get(cluster.access_url("north") + "/v1/status")
        assert answer.status == 200
        body = await answer.json()
    return {link["name"]: link for link in body["links"]}


async def _wait_for_active(
    cluster: Cluster, expected: dict[str, int], within: float = 10.0, steady: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Poll north's status until each named link has ``expected`` active transfers, and has
    kept them for ``steady`` seconds of polls."""
    deadline = time.monotonic() + within
    since: float | None = None
    while True:
        links = await _link_status(cluster)
        actual = {name: links[name]["active_transfers"] for name in expected}
        now = time.monotonic()
        if actual != expected:
            since = None
        elif since is None:
            since = now
        if since is not None and now - since >= steady:
            return links
        assert now < deadline, f"active transfers {actual}, expected {expected}"
        await asyncio.sleep(0.05)


def _sharing_settle(cluster: Cluster) -> float:
    """How long figures take to reach every access unit of north: each unit publishes its own
    and reads the others' once per share interval (a heartbeat here), so two intervals and
    some slack. Each status poll is a new connection, which lands on either unit."""
    if cluster.layout("north").access_units == 1:
        return 0.0
    return 3 * min(LINK_SHARE_SECONDS, cluster.heartbeat_interval)


async def _negotiate_links(
    cluster: Cluster, file_id: str, carrier: str, count: int
) -> list[dict[str, Any]]:
    """``count`` download negotiations at north as bob, a north client of ``carrier``."""
    limit = asyncio.Semaphore(8)

    async def one(session: aiohttp.ClientSession) -> dict[str, Any]:
        async with limit:
            answer = await session.post(
                cluster.access_url("north") + "/v1/downloads", json={"file_id": file_id}
            )
            assert answer.status == 200, await answer.text()
            address: dict[str, Any] = await answer.json()
            return address

    async with session_from(client_address("north", carrier), user_token("bob")) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


async def _urls_on_link(cluster: Cluster, file_id: str, link: str, count: int) -> list[str]:
    """``count`` signed URLs on ``link``, negotiated while every link is idle (a coin toss each)."""
    urls: list[str] = []
    for _ in range(25):
        addresses = await _negotiate_links(cluster, file_id, "telecom", 4)
        urls += [a["url"] for a in addresses if a["link"] == link]
        if len(urls) >= count:
            return urls[:count]
    raise AssertionError(f"link {link} was never chosen while idle")


@contextlib.asynccontextmanager
async def _held(urls: list[str]) -> AsyncIterator[None]:
    """Downloads of ``urls`` started and held open, their bodies unread, until the block ends."""
    async with session_from(client_address("north", "telecom", host=77)) as holder:
        responses: list[aiohttp.ClientResponse] = []
        try:
            for url in urls:
                response = await holder.get(url)
                responses.append(response)
                assert response.status == 200
                assert response.content_length == FILE_SIZE
            yield
        finally:
            for response in responses:
                response.close()


async def test_less_loaded_matching_link_is_chosen(two_telecom_links: Cluster) -> None:
    cluster = two_telecom_links
    # Uploaded from a mobile client so the upload's own bytes land on north's mobile
    # link and weigh on neither telecom link.
    upload = await upload_file(cluster, "alice", ["bob"], os.urandom(FILE_SIZE), carrier="mobile")
    assert upload.link == "mobile"
    urls = await _urls_on_link(cluster, upload.file_id, HELD_LINK, HELD_DOWNLOADS)

    async with _held(urls):
        # Held until every access unit has the other units' figures: a negotiation at a
        # unit that has not heard of the held downloads yet sees two idle links.
        links = await _wait_for_active(
            cluster, {HELD_LINK: HELD_DOWNLOADS, FREE_LINK: 0}, steady=_sharing_settle(cluster)
        )
        assert links[HELD_LINK]["load"] > links[FREE_LINK]["load"]

        addresses = await _negotiate_links(cluster, upload.file_id, "telecom", NEGOTIATIONS)
        # The downloads were held throughout: the choices were made under that load.
        await _wait_for_active(cluster, {HELD_LINK: HELD_DOWNLOADS, FREE_LINK: 0}, within=0.5)
        unicom = await _negotiate_links(cluster, upload.file_id, "unicom", 20)

    chosen = Counter(address["link"] for address in addresses)
    assert sum(chosen[name] for name in (HELD_LINK, FREE_LINK)) == NEGOTIATIONS, chosen
    assert {address["carrier"] for address in addresses} == {"telecom"}
    assert chosen[FREE_LINK] >= 0.9 * NEGOTIATIONS, chosen
    for address in addresses:
        host = (
            FREE_LINK_HOST
            if address["link"] == FREE_LINK
            else cluster.link_host("north", "telecom")
        )
        assert address["url"].startswith(f"http://{host}:{cluster.port}/blobs/")

    assert {(a["link"], a["carrier"]) for a in unicom} == {("unicom", "unicom")}
    assert all(a["url"].startswith(f"{cluster.link_url('north', 'unicom')}/blobs/") for a in unicom)

    # Released downloads stop counting, and well before they could have finished.
    links = await _wait_for_active(cluster, {HELD_LINK: 0, FREE_LINK: 0}, within=5)
    assert links[HELD_LINK]["bytes_sent"] < HELD_DOWNLOADS * FILE_SIZE
