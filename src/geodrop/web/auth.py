"""Who is asking: a user (bearer JWT) or a peer server (signed request)."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp import web

from geodrop.geo.clientip import client_ip
from geodrop.protocol import peerauth, usertokens


def authenticated_user(request: web.Request, key: str) -> str:
    """The user id of a request's bearer token (header, or ``access_token`` query for redirects).

    Raises:
        Unauthorized: no token, or an invalid one.
    """
    header = request.headers.get("Authorization")
    if header is None and "access_token" in request.query:
        return usertokens.verify_token(key, request.query["access_token"])
    return usertokens.verify_token(key, usertokens.bearer_token(header))


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
    return client_ip(request.remote, request.headers.getall("X-Forwarded-For", []), trusted_proxies)
