"""Which region owns a file, and asking that region's access unit about it."""

from __future__ import annotations

from typing import Any

from geodrop.config import RegionConfig
from geodrop.errors import NotFound
from geodrop.fileserver.context import FileServer
from geodrop.protocol.fileid import FileId, parse_file_id


def owner_of(server: FileServer, file_id_text: str) -> tuple[FileId, RegionConfig | None]:
    """The parsed id and its owning region, or None for the owner when it is this one.

    Raises:
        NotFound: a malformed id, or one naming no region of this cluster.
    """
    file_id = parse_file_id(file_id_text)
    if file_id.region == server.region.name:
        return file_id, None
    try:
        return file_id, server.config.region(file_id.region)
    except KeyError:
        raise NotFound("no such file") from None


async def ask_owner(server: FileServer, owner: RegionConfig, path: str, payload: Any) -> Any:
    """An authenticated server-to-server call to ``owner``'s access unit.

    Raises:
        PeerUnavailable: the owner cannot be reached (503).
        GeodropError: the owner's refusal, with its status (404 stays 404).
    """
    return await server.peers.call("POST", owner.access_url + path, payload)
