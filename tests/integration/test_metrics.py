"""Prometheus /metrics of real directory and file-server processes.

A file of known size goes up through north's telecom link and down through north's
unicom link: exactly those links' byte counters move, by exactly the file's size, and
exactly as much as the link meters (the file server's /v1/status) counted; the storage
used moves by the file's size too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

import pytest

from geodrop.web.request_limits import burst_for
from support.cluster import client_address, user_token
from support.http import session_from
from support.observability import (
    OperatedCluster,
    delta,
    running_operated_cluster,
    scrape,
    scrape_until,
    series,
)
from support.transfer_checks import negotiate_download, unique_user, upload_file

# Not a multiple of any chunk size the client or the server uses.
SIZE: Final = 300_007
LINKS: Final = ("telecom", "unicom", "mobile")


# A low request rate per client address, so the test of /metrics' exemption is quick.
REQUESTS_PER_MINUTE_PER_IP: Final = 80
BURST_PER_IP: Final = burst_for(REQUESTS_PER_MINUTE_PER_IP)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatedCluster]:
    limits = {"requests_per_minute_per_ip": REQUESTS_PER_MINUTE_PER_IP}
    with running_operated_cluster(tmp_path_factory.mktemp("metrics"), limits) as running:
        yield running


def _transfers(outcome: str, link: str, direction: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return series(
        f"geodrop_transfers_{outcome}_total", link=link, carrier=link, direction=direction
    )


def _link_bytes(way: str, link: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return series(f"geodrop_link_bytes_{way}_total", link=link, carrier=link)


async def test_byte_and_transfer_counters_move_on_the_link_that_carried_the_file(
    cluster: OperatedCluster,
) -> None:
    metrics_url = cluster.access_url("north") + "/metrics"
    before = await scrape(metrics_url)
    data = os.urandom(SIZE)
    receiver = unique_user("metrics-bob")

    upload = await upload_file(cluster, "metrics-alice", [receiver], data, carrier="telecom")
    assert upload.link == "telecom"
    negotiated = await negotiate_download(cluster, receiver, upload.file_id, carrier="unicom")
    assert negotiated.status == 200
    offer = await negotiated.json()
    assert offer["link"] == "unicom"
    async with session_from(client_address("north", "unicom")) as session:
        answer = await session.get(offer["url"])
        assert answer.status == 200
        assert await answer.read() == data

    download_done = _transfers("completed", "unicom", "download")
    after = await scrape_until(
        metrics_url, lambda samples: delta(samples, before, download_done) >= 1
    )

    for link in LINKS:
        uploaded = SIZE if link == "telecom" else 0
        downloaded = SIZE if link == "unicom" else 0
        assert delta(after, before, _link_bytes("received", link)) == uploaded, link
        assert delta(after, before, _link_bytes("sent", link)) == downloaded, link
        for direction, carrier_link in (("upload", "telecom"), ("download", "unicom")):
            moved = 1 if link == carrier_link else 0
            assert delta(after, before, _transfers("started", link, direction)) == moved
            assert delta(after, before, _transfers("completed", link, direction)) == moved
            assert delta(after, before, _transfers("failed", link, direction)) == 0
        active = series("geodrop_link_active_transfers", link=link, carrier=link)
        assert after[active] == 0

    for direction in ("upload", "download"):
        negotiated_ok = series(
            "geodrop_negotiation_seconds_count", direction=direction, outcome="ok"
        )
        assert delta(after, before, negotiated_ok) == 1, direction
        latency = series("geodrop_negotiation_seconds_sum", direction=direction, outcome="ok")
        assert delta(after, before, latency) > 0
    assert after[series("geodrop_storage_free_bytes")] > 0
    # The region now stores the file: nothing else was uploaded meanwhile.
    assert delta(after, before, series("geodrop_storage_used_bytes")) == SIZE

    # The counters are the link meters' own figures: what heartbeats and /v1/status report.
    async with session_from(client_address("north", "telecom")) as session:
        answer = await session.get(cluster.access_url("north") + "/v1/status")
        reports = {link["name"]: link for link in (await answer.json())["links"]}
    for link in LINKS:
        assert after[_link_bytes("sent", link)] == reports[link]["bytes_sent"]
        assert after[_link_bytes("received", link)] == reports[link]["bytes_received"]


async def test_a_refused_negotiation_is_timed_as_refused(cluster: OperatedCluster) -> None:
    metrics_url = cluster.access_url("south") + "/metrics"
    before = await scrape(metrics_url)
    async with session_from(client_address("south", "mobile"), user_token("nobody")) as session:
        answer = await session.post(
            cluster.access_url("south") + "/v1/downloads", json={"file_id": "south." + "a" * 26}
        )
        assert answer.status == 404
    after = await scrape(metrics_url)
    refused = series("geodrop_negotiation_seconds_count", direction="download", outcome="refused")
    assert delta(after, before, refused) == 1
    ok = series("geodrop_negotiation_seconds_count", direction="download", outcome="ok")
    assert delta(after, before, ok) == 0


async def test_directory_counts_locates_heartbeats_and_region_health(
    cluster: OperatedCluster,
) -> None:
    metrics_url = cluster.directory_url + "/metrics"
    before = await scrape(metrics_url)
    async with session_from(client_address("east", "mobile")) as session:
        answer = await session.get(cluster.directory_url + "/v1/locate")
        assert answer.status == 200
        assert (await answer.json())["match"] == "override"
    # Heartbeats come every 0.3 s: within a few seconds every region has sent more.
    after = await scrape_until(
        metrics_url,
        lambda samples: all(
            delta(samples, before, series("geodrop_heartbeats_received_total", region=r)) >= 2
            for r in ("north", "east", "south")
        ),
    )
    located = series("geodrop_locate_seconds_count", match="override")
    assert delta(after, before, located) == 1
    assert delta(after, before, series("geodrop_locate_seconds_count", match="default")) == 0
    for region in ("north", "east", "south"):
        assert after[series("geodrop_region_up", region=region)] == 1
        beats = series("geodrop_heartbeats_received_total", region=region)
        assert delta(after, before, beats) >= 2, region
        age = after[series("geodrop_region_heartbeat_age_seconds", region=region)]
        assert 0 <= age < cluster.heartbeat_timeout


async def test_metrics_need_no_token_and_are_not_rate_limited(cluster: OperatedCluster) -> None:
    async with session_from(client_address("east", "unicom")) as session:
        for _ in range(2 * BURST_PER_IP):
            answer = await session.get(cluster.access_url("east") + "/metrics")
            assert answer.status == 200, await answer.text()
            await answer.read()
        # The same address is held to its rate anywhere else.
        statuses = []
        for _ in range(2 * BURST_PER_IP):
            answer = await session.get(cluster.access_url("east") + "/openapi.json")
            statuses.append(answer.status)
            await answer.read()
    assert statuses[0] == 200
    assert 429 in statuses, statuses
