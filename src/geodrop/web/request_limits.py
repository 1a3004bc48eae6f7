"""Request rate limits per client IP and per user, for both services (429 + Retry-After).

Every request counts once against its client's address; a request with a valid
user token also counts against that user, so one user cannot escape the limit by
spreading over many addresses, nor one address by naming many users. Each byte
transfer (a PATCH, a blob GET) is one request like any other: its size is the
business of the quotas and the file-size limit, not of the request rate.

Not counted: ``/healthz`` and ``/metrics`` (monitoring) and the server-to-server ``/v1/peer/*``
channel, which is authenticated by HMAC in its handlers and must never be slowed
by what clients do (a throttled heartbeat would mark a healthy region down).

The limits are per process: the directory and each region's file server keep
their own buckets, so one client may make up to the limit at each of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import lru_cache
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from aiohttp import web

from geodrop.config import LimitsConfig, Network
from geodrop.errors import TooManyRequests, Unauthorized
from geodrop.protocol.ratelimit import RateLimiter
from geodrop.web.auth import request_client_ip, request_client_text

logger = logging.getLogger(__name__)

# A quarter of a minute's allowance may come at once (1200/min per user: bursts of
# 300; 3000/min per IP: bursts of 750), then requests are held to the rate.
BURST_FRACTION: Final = 4
EXEMPT_PATHS: Final = frozenset({"/healthz", "/metrics"})
EXEMPT_PREFIX: Final = "/v1/peer/"
# An IPv6 end user is usually given a whole /64; keyed by address, they could take a
# fresh bucket for every request.
IPV6_PREFIX: Final = 64


def burst_for(rate_per_minute: int) -> int:
    """How many requests may come at once for a limit of ``rate_per_minute``."""
    return max(1, rate_per_minute // BURST_FRACTION)


class RequestRateLimit:
    """Refuses (429) a client IP or user over its request rate.

    The front door checks every request with it, inside its error mapping, which turns
    the refusal into a JSON error.

    Args:
        limits: ``requests_per_minute_per_ip`` and ``requests_per_minute_per_user``.
        trusted_proxies: proxies whose ``X-Forwarded-For`` names the client.
        identify_user: the user id of a request's credentials; raises
            :class:`~geodrop.errors.Unauthorized` when they are invalid (such a request
            counts against its address only, and its handler refuses it).
        clock: monotonic seconds (tests inject their own).
    """

    __slots__ = ("_clock", "_identify_user", "_per_ip", "_per_user", "_trusted_proxies")

    def __init__(
        self,
        limits: LimitsConfig,
        trusted_proxies: tuple[Network, ...],
        identify_user: Callable[[web.Request], str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_ip = RateLimiter(
            limits.requests_per_minute_per_ip, burst_for(limits.requests_per_minute_per_ip)
        )
        self._per_user = RateLimiter(
            limits.requests_per_minute_per_user, burst_for(limits.requests_per_minute_per_user)
        )
        self._trusted_proxies = trusted_proxies
        self._identify_user = identify_user
        self._clock = clock

    def check(self, request: web.Request) -> None:
        """Count ``request`` against its address and its user.

        Raises:
            TooManyRequests: either is over its rate (nothing was counted for the user
                when the address was refused).
        """
        path = request.path
        if path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIX):
            return
        now = self._clock()
        wait = self._per_ip.check(_ip_key(request, self._trusted_proxies), now)
        if wait:
            raise _refusal("this address", wait)
        user = _user_of(request, self._identify_user)
        if user is not None:
            wait = self._per_user.check(user, now)
            if wait:
                raise _refusal("this user", wait)


def _ip_key(request: web.Request, trusted_proxies: tuple[Network, ...]) -> str:
    # The address as parsed once per request (web.auth), not parsed again from its text.
    ip = request_client_ip(request, trusted_proxies)
    if isinstance(ip, IPv6Address):
        return _ipv6_key(ip)
    return request_client_text(request, trusted_proxies)


# A client's requests come from the same few addresses (as in geo.clientip).
@lru_cache(maxsize=65536)
def _ipv6_key(ip: IPv6Address) -> str:
    return str(IPv6Network((ip, IPV6_PREFIX), strict=False))


def _user_of(request: web.Request, identify_user: Callable[[web.Request], str]) -> str | None:
    """The verified user of a request, or None when it carries no valid token."""
    # The query is parsed only if there is one (most requests carry none).
    if "Authorization" not in request.headers and (
        not request.query_string or "access_token" not in request.query
    ):
        return None
    try:
        return identify_user(request)
    except Unauthorized:
        return None


def _refusal(who: str, wait: float) -> TooManyRequests:
    logger.debug("request rate limit: %s must wait %.1fs", who, wait)
    return TooManyRequests(
        f"too many requests from {who}; retry after the Retry-After delay",
        retry_after=math.ceil(wait),
    )
