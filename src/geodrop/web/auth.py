"""Who is asking: a user (bearer JWT) or a peer server (signed request)."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from aiohttp import web

from geodrop.config import KeysConfig
from geodrop.geo.clientip import address_text, client_ip, peer_address
from geodrop.protocol import peerauth, usertokens

# The rate limit and the handler both ask who a request's user is: the token
# is verified once per request (an HS256 JWT check was 8-9% of an authenticated
# request's event-loop time, paid twice). Only a success is kept.
_VERIFIED_USER: Final = web.RequestKey("geodrop_verified_user", tuple[KeysConfig, str])

# Likewise the client's address and its text: the rate limit, the handler and the access
# log all need them (parsing the address twice was 4% of a locate request's time).
_CLIENT: Final = web.RequestKey(
    "geodrop_client",
    tuple[tuple[IPv4Network | IPv6Network, ...], IPv4Address | IPv6Address, str],
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
        BadRequest: no peer address, or a trusted proxy sent an unparseable X-Forwarded-For.
    """
    return _client(request, trusted_proxies)[1]


def request_client_text(
    request: web.Request, trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
) -> str:
    """:func:`request_client_ip` as text (``str`` of the address).

    Raises:
        BadRequest: as :func:`request_client_ip`.
    """
    return _client(request, trusted_proxies)[2]


def _client(
    request: web.Request, trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
) -> tuple[tuple[IPv4Network | IPv6Network, ...], IPv4Address | IPv6Address, str]:
    known: tuple[tuple[IPv4Network | IPv6Network, ...], IPv4Address | IPv6Address, str] | None = (
        request.get(_CLIENT)
    )
    if known is not None and known[0] is trusted_proxies:
        return known
    if trusted_proxies or request.remote is None:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        ip = client_ip(request.remote, forwarded, trusted_proxies)
        text = address_text(ip)
    else:
        # Without trusted proxies no header counts: the socket peer is the client.
        ip, text = peer_address(request.remote)
    known = (trusted_proxies, ip, text)
    request[_CLIENT] = known
    return known
