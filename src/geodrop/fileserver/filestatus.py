"""Where a sent file stands: uploading, waiting, received by whom."""

from __future__ import annotations

import time
from typing import Any, Final

from geodrop.errors import Gone, NotFound
from geodrop.fileserver import retention
from geodrop.fileserver.context import FileServer
from geodrop.fileserver.routing import ask_owner, owner_of
from geodrop.fileserver.uploads import current_offset

PEER_STATUS_PATH: Final = "/v1/peer/status"


async def local_status(server: FileServer, file_id: str, user: str) -> dict[str, Any]:
    """The status of a file this region owns, as ``user`` may see it.

    The sender sees every receiver; a receiver sees only their own delivery.

    Raises:
        NotFound: no such file, or ``user`` is neither its sender nor a receiver.
        Gone: it expired (its sender and receivers are told so until its tombstone goes).
    """
    transfer = await server.transfers.get(file_id)
    if transfer is None:
        raise await retention.refusal_for_missing(server, file_id, user, "no such file")
    if not transfer.may_access(user):
        raise NotFound("no such file")
    if transfer.expires_at < time.time():
        raise Gone("this file has expired")
    deliveries = [
        {"user": d.receiver, "announced": d.announced, "received_at": d.received_at}
        for d in await server.transfers.deliveries(file_id)
        if user == transfer.sender or d.receiver == user
    ]
    return {
        "file_id": transfer.id,
        "region": server.region.name,
        "name": transfer.filename,
        "size": transfer.size,
        "sha256": transfer.sha256,
        "sender": transfer.sender,
        "state": transfer.state.value,
        "offset": await current_offset(server, transfer),
        "created_at": transfer.created_at,
        "completed_at": transfer.completed_at,
        "expires_at": transfer.expires_at,
        "receivers": deliveries,
    }


async def file_status(server: FileServer, file_id_text: str, user: str) -> dict[str, Any]:
    """A file's status, from this region or from the region that owns it.

    Raises:
        NotFound: malformed id, unknown region, or no file this user may see.
        PeerUnavailable: the owning region cannot be reached (503).
    """
    file_id, owner = owner_of(server, file_id_text)
    if owner is None:
        return await local_status(server, str(file_id), user)
    answer: dict[str, Any] = await ask_owner(
        server, owner, PEER_STATUS_PATH, {"file_id": str(file_id), "user": user}
    )
    return answer
