"""HTTP endpoints of the directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web

from geodrop.directory.context import DIRECTORY, Directory
from geodrop.directory.metrics import DIRECTORY_METRICS
from geodrop.errors import BadRequest, Forbidden, Unavailable
from geodrop.geo.locator import Match
from geodrop.protocol.fileid import parse_file_id
from geodrop.protocol.regionchoice import choose_region
from geodrop.web.auth import authenticated_peer, request_client_ip, request_client_text
from geodrop.web.jsonbody import parse_json_object
from geodrop.web.metrics import timed


@dataclass(frozen=True, slots=True)
class Located:
    """Where a client goes (the body of ``GET /v1/locate``)."""

    client_ip: str
    region: str
    carrier: str
    match: Match
    access_url: str
    home_region: str

    def body(self) -> bytes:
        return _encoded(self)


# Clients ask again and again from the same addresses, mostly with the same answer:
# encoding each answer once took a tenth of a locate request's time (bench/control.py).
@lru_cache(maxsize=4096)
def _encoded(located: Located) -> bytes:
    fields = {
        "client_ip": located.client_ip,
        "region": located.region,
        "carrier": located.carrier,
        "match": located.match.value,
        "access_url": located.access_url,
        "home_region": located.home_region,
    }
    return json.dumps(fields).encode()


def _located(directory: Directory, request: web.Request) -> Located:
    with timed(request.app[DIRECTORY_METRICS].locate_seconds) as outcome:
        try:
            located = _locate(directory, request)
        except Unavailable:
            outcome.label = "unavailable"
            raise
        outcome.label = located.match.value
    return located


def _locate(directory: Directory, request: web.Request) -> Located:
    config = directory.config
    ip = request_client_ip(request, config.geo.trusted_proxies)
    ip_text = request_client_text(request, config.geo.trusted_proxies)
    location = directory.locator.locate(ip)
    choice = choose_region(location.region, directory.fallbacks, directory.health.is_alive)
    if choice is None:
        raise Unavailable(
            f"region {location.region} and its fallbacks are down",
            retry_after=max(1, int(config.heartbeat_interval_seconds)),
        )
    return Located(
        client_ip=ip_text,
        region=choice.region,
        carrier=location.carrier,
        match=Match.FALLBACK if choice.fell_back else location.match,
        access_url=config.region(choice.region).access_url,
        home_region=location.region,
    )


async def locate(request: web.Request) -> web.Response:
    """``GET /v1/locate``: the client's region and carrier, and where to negotiate."""
    located = _located(request.app[DIRECTORY], request)
    return web.Response(body=located.body(), content_type="application/json")


async def file_redirect(request: web.Request) -> web.Response:
    """``GET /v1/files/{file_id}``: 307 to the located region's access unit (for ``curl -L``)."""
    directory = request.app[DIRECTORY]
    parse_file_id(request.match_info["file_id"])
    located = _located(directory, request)
    target = f"{located.access_url}{request.path_qs}"
    raise web.HTTPTemporaryRedirect(target, headers={"Cache-Control": "no-store"})


def peer_region(directory: Directory, peer: str, claimed: object) -> str:
    """The region a peer speaks for; it may only speak for itself."""
    region = peer.removeprefix("region:")
    if not peer.startswith("region:") or region not in directory.config.region_names:
        raise Forbidden("only file servers may do this")
    if claimed is not None and claimed != region:
        raise Forbidden("a file server speaks only for its own region")
    return region


async def heartbeat(request: web.Request) -> web.Response:
    """``POST /v1/peer/heartbeat``: a file server is alive; its links' loads."""
    directory = request.app[DIRECTORY]
    peer, raw = await authenticated_peer(
        request, directory.config.keys.peer.encode(), directory.replay_guard
    )
    body = parse_json_object(raw)
    region = peer_region(directory, peer, body.get("region"))
    links = body.get("links", [])
    if not isinstance(links, list) or not all(isinstance(link, dict) for link in links):
        raise BadRequest("links: a list of objects is required")
    await directory.health.beat(region, links)
    request.app[DIRECTORY_METRICS].heartbeats.labels(region).inc()
    return web.json_response({"ok": True})


async def regions(request: web.Request) -> web.Response:
    """``GET /v1/regions``: every region, whether it is alive, its links' last reported load."""
    directory = request.app[DIRECTORY]
    return web.json_response({"regions": directory.health.snapshot()})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "role": "directory"})
