"""The operator status: every region's health, fallback and links, as JSON and as a page.

``GET /v1/status`` answers only operators (users named in ``directory.operators``). The
page at ``GET /status`` holds no data itself: its script signs in with an operator's
token and reads ``/v1/status`` once a second.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

from aiohttp import web

from geodrop.config import ClusterConfig, LinkConfig, RegionConfig
from geodrop.directory.context import DIRECTORY, Directory
from geodrop.directory.health import RegionHealth
from geodrop.errors import Forbidden
from geodrop.protocol.regionchoice import choose_region
from geodrop.web.auth import authenticated_user
from geodrop.web.static import StaticFiles

STATIC_FOLDER: Final = "static/status"
PAGE: Final = "index.html"
ASSET_ROUTE: Final = r"/status/{name:[A-Za-z0-9_.-]+}"
# Scripts and styles from the page's own files only (no inline code); data from the
# directory only.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# What a heartbeat's link figures hold (background.heartbeats sends LinkReport fields),
# and the value shown when a figure is missing or malformed.
_COUNTS: Final = ("active_transfers", "bytes_sent", "bytes_received")
_RATES: Final = ("rate_bytes_per_second", "load")


def operator(directory: Directory, request: web.Request) -> str:
    """The operator a request comes from.

    Raises:
        Unauthorized: no valid user token.
        Forbidden: the user is not in ``directory.operators``.
    """
    user = authenticated_user(request, directory.config.keys)
    if user not in directory.config.directory.operators:
        raise Forbidden("only the cluster's operators may read its status")
    return user


def _figure(reported: dict[str, Any], name: str) -> float:
    """A non-negative figure of a link's report (0 when missing or malformed)."""
    value = reported.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0


def _link_status(link: LinkConfig, reported: dict[str, Any] | None) -> dict[str, Any]:
    """A configured link with its last reported figures (zeros before any report)."""
    status: dict[str, Any] = {
        "name": link.name,
        "carrier": link.carrier,
        "capacity_mbps": link.capacity_mbps,
        "url": link.url,
        "reported": reported is not None,
    }
    figures = reported or {}
    status.update({name: int(_figure(figures, name)) for name in _COUNTS})
    status.update({name: _figure(figures, name) for name in _RATES})
    return status


def _region_status(
    region: RegionConfig,
    entry: dict[str, Any],
    alive: dict[str, bool],
    fallbacks: dict[str, tuple[str, ...]],
    now: float,
) -> dict[str, Any]:
    reported = {
        str(link.get("name")): link for link in entry.get("links", []) if isinstance(link, dict)
    }
    heartbeats = int(entry.get("heartbeats", 0))
    seconds = float(entry.get("seconds_since_heartbeat", 0.0))
    # The same choice locate makes for this region's clients (handlers._located).
    choice = choose_region(region.name, fallbacks, lambda name: alive.get(name, False))
    return {
        "region": region.name,
        "alive": alive[region.name],
        "access_url": region.access_url,
        "heartbeats": heartbeats,
        "seconds_since_heartbeat": round(seconds, 3),
        "last_heartbeat_at": round(now - seconds, 3) if heartbeats else None,
        "fallback": list(region.fallback),
        "clients_sent_to": choice.region if choice else None,
        "links": [_link_status(link, reported.get(link.name)) for link in region.links],
    }


def cluster_status(config: ClusterConfig, health: RegionHealth, now: float) -> dict[str, Any]:
    """Every region as ``health`` sees it at wall-clock ``now``."""
    entries = {str(entry["region"]): entry for entry in health.snapshot()}
    alive = {name: health.is_alive(name) for name in config.region_names}
    fallbacks = {region.name: region.fallback for region in config.regions}
    return {
        "generated_at": round(now, 3),
        "heartbeat_interval_seconds": config.heartbeat_interval_seconds,
        "heartbeat_timeout_seconds": config.directory.heartbeat_timeout_seconds,
        "regions": [
            _region_status(region, entries.get(region.name, {}), alive, fallbacks, now)
            for region in config.regions
        ],
    }


async def status(request: web.Request) -> web.Response:
    """``GET /v1/status``: every region's health, heartbeat, fallback and links (operators)."""
    directory = request.app[DIRECTORY]
    operator(directory, request)
    return web.json_response(cluster_status(directory.config, directory.health, time.time()))


def add_page_routes(app: web.Application) -> None:
    """Serve the page: ``GET /status``, and its script and styles at ``GET /status/{name}``."""
    files = StaticFiles("geodrop.directory", STATIC_FOLDER, PAGE_HEADERS)
    app.router.add_get("/status", files.file_handler(PAGE))
    app.router.add_get(ASSET_ROUTE, files.folder_handler("name"))
