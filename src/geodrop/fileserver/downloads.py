"""The download side of the access unit: local answers and address-only proxying.

For a file this region owns, the access unit signs a URL on one of its own
links. For a file another region owns, it asks that region's access unit for a
download address (an authenticated server-to-server call) and relays it: the
bytes never pass through this server (CN103841159A, claim 3).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from geodrop.errors import BadRequest, Conflict, Gone, NotFound
from geodrop.fileserver import retention
from geodrop.fileserver.context import FileServer
from geodrop.fileserver.routing import ask_owner, owner_of
from geodrop.fileserver.transferurls import signed_url
from geodrop.metadata.base import Transfer, TransferState
from geodrop.protocol import usertokens
from geodrop.protocol.signing import Action

logger = logging.getLogger(__name__)

PEER_DOWNLOAD_ADDRESS_PATH = "/v1/peer/download-address"


@dataclass(frozen=True, slots=True)
class DownloadAddress:
    """Where and how a client fetches one file."""

    file_id: str
    url: str
    region: str
    link: str
    carrier: str
    expires_at: int
    name: str
    size: int
    sha256: str
    content_type: str

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field (a tenth of a local
        # download negotiation's own time), and every field here is a str or an int.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Any) -> DownloadAddress:
        """Parse a peer's answer.

        Raises:
            BadRequest: the answer is not a download address.
        """
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            raise BadRequest("peer answered with a malformed download address") from None


async def visible_transfer(server: FileServer, file_id: str, user: str) -> Transfer:
    """A local, complete file that ``user`` may see.

    Raises:
        NotFound: no such file, or ``user`` is neither its sender nor a receiver
            (the same answer, so nobody learns that a file they may not see exists).
        Gone: the file expired (deleted, or about to be), or had its maximum of downloads.
        Conflict: the upload is not complete yet.
    """
    transfer = await server.transfers.get(file_id)
    if transfer is None:
        raise await retention.refusal_for_missing(server, file_id, user, "no such file")
    if not transfer.may_access(user):
        raise NotFound("no such file")
    if transfer.expires_at < time.time():
        raise Gone("this file has expired")
    if transfer.state is not TransferState.COMPLETE:
        raise Conflict("this file is still being uploaded")
    retention.check_downloads_left(server, transfer)
    return transfer


async def local_address(
    server: FileServer, file_id: str, user: str, carrier: str
) -> DownloadAddress:
    """A signed URL on one of this server's own links, chosen for ``carrier`` by load."""
    transfer = await visible_transfer(server, file_id, user)
    url = signed_url(server, Action.DOWNLOAD, file_id, user, carrier)
    return DownloadAddress(
        file_id=file_id,
        url=url.url,
        region=server.region.name,
        link=url.link,
        carrier=url.carrier,
        expires_at=url.expires_at,
        name=transfer.filename,
        size=transfer.size,
        sha256=transfer.sha256 or "",
        content_type=transfer.content_type,
    )


async def download_address(
    server: FileServer, file_id_text: str, user: str, carrier: str
) -> DownloadAddress:
    """Negotiate a download: locally, or by asking the owning region.

    Raises:
        NotFound: malformed id, unknown region, or no file this user may see.
        PeerUnavailable: the owning region cannot be reached (503).
    """
    file_id, owner = owner_of(server, file_id_text)
    if owner is None:
        return await local_address(server, str(file_id), user, carrier)
    answer = await ask_owner(
        server,
        owner,
        PEER_DOWNLOAD_ADDRESS_PATH,
        {"file_id": str(file_id), "user": user, "carrier": carrier},
    )
    address = DownloadAddress.from_json(answer)
    logger.info("download %s relayed from %s link %s", file_id, owner.name, address.link)
    return address


def parse_peer_question(body: Any) -> tuple[str, str]:
    """``(file_id, user)`` of a peer's question about a file on a user's behalf.

    Raises:
        BadRequest: a field is missing or malformed.
    """
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    file_id, user = body.get("file_id"), body.get("user")
    if not isinstance(file_id, str):
        raise BadRequest("file_id: required")
    if not isinstance(user, str) or not usertokens.USER_ID.match(user):
        raise BadRequest("user: not a valid user id")
    return file_id, user


def parse_peer_request(body: Any, carriers: tuple[str, ...]) -> tuple[str, str, str]:
    """``(file_id, user, carrier)`` of a peer's download-address request.

    Raises:
        BadRequest: a field is missing or malformed.
    """
    file_id, user = parse_peer_question(body)
    carrier = body.get("carrier")
    if carrier not in carriers:
        raise BadRequest("carrier: unknown carrier")
    return file_id, user, carrier
