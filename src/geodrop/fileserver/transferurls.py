"""Minting signed transfer URLs on one of this file server's links."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlencode

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
    chosen = on_link or choose_link(server.meters.loads(), client_carrier).name
    link = server.meters.config(chosen)
    expires = int(time.time()) + server.config.limits.signed_url_ttl_seconds
    grant = signing.Grant(action, file_id, link.name, user, expires)
    prefix = "tus" if action is signing.Action.UPLOAD else "blobs"
    query = urlencode(signing.query_for(server.url_key, grant))
    return SignedUrl(f"{link.url}/{prefix}/{file_id}?{query}", link.name, link.carrier, expires)
