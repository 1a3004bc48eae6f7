"""What every part of one region's file server shares."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field

from aiohttp import web

from geodrop.config import ClusterConfig, RegionConfig
from geodrop.fileserver.links import LinkMeters
from geodrop.geo.locator import Locator
from geodrop.metadata.base import TransferStore
from geodrop.protocol.peerauth import ReplayGuard
from geodrop.storage.base import BlobStore
from geodrop.web.peerclient import PeerClient


@dataclass(slots=True)
class FileServer:
    """One region's access unit and storage unit, as built from the cluster config."""

    config: ClusterConfig
    region: RegionConfig
    store: BlobStore
    transfers: TransferStore
    meters: LinkMeters
    locator: Locator
    peers: PeerClient
    replay_guard: ReplayGuard = field(default_factory=ReplayGuard)
    # Set when an upload completes, so inbox announcements go out at once.
    announce_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # This access unit's name among the region's units (they share link figures by it).
    unit: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def url_key(self) -> bytes:
        return self.config.keys.url_signing.encode()

    @property
    def peer_key(self) -> bytes:
        return self.config.keys.peer.encode()


FILE_SERVER: web.AppKey[FileServer] = web.AppKey("file_server", FileServer)
