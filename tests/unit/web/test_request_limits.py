"""Tests of geodrop.web.request_limits on mocked requests and a fake clock (no sockets)."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from geodrop.errors import TooManyRequests, Unauthorized
from geodrop.web.request_limits import RequestRateLimit, burst_for
from support.limits import small_limits

# Bursts of 2 per user, then one every 7.5 s; of 10 per address, then one every 1.5 s.
LIMITS = small_limits(requests_per_minute_per_user=8, requests_per_minute_per_ip=40)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _identify(request: web.Request) -> str:
    """Tokens here are ``valid:<user>`` (header or ``access_token``); anything else is invalid."""
    if "Authorization" in request.headers:
        scheme, _, token = request.headers["Authorization"].partition(" ")
    else:
        scheme, token = "Bearer", request.query["access_token"]
    if scheme != "Bearer" or not token.startswith("valid:"):
        raise Unauthorized("invalid token")
    return token.removeprefix("valid:")


def _request(path: str, remote: str, token: str | None = None) -> web.Request:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return make_mocked_request("GET", path, headers=headers).clone(remote=remote)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limit(clock: Clock) -> RequestRateLimit:
    return RequestRateLimit(LIMITS, (), _identify, clock=clock)


def _send(limit: RequestRateLimit, request: web.Request) -> int:
    """The status ``request`` gets (200 when let through, 429 when refused)."""
    try:
        limit.check(request)
    except TooManyRequests as exc:
        return exc.status if int(exc.headers["Retry-After"]) >= 1 else -1
    return 200


def test_burst_is_a_quarter_of_the_minute() -> None:
    assert burst_for(1200) == 300
    assert burst_for(3000) == 750
    assert burst_for(3) == 1


def test_an_address_gets_its_burst_then_waits(limit: RequestRateLimit, clock: Clock) -> None:
    statuses = [_send(limit, _request("/v1/locate", "192.0.2.1")) for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert _send(limit, _request("/v1/locate", "192.0.2.2")) == 200
    clock.now += 1.5
    assert _send(limit, _request("/v1/locate", "192.0.2.1")) == 200
    assert _send(limit, _request("/v1/locate", "192.0.2.1")) == 429


def test_retry_after_is_the_wait_rounded_up(limit: RequestRateLimit) -> None:
    for _ in range(10):
        _send(limit, _request("/v1/locate", "192.0.2.1"))
    request = _request("/v1/locate", "192.0.2.1")
    with pytest.raises(TooManyRequests) as refused:
        limit.check(request)
    assert refused.value.headers["Retry-After"] == "2"  # 1.5 s


def test_one_ipv6_slash_64_is_one_client(limit: RequestRateLimit) -> None:
    network = ipaddress.IPv6Network("2001:db8:1:2::/64")
    for n in range(10):
        assert _send(limit, _request("/v1/locate", str(network[n * 7919 + 1]))) == 200
    assert _send(limit, _request("/v1/locate", str(network[-2]))) == 429
    assert _send(limit, _request("/v1/locate", "2001:db8:1:3::1")) == 200


def test_a_user_is_limited_across_addresses(limit: RequestRateLimit) -> None:
    statuses = [
        _send(limit, _request("/v1/inbox", f"192.0.2.{n}", "valid:alice")) for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert _send(limit, _request("/v1/inbox", "192.0.2.1", "valid:bob")) == 200


def test_invalid_tokens_count_against_the_address_only(limit: RequestRateLimit) -> None:
    for n in range(5):
        assert _send(limit, _request("/v1/inbox", f"192.0.2.{n}", "forged:alice")) == 200
    assert _send(limit, _request("/v1/inbox", "192.0.2.9", "valid:alice")) == 200


@pytest.mark.parametrize("path", ["/healthz", "/v1/peer/heartbeat", "/v1/peer/download-address"])
def test_health_and_peer_paths_are_never_counted(limit: RequestRateLimit, path: str) -> None:
    for _ in range(50):
        assert _send(limit, _request(path, "192.0.2.1", "valid:alice")) == 200
    assert _send(limit, _request("/v1/inbox", "192.0.2.1", "valid:alice")) == 200


def test_a_token_in_the_query_counts_against_its_user(limit: RequestRateLimit) -> None:
    token = "?access_token=valid:alice"
    statuses = [_send(limit, _request(f"/v1/files/x{token}", f"192.0.2.{n}")) for n in range(3)]
    assert statuses == [200, 200, 429]
    assert _send(limit, _request("/v1/files/x?other=1", "192.0.2.1")) == 200
