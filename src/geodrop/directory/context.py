"""What every part of the directory shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from geodrop.config import ClusterConfig
from geodrop.directory.health import RegionHealth
from geodrop.directory.inbox import Inboxes
from geodrop.geo.locator import Locator
from geodrop.protocol.peerauth import ReplayGuard


@dataclass(slots=True)
class Directory:
    """The global server: locator, region health and inboxes."""

    config: ClusterConfig
    locator: Locator
    health: RegionHealth
    inboxes: Inboxes
    replay_guard: ReplayGuard = field(default_factory=ReplayGuard)
    # Each region's ordered fallback list, for choosing where a client goes.
    fallbacks: dict[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.fallbacks = {region.name: region.fallback for region in self.config.regions}


DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)
