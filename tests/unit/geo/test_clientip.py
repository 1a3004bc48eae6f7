"""Client address extraction: what a forged or malformed X-Forwarded-For can and cannot do."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodrop.errors import BadRequest
from geodrop.geo.clientip import MAX_FORWARDED_FOR_CHARS, client_ip

TRUSTED = (
    ip_network("127.0.0.1/32"),
    ip_network("10.0.0.0/8"),
    ip_network("2001:db8:ffff::/48"),
)
PROXY = "127.0.0.1"
STRANGER = "198.51.100.7"
CLIENT = "203.0.113.9"

# (peer, X-Forwarded-For header values, expected client address)
CASES = [
    pytest.param(STRANGER, [], STRANGER, id="untrusted-peer-no-header"),
    pytest.param(STRANGER, [CLIENT], STRANGER, id="untrusted-peer-header-ignored"),
    pytest.param(STRANGER, ["10.0.0.5"], STRANGER, id="untrusted-peer-claims-trusted-hop"),
    pytest.param(STRANGER, ["not an address"], STRANGER, id="untrusted-peer-garbage-ignored"),
    pytest.param(STRANGER, ["1.1.1.1," * 1000], STRANGER, id="untrusted-peer-overlong-ignored"),
    pytest.param(PROXY, [], PROXY, id="trusted-peer-no-header"),
    pytest.param(PROXY, [""], PROXY, id="trusted-peer-empty-header"),
    pytest.param(PROXY, [CLIENT], CLIENT, id="trusted-peer-single-entry"),
    pytest.param(PROXY, [f"6.6.6.6, {CLIENT}"], CLIENT, id="forged-leftmost-entry"),
    pytest.param(
        PROXY, [f"6.6.6.6, 7.7.7.7, {CLIENT}, 10.0.0.2"], CLIENT, id="forged-entries-and-proxy"
    ),
    pytest.param(PROXY, [f"10.0.0.9, {CLIENT}"], CLIENT, id="forged-trusted-leftmost"),
    pytest.param(PROXY, [f"{CLIENT}, 10.0.0.2, 10.0.0.3"], CLIENT, id="chain-of-trusted-proxies"),
    pytest.param(PROXY, ["10.0.0.1, 10.0.0.2"], "10.0.0.1", id="all-trusted-leftmost"),
    pytest.param(PROXY, ["6.6.6.6", CLIENT], CLIENT, id="two-headers-rightmost-wins"),
    pytest.param(PROXY, [CLIENT, "10.0.0.2", "10.0.0.3"], CLIENT, id="headers-of-trusted-proxies"),
    pytest.param(PROXY, ["6.6.6.6", f"{CLIENT}, 10.0.0.2"], CLIENT, id="headers-mixed-with-lists"),
    pytest.param(PROXY, [f" {CLIENT} ,\t, "], CLIENT, id="whitespace-and-empty-elements"),
    pytest.param("::ffff:127.0.0.1", [CLIENT], CLIENT, id="mapped-peer-is-trusted"),
    pytest.param("::ffff:198.51.100.7", [CLIENT], STRANGER, id="mapped-untrusted-peer"),
    pytest.param(PROXY, [f"::ffff:{CLIENT}"], CLIENT, id="mapped-entry"),
    pytest.param(PROXY, [f"{CLIENT}, ::ffff:10.0.0.2"], CLIENT, id="mapped-trusted-hop"),
    pytest.param(PROXY, [f"{CLIENT}:51234"], CLIENT, id="ipv4-with-port"),
    pytest.param(PROXY, ["2001:db8::1"], "2001:db8::1", id="ipv6-entry"),
    pytest.param(PROXY, ["[2001:db8::1]:443"], "2001:db8::1", id="bracketed-ipv6-with-port"),
    pytest.param(PROXY, ["[2001:db8::1]"], "2001:db8::1", id="bracketed-ipv6"),
    pytest.param(
        "2001:db8:ffff::1",
        ["2001:db8::1, 2001:db8:ffff::2"],
        "2001:db8::1",
        id="ipv6-proxy-chain",
    ),
    pytest.param(
        "2001:db8:ffff::1", [f"2001:db8::1, {CLIENT}"], CLIENT, id="ipv6-proxy-ipv4-client"
    ),
    pytest.param("fe80::1%eth0", [CLIENT], "fe80::1", id="peer-zone-id-dropped"),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), CASES)
def test_client_ip(peer: str, headers: list[str], expected: str) -> None:
    assert client_ip(peer, headers, TRUSTED) == ip_address(expected)


def test_mapped_addresses_come_back_as_ipv4() -> None:
    assert isinstance(client_ip("::ffff:198.51.100.7", [], TRUSTED), IPv4Address)
    assert isinstance(client_ip(PROXY, [f"[::ffff:{CLIENT}]:80"], TRUSTED), IPv4Address)
    assert isinstance(client_ip(PROXY, ["2001:db8::1"], TRUSTED), IPv6Address)


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip(PROXY, [CLIENT], ()) == ip_address(PROXY)


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",
        "<script>",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:99999",
        "1.2.3.4:http",
        "1.2.3.4 5.6.7.8",
        "[1.2.3.4]:80",
        "[2001:db8::1",
        "[2001:db8::1]:",
        "[2001:db8::1]:70000",
        "2001:db8::1]:80",
        "fe80::1%eth0",
        "\u0661.2.3.4",
    ],
)
def test_garbage_entry_from_trusted_peer_is_bad_request(entry: str) -> None:
    with pytest.raises(BadRequest, match="not an IP address"):
        client_ip(PROXY, [f"{entry}, {CLIENT}"], TRUSTED)
    # The same header from an untrusted peer is not even read.
    assert client_ip(STRANGER, [entry], TRUSTED) == ip_address(STRANGER)


def test_garbage_in_a_later_header_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        client_ip(PROXY, [CLIENT, "garbage"], TRUSTED)


def test_overlong_header_is_bad_request() -> None:
    value = ", ".join([CLIENT] * (MAX_FORWARDED_FOR_CHARS // len(CLIENT)))
    assert len(value) > MAX_FORWARDED_FOR_CHARS
    with pytest.raises(BadRequest, match="characters long"):
        client_ip(PROXY, [value], TRUSTED)


def test_overlong_total_over_several_headers_is_bad_request() -> None:
    headers = [CLIENT] * (MAX_FORWARDED_FOR_CHARS // len(CLIENT))
    assert all(len(h) < MAX_FORWARDED_FOR_CHARS for h in headers)
    with pytest.raises(BadRequest, match="characters long"):
        client_ip(PROXY, headers, TRUSTED)


def test_header_at_the_limit_is_accepted() -> None:
    value = f"{CLIENT}," + " " * (MAX_FORWARDED_FOR_CHARS - len(CLIENT) - 1)
    assert len(value) == MAX_FORWARDED_FOR_CHARS
    assert client_ip(PROXY, [value], TRUSTED) == ip_address(CLIENT)


@pytest.mark.parametrize("peer", [None, "", "localhost", "127.0.0.1:80", "garbage"])
def test_missing_or_unparseable_peer_is_bad_request(peer: str | None) -> None:
    with pytest.raises(BadRequest, match="peer"):
        client_ip(peer, [], TRUSTED)


_public_ipv4 = st.ip_addresses(v=4).filter(lambda ip: not any(ip in network for network in TRUSTED))


@settings(database=None)
@given(
    forged=st.lists(st.ip_addresses().map(str), max_size=8),
    client=_public_ipv4,
    hops=st.lists(st.sampled_from(["10.0.0.2", "10.200.3.4", "2001:db8:ffff::9"]), max_size=4),
    split=st.booleans(),
)
def test_nothing_the_client_sends_changes_the_answer(
    forged: list[str], client: IPv4Address, hops: list[str], split: bool
) -> None:
    """Whatever a client puts in front, the trusted proxies' own entries decide."""
    entries = [*forged, str(client), *hops]
    headers = entries if split else [", ".join(entries)]
    assert client_ip(PROXY, headers, TRUSTED) == client
