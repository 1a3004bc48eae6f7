"""geodrop.testbed: the loopback testbed's addresses and the TOML describing them."""

from __future__ import annotations

import socket
import tomllib

from geodrop import testbed


def test_addresses_follow_the_testbed() -> None:
    assert testbed.access_host("east") == "127.2.0.1"
    assert testbed.link_host("south", "mobile") == "127.3.3.1"
    assert testbed.client_address("north", "unicom") == "127.101.2.5"
    assert testbed.client_address("north", "unicom", host=9) == "127.101.2.9"
    hosts = testbed.hosts()
    assert hosts[0] == "127.0.0.1"
    assert len(hosts) == len(set(hosts)) == 1 + 3 + 3 * 3


def test_the_override_table_places_each_client_range() -> None:
    overrides = tomllib.loads(testbed.overrides_toml())["geo"]["overrides"]
    placed = {(o["region"], o["carrier"]): o["network"] for o in overrides}
    assert len(placed) == len(overrides) == 9
    assert placed[("east", "telecom")] == "127.102.1.0/24"


def test_a_region_entry_has_its_fallbacks_its_lines_and_a_link_per_carrier() -> None:
    text = testbed.region_toml("south", "https", 4242, 'storage = { kind = "local" }\n')
    (region,) = tomllib.loads(text)["regions"]
    assert region["access_url"] == "https://127.3.0.1:4242"
    assert region["listen"] == "127.3.0.1:4242"
    assert region["fallback"] == ["east", "north"]
    assert region["storage"] == {"kind": "local"}
    assert [(link["carrier"], link["listen"]) for link in region["links"]] == [
        ("telecom", "127.3.1.1:4242"),
        ("unicom", "127.3.2.1:4242"),
        ("mobile", "127.3.3.1:4242"),
    ]


def test_a_free_port_is_free_on_every_address() -> None:
    port = testbed.free_port(testbed.hosts())
    for host in testbed.hosts():
        with socket.socket() as probe:
            probe.bind((host, port))
