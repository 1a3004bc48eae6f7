"""Who is asking: a user (bearer JWT) or a peer server (signed request)."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from aiohttp import web

from geodrop.config import KeysConfig
from geodrop.geo.clientip import client_ip
from geodrop.protocol import peerauth, usertokens

# The rate-limit middleware and the handler both ask who a request's user is: the token
# is verified once per request (an HS256 JWT check was 8-9% of an authenticated
# request's event-loop time, paid twice). Only a success is kept.
_VERIFIED_USER: Final = web.RequestKey("geodrop_verified_user", tuple[KeysConfig, str])

# Likewise the client's address: the rate limit and the handler both need it (parsing it
# twice was 4% of a locate request's time; bench/control.py).
_CLIENT_IP: Final = web.RequestKey(
    "geodrop_client_ip",
    tuple[tuple[IPv4Network | IPv6Network, ...], IPv4Address | IPv6Address],
)


def authenticated_user(request: web.Request, keys: KeysConfig) -> str:
    """The user id of a request's bearer token (header, or ``access_token`` query for redirects).

    Args:
        request: the request.
        keys: the cluster's keys: the current and previous user-token keys, audience, issuer.

    Raises:
        Unauthorized: no token, or an invalid one.
    """
    verified: tuple[KeysConfig, str] | None = request.get(_VERIFIED_USER)
    if verified is not None and verified[0] is keys:
        return verified[1]
    header = request.headers.get("Authorization")
    if header is None and "access_token" in request.query:
        user = usertokens.verify_token(keys, request.query["access_token"])
    else:
        user = usertokens.verify_token(keys, usertokens.bearer_token(header))
    request[_VERIFIED_USER] = (keys, user)
    return user


def verified_user(request: web.Request) -> str | None:
    """The user a request's token was already verified as, if it was (for the access log)."""
    verified: tuple[KeysConfig, str] | None = request.get(_VERIFIED_USER)
    return None if verified is None else verified[1]


async def authenticated_peer(
    request: web.Request, key: bytes, guard: peerauth.ReplayGuard
) -> tuple[str, bytes]:
    """The peer name of a signed server-to-server request, and its body.

    Raises:
        Unauthorized: the request is not signed by a peer, or is replayed.
    """
    body = await request.read()
    peer = peerauth.verify_request(
        key,
        method=request.method,
        path_qs=request.path_qs,
        headers=dict(request.headers),
        body=body,
        now=time.time(),
        guard=guard,
    )
    return peer, body


def request_client_ip(
    request: web.Request, trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
) -> IPv4Address | IPv6Address:
    """The client's address: the socket peer, or what a trusted proxy says it forwarded.

    Raises:
        BadRequest: a trusted proxy sent an unparseable X-Forwarded-For.
    """
    known: tuple[tuple[IPv4Network | IPv6Network, ...], IPv4Address | IPv6Address] | None = (
        request.get(_CLIENT_IP)
    )
    if known is not None and known[0] is trusted_proxies:
        return known[1]
    ip = client_ip(request.remote, request.headers.getall("X-Forwarded-For", []), trusted_proxies)
    request[_CLIENT_IP] = (trusted_proxies, ip)
    return ip
