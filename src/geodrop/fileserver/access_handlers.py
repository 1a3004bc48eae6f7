"""HTTP endpoints of the access unit: negotiation, the peer channel, status."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from geodrop.config import CARRIERS
from geodrop.errors import BadRequest
from geodrop.fileserver import concatenation, downloads, filestatus, uploads
from geodrop.fileserver.context import FILE_SERVER, FileServer
from geodrop.fileserver.metrics import Direction, timed_negotiation
from geodrop.fileserver.quota import check_quota
from geodrop.fileserver.transferurls import signed_url
from geodrop.geo.locator import Location
from geodrop.protocol import tus
from geodrop.protocol.signing import Action
from geodrop.web.auth import authenticated_peer, authenticated_user, request_client_ip
from geodrop.web.jsonbody import json_object, parse_json_object


def _client_location(server: FileServer, request: web.Request) -> Location:
    ip = request_client_ip(request, server.config.geo.trusted_proxies)
    return server.locator.locate(ip)


def _user(server: FileServer, request: web.Request) -> str:
    return authenticated_user(request, server.config.keys)


@timed_negotiation(Direction.UPLOAD)
async def negotiate_upload(request: web.Request) -> web.Response:
    """``POST /v1/uploads``: create an upload, answer with its URL on the best link.

    With ``"parallel": true`` nothing is created: the answer names the link on which the
    client creates partial uploads and their final upload (tus concatenation). An empty
    file is still answered with an ordinary upload, complete at once.
    """
    server = request.app[FILE_SERVER]
    user = _user(server, request)
    body = await json_object(request)
    upload = uploads.parse_upload_request(
        body,
        max_size=server.config.limits.max_file_size,
        max_receivers=server.config.limits.max_receivers,
    )
    parallel = body.get("parallel", False)
    if not isinstance(parallel, bool):
        raise BadRequest("parallel: true or false")
    location = _client_location(server, request)
    if parallel and upload.size > 0:
        return web.json_response(await _parallel_offer(server, user, upload, location))
    transfer = await uploads.create_upload(server, user, upload)
    if transfer.size == 0:
        transfer = await uploads.complete(server, transfer)
    url = signed_url(server, Action.UPLOAD, transfer.id, user, location.carrier)
    return web.json_response(
        {
            "upload_id": transfer.id,
            "file_id": transfer.id,
            "upload_url": url.url,
            "region": server.region.name,
            "link": url.link,
            "carrier": url.carrier,
            "client_carrier": location.carrier,
            "expires_at": url.expires_at,
        },
        status=201,
        headers={"Location": url.url},
    )


async def _parallel_offer(
    server: FileServer, user: str, upload: uploads.UploadRequest, location: Location
) -> dict[str, Any]:
    # Checked now, so that a refusal comes before any byte is sent (each partial upload
    # is checked again when it is created).
    await uploads.check_storage(server, upload.size)
    await check_quota(server.transfers, server.config.limits, user, upload.size, time.time())
    link = concatenation.creation_link(server, location.carrier)
    return {
        "creation_url": f"{link.url}/tus",
        "region": server.region.name,
        "link": link.name,
        "carrier": link.carrier,
        "client_carrier": location.carrier,
        "max_partials": tus.MAX_CONCAT_PARTIALS,
    }


async def _negotiated_download(request: web.Request, file_id: str) -> downloads.DownloadAddress:
    server = request.app[FILE_SERVER]
    user = _user(server, request)
    location = _client_location(server, request)
    return await downloads.download_address(server, file_id, user, location.carrier)


@timed_negotiation(Direction.DOWNLOAD)
async def negotiate_download(request: web.Request) -> web.Response:
    """``POST /v1/downloads`` ``{"file_id"}``: a signed URL, here or in the owning region."""
    body = await json_object(request)
    file_id = body.get("file_id")
    if not isinstance(file_id, str):
        raise BadRequest("file_id: required")
    address = await _negotiated_download(request, file_id)
    return web.json_response(address.to_json())


@timed_negotiation(Direction.DOWNLOAD)
async def download_redirect(request: web.Request) -> web.Response:
    """``GET /v1/files/{file_id}``: the plain-HTTP form, a 302 to the signed URL."""
    address = await _negotiated_download(request, request.match_info["file_id"])
    raise web.HTTPFound(address.url, headers={"Cache-Control": "no-store"})


async def peer_download_address(request: web.Request) -> web.Response:
    """``POST /v1/peer/download-address``: another region asks for one of our links."""
    server = request.app[FILE_SERVER]
    _, raw = await authenticated_peer(request, server.peer_key, server.replay_guard)
    file_id, user, carrier = downloads.parse_peer_request(parse_json_object(raw), CARRIERS)
    address = await downloads.local_address(server, file_id, user, carrier)
    return web.json_response(address.to_json())


async def file_status(request: web.Request) -> web.Response:
    """``GET /v1/files/{file_id}/status``: state, size, and which receivers have it."""
    server = request.app[FILE_SERVER]
    user = _user(server, request)
    return web.json_response(
        await filestatus.file_status(server, request.match_info["file_id"], user)
    )


async def peer_file_status(request: web.Request) -> web.Response:
    """``POST /v1/peer/status``: another region asks on behalf of one of its users."""
    server = request.app[FILE_SERVER]
    _, raw = await authenticated_peer(request, server.peer_key, server.replay_guard)
    file_id, user = downloads.parse_peer_question(parse_json_object(raw))
    return web.json_response(await filestatus.local_status(server, file_id, user))


async def status(request: web.Request) -> web.Response:
    """``GET /v1/status``: this region's links and their load."""
    server = request.app[FILE_SERVER]
    payload: dict[str, Any] = {
        "region": server.region.name,
        "links": [asdict(report) for report in server.meters.reports()],
    }
    return web.json_response(payload)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "region": request.app[FILE_SERVER].region.name})
