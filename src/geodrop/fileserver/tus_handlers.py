"""tus 1.0 at the links: creation, HEAD, PATCH, termination (https://tus.io/protocols/resumable-upload).

Creation also makes the partial and final uploads of tus concatenation (concatenation.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Final

from aiohttp import web

from geodrop.errors import BadRequest, PayloadTooLarge
from geodrop.fileserver import concatenation, uploads
from geodrop.fileserver.context import FILE_SERVER, FileServer
from geodrop.fileserver.metrics import Direction, metered_transfer
from geodrop.fileserver.recvfile import take_over_body
from geodrop.fileserver.transferurls import arrival_link, link_for, signed_url, verified_grant
from geodrop.metadata.base import Transfer, TransferState
from geodrop.protocol import signing, tus
from geodrop.web.auth import authenticated_user, request_client_ip
from geodrop.web.bodyreads import larger_reads

# A creation-with-upload carrying a whole file of at most this many bytes is taken in
# one step: read, checked, stored and recorded complete together (uploads.create_whole),
# a third of the storage and metadata round trips of an upload made resumable first.
# Too small to be worth resuming: a client whose request fails sends it again.
WHOLE_BODY_BYTES: Final = 64 * 1024
# Every answer under it, errors included, says which tus version it speaks (the front
# door adds Tus-Resumable).
TUS_PATH_PREFIX: Final = "/tus"


def _authorized_upload(server: FileServer, request: web.Request) -> tuple[str, str]:
    """``(upload_id, link)`` of a request carrying a valid upload signature for its link."""
    upload_id = request.match_info["upload_id"]
    grant = verified_grant(server, request, signing.Action.UPLOAD, upload_id)
    return upload_id, grant.link


def _progress_headers(transfer: Transfer, offset: int) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(offset),
        "Upload-Length": str(transfer.size),
        "Cache-Control": "no-store",
    }
    if transfer.state is TransferState.UPLOADING:
        headers["Upload-Expires"] = tus.http_date(transfer.expires_at)
    return headers


async def options(request: web.Request) -> web.Response:
    server = request.app[FILE_SERVER]
    return web.Response(status=204, headers=tus.options_headers(server.config.limits.max_file_size))


def _upload_request(
    server: FileServer, metadata: Mapping[str, str], length: int
) -> uploads.UploadRequest:
    """The upload a tus creation request describes with its Upload-Metadata."""
    receivers = [r.strip() for r in metadata.get("receivers", "").split(",") if r.strip()]
    body = {
        "name": metadata.get("filename") or metadata.get("name"),
        "size": length,
        "receivers": receivers,
        "content_type": metadata.get("filetype") or "application/octet-stream",
    }
    if metadata.get("sha256"):
        body["sha256"] = metadata["sha256"]
    try:
        return uploads.parse_upload_request(
            body,
            max_size=server.config.limits.max_file_size,
            max_receivers=server.config.limits.max_receivers,
        )
    except BadRequest as exc:
        raise BadRequest(f"Upload-Metadata {exc.message}") from None


def _client_carrier(server: FileServer, request: web.Request) -> str:
    ip = request_client_ip(request, server.config.geo.trusted_proxies)
    return server.locator.locate(ip).carrier


async def create(request: web.Request) -> web.Response:
    """``POST /tus``: tus creation (and creation-with-upload), authenticated as the sender.

    With ``Upload-Concat: partial`` the upload is a partial one; with ``Upload-Concat:
    final;...`` the final upload of partial ones is made at once (tus concatenation).
    """
    server = request.app[FILE_SERVER]
    user = authenticated_user(request, server.config.keys)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    concat = tus.parse_upload_concat(request.headers.get("Upload-Concat"))
    if concat is not None and concat.final:
        return await _create_final(server, request, user, concat)
    if "Upload-Defer-Length" in request.headers:
        raise BadRequest("Upload-Defer-Length is not supported: declare Upload-Length")
    length = tus.parse_upload_length(
        request.headers.get("Upload-Length"), max_size=server.config.limits.max_file_size
    )
    metadata = tus.parse_metadata(request.headers.get("Upload-Metadata"))
    upload_request = None if concat is not None else _upload_request(server, metadata, length)
    has_body = request.content_type == tus.OFFSET_CONTENT_TYPE
    if request.body_exists and not has_body:
        raise BadRequest(f"a creation body must be sent as {tus.OFFSET_CONTENT_TYPE}")
    carrier = _client_carrier(server, request)
    link = arrival_link(server, request)
    if (
        upload_request is not None
        and has_body
        and 0 < length <= WHOLE_BODY_BYTES
        and request.content_length == length
    ):
        return await _create_whole(server, request, user, upload_request, carrier, link)
    if upload_request is None:
        transfer = await concatenation.create_partial(server, user, length, metadata)
    else:
        transfer = await uploads.create_upload(server, user, upload_request)
    url = signed_url(server, signing.Action.UPLOAD, transfer.id, user, carrier, on_link=link)
    offset = 0
    if transfer.size == 0 and upload_request is not None:
        transfer = await uploads.complete(server, transfer)
    elif has_body:
        try:
            offset = await _receive(server, request, transfer, 0, url.link)
        except PayloadTooLarge:
            # A body that ran past Upload-Length (chunked, or a longer Content-Length): the
            # client never learns the upload's URL, so its data and metadata go at once
            # rather than hold quota until expiry (a tombstone stays, as for any termination).
            await uploads.terminate(server, transfer)
            raise
    return web.Response(
        status=201,
        headers={"Location": url.url, **_progress_headers(transfer, offset)},
    )


async def _create_whole(
    server: FileServer,
    request: web.Request,
    user: str,
    upload_request: uploads.UploadRequest,
    carrier: str,
    arrived_on: str | None,
) -> web.Response:
    """Creation-with-upload of a whole small file: complete when answered (no PATCH)."""
    checksum_header = request.headers.get("Upload-Checksum")
    checksum = tus.parse_checksum(checksum_header) if checksum_header is not None else None
    link = link_for(server, carrier, arrived_on)
    with metered_transfer(request, link, Direction.UPLOAD):
        try:
            data = await request.content.readexactly(upload_request.size)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the creation body ended early") from None
        server.meters.received(link, len(data))
        transfer = await uploads.create_whole(server, user, upload_request, data, checksum)
    url = signed_url(server, signing.Action.UPLOAD, transfer.id, user, carrier, on_link=link)
    return web.Response(
        status=201,
        headers={"Location": url.url, **_progress_headers(transfer, transfer.size)},
    )


async def _create_final(
    server: FileServer, request: web.Request, user: str, concat: tus.UploadConcat
) -> web.Response:
    """Concatenation: the final upload of whole partial uploads, complete when answered."""
    # Concatenation: "The Client MUST NOT include the Upload-Length header in the final
    # upload creation"; its length is its partials'.
    for header in ("Upload-Length", "Upload-Defer-Length"):
        if header in request.headers:
            raise BadRequest(f"a final upload takes no {header}: its length is its partials'")
    if request.body_exists:
        raise BadRequest("a final upload takes no body: its bytes are its partial uploads'")
    metadata = tus.parse_metadata(request.headers.get("Upload-Metadata"))
    carrier = _client_carrier(server, request)
    link = arrival_link(server, request)
    final = await concatenation.create_final(
        server, user, concat.partial_ids, partial(_upload_request, server, metadata), metadata
    )
    url = signed_url(server, signing.Action.UPLOAD, final.id, user, carrier, on_link=link)
    return web.Response(
        status=201,
        headers={"Location": url.url, **_progress_headers(final, final.size)},
    )


async def head(request: web.Request) -> web.Response:
    """``HEAD /tus/{id}``: how much the server holds."""
    server = request.app[FILE_SERVER]
    upload_id, _ = _authorized_upload(server, request)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    transfer = await uploads.find_upload(server, upload_id)
    transfer, offset = await uploads.settled_offset(server, transfer)
    headers = {**_progress_headers(transfer, offset), **concatenation.concat_header(transfer)}
    metadata = tus.client_metadata(transfer.tus_metadata)
    if metadata:
        headers["Upload-Metadata"] = tus.encode_metadata(metadata)
    return web.Response(status=200, headers=headers)


async def _receive(
    server: FileServer, request: web.Request, transfer: Transfer, offset: int, link: str
) -> int:
    checksum_header = request.headers.get("Upload-Checksum")
    checksum = tus.parse_checksum(checksum_header) if checksum_header is not None else None
    with metered_transfer(request, link, Direction.UPLOAD), larger_reads(request):
        return await uploads.receive(
            server,
            transfer,
            offset,
            request.content.iter_any(),
            link,
            checksum,
            take_over=partial(take_over_body, request),
        )


async def patch(request: web.Request) -> web.Response:
    """``PATCH /tus/{id}``: append bytes at the offset the server holds."""
    server = request.app[FILE_SERVER]
    upload_id, link = _authorized_upload(server, request)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    async with server.transfers.upload_lock(upload_id):
        transfer = await uploads.find_upload(server, upload_id)
        concatenation.check_not_final(transfer)
        if (
            transfer.state is TransferState.COMPLETE
            and request.headers.get("Upload-Offset") == str(transfer.size)
            and not request.body_exists
        ):
            # A client retrying its last PATCH after a lost answer: nothing left to do.
            return web.Response(status=204, headers=_progress_headers(transfer, transfer.size))
        offset = tus.check_patch(
            length=transfer.size,
            current_offset=await uploads.current_offset(server, transfer, locked=True),
            offset_header=request.headers.get("Upload-Offset"),
            content_type=request.headers.get("Content-Type"),
            content_length=request.content_length,
        )
        new_offset = await _receive(server, request, transfer, offset, link)
    done = await uploads.find_upload(server, upload_id)
    return web.Response(status=204, headers=_progress_headers(done, new_offset))


async def terminate(request: web.Request) -> web.Response:
    """``DELETE /tus/{id}``: tus termination; data and metadata go."""
    server = request.app[FILE_SERVER]
    upload_id, _ = _authorized_upload(server, request)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    async with server.transfers.upload_lock(upload_id):
        transfer = await uploads.find_upload(server, upload_id)
        await uploads.terminate(server, transfer)
    return web.Response(status=204)
