"""The directory places clients by MaxMind data; it believes X-Forwarded-For from proxies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from support.cluster import Cluster
from support.geodata import write_asn_db, write_city_db
from support.http import session_from

GEO_TOML = """[geo]
city_db = "city.mmdb"
asn_db = "asn.mmdb"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
"""
RULES_TOML = """[geo.asn_carriers]
4134 = "telecom"
4837 = "unicom"
9808 = "mobile"

[[geo.region_rules]]
country = "CN"
region = "east"

[[geo.region_rules]]
country = "CN"
subdivision = "GD"
region = "south"

[[geo.region_rules]]
country = "CN"
subdivision = "BJ"
region = "north"

[[geo.overrides]]
"""


@pytest.fixture(scope="module")
def geo_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("geo")
    write_city_db(
        root / "city.mmdb",
        {
            "27.192.0.0/16": ("CN", "GD"),
            "49.64.0.0/16": ("CN", "BJ"),
            "111.0.0.0/16": ("CN", "ZJ"),
            "2001:db8:1::/48": ("CN", "GD"),
        },
    )
    write_asn_db(
        root / "asn.mmdb",
        {
            "27.192.0.0/16": 4837,
            "49.64.0.0/16": 4134,
            "111.0.0.0/16": 9808,
            "2001:db8:1::/48": 9808,
        },
    )
    cluster = Cluster(root)
    text = cluster.config_path.read_text()
    text = text.replace("[geo]\n", GEO_TOML, 1).replace("[[geo.overrides]]\n", RULES_TOML, 1)
    cluster.config_path.write_text(text)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


async def _locate(cluster: Cluster, source: str, forwarded: str | None) -> dict[str, Any]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with session_from(source) as session:
        answer = await session.get(cluster.directory_url + "/v1/locate", headers=headers)
        assert answer.status == 200, await answer.text()
        body: dict[str, Any] = await answer.json()
        return body


@pytest.mark.parametrize(
    ("forwarded", "client_ip", "region", "carrier", "match"),
    [
        ("27.192.0.1", "27.192.0.1", "south", "unicom", "geo"),
        ("49.64.0.1", "49.64.0.1", "north", "telecom", "geo"),
        ("111.0.0.1", "111.0.0.1", "east", "mobile", "geo"),
        ("2001:db8:1::7", "2001:db8:1::7", "south", "mobile", "geo"),
        ("198.51.100.7", "198.51.100.7", "north", "any", "default"),
        # Rightmost untrusted entry wins; a forged leftmost entry is ignored.
        ("49.64.0.1, 27.192.0.1", "27.192.0.1", "south", "unicom", "geo"),
        # An entry that is itself a trusted proxy is skipped.
        ("27.192.0.1, 127.0.0.1", "27.192.0.1", "south", "unicom", "geo"),
        # The override table stays above the databases.
        ("127.103.2.9", "127.103.2.9", "south", "unicom", "override"),
    ],
)
async def test_trusted_proxy_forwarding_places_by_maxmind(
    geo_cluster: Cluster, forwarded: str, client_ip: str, region: str, carrier: str, match: str
) -> None:
    body = await _locate(geo_cluster, "127.0.0.1", forwarded)
    assert (body["client_ip"], body["region"], body["carrier"], body["match"]) == (
        client_ip,
        region,
        carrier,
        match,
    )
    assert body["access_url"] == geo_cluster.access_url(region)


async def test_forwarded_for_from_untrusted_peer_is_ignored(geo_cluster: Cluster) -> None:
    body = await _locate(geo_cluster, "127.0.0.2", "27.192.0.1")
    assert body["client_ip"] == "127.0.0.2"
    assert body["match"] == "default"


async def test_garbage_forwarded_for_from_trusted_proxy_is_400(geo_cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            geo_cluster.directory_url + "/v1/locate", headers={"X-Forwarded-For": "not-an-ip"}
        )
        assert answer.status == 400
        assert (await answer.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("headers", "client_ip"),
    [
        # X-Real-IP is never consulted, not even from a trusted proxy.
        ([("X-Real-IP", "27.192.0.1")], "127.0.0.1"),
        # Several X-Forwarded-For headers are one list; the rightmost untrusted entry wins.
        ([("X-Forwarded-For", "49.64.0.1"), ("X-Forwarded-For", "27.192.0.1")], "27.192.0.1"),
        # An IPv4-mapped IPv6 entry is the IPv4 address it maps.
        ([("X-Forwarded-For", "::ffff:27.192.0.1")], "27.192.0.1"),
    ],
)
async def test_spoofing_attempts_from_a_trusted_proxy(
    geo_cluster: Cluster, headers: list[tuple[str, str]], client_ip: str
) -> None:
    async with session_from("127.0.0.1") as session:
        answer = await session.get(geo_cluster.directory_url + "/v1/locate", headers=headers)
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    assert body["client_ip"] == client_ip
