"""Minting signed transfer URLs on one of this file server's links."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from geodrop.errors import Forbidden
from geodrop.fileserver.context import FileServer
from geodrop.protocol import signing
from geodrop.protocol.linkchoice import choose_link


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    link: str
    carrier: str
    expires_at: int


def signed_url(
    server: FileServer,
    action: signing.Action,
    file_id: str,
    user: str,
    client_carrier: str,
    *,
    on_link: str | None = None,
) -> SignedUrl:
    """A signed URL for ``action`` on ``file_id``.

    The URL is on ``on_link`` if given, else on the link best for ``client_carrier``.
    """
    link = server.meters.config(link_for(server, client_carrier, on_link))
    expires = int(time.time()) + server.config.limits.signed_url_ttl_seconds
    grant = signing.Grant(action, file_id, link.name, user, expires)
    prefix = "tus" if action is signing.Action.UPLOAD else "blobs"
    query = urlencode(signing.query_for(server.url_key, grant))
    return SignedUrl(f"{link.url}/{prefix}/{file_id}?{query}", link.name, link.carrier, expires)


def link_for(server: FileServer, client_carrier: str, on_link: str | None) -> str:
    """``on_link`` if given, else the name of the link best for ``client_carrier`` now."""
    return on_link or choose_link(server.meters.loads(), client_carrier).name


def arrival_link(server: FileServer, request: web.Request) -> str | None:
    """The link a request arrived on (None: the access address)."""
    transport = request.transport
    return server.meters.link_at(transport.get_extra_info("sockname") if transport else None)


def verified_grant(
    server: FileServer, request: web.Request, action: signing.Action, file_id: str
) -> signing.Grant:
    """The grant of a request's signed URL, checked against the link it arrived on.

    Raises:
        Forbidden: the request is not on a link, or not signed for this action,
            file, link and user.
        Gone: the signature expired.
    """
    link = arrival_link(server, request)
    if link is None:
        raise Forbidden("transfers use the file server's link addresses")
    return signing.verify(
        server.url_key,
        action=action,
        file_id=file_id,
        link=link,
        user=request.query.get("u"),
        expires_text=request.query.get("exp"),
        signature=request.query.get("sig"),
        now=time.time(),
    )
