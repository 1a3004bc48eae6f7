"""tus 1.0 at the links: creation, HEAD, PATCH, termination (https://tus.io/protocols/resumable-upload)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from geodrop.errors import BadRequest, PayloadTooLarge
from geodrop.fileserver import uploads
from geodrop.fileserver.context import FILE_SERVER, FileServer
from geodrop.fileserver.transferurls import arrival_link, signed_url, verified_grant
from geodrop.metadata.base import Transfer, TransferState
from geodrop.protocol import signing, tus
from geodrop.web.auth import authenticated_user, request_client_ip


@web.middleware
async def tus_resumable_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer on a tus path, errors included, says which tus version it speaks."""
    response = await handler(request)
    if request.path.startswith("/tus") and not response.prepared:
        response.headers["Tus-Resumable"] = tus.TUS_VERSION
    return response


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


def _creation_request(server: FileServer, request: web.Request) -> uploads.UploadRequest:
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    if "Upload-Defer-Length" in request.headers:
        raise BadRequest("Upload-Defer-Length is not supported: declare Upload-Length")
    length = tus.parse_upload_length(
        request.headers.get("Upload-Length"), max_size=server.config.limits.max_file_size
    )
    metadata = tus.parse_metadata(request.headers.get("Upload-Metadata"))
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


async def create(request: web.Request) -> web.Response:
    """``POST /tus``: tus creation (and creation-with-upload), authenticated as the sender."""
    server = request.app[FILE_SERVER]
    user = authenticated_user(request, server.config.keys)
    upload_request = _creation_request(server, request)
    has_body = request.content_type == tus.OFFSET_CONTENT_TYPE
    if request.body_exists and not has_body:
        raise BadRequest(f"a creation body must be sent as {tus.OFFSET_CONTENT_TYPE}")
    carrier = server.locator.locate(
        request_client_ip(request, server.config.geo.trusted_proxies)
    ).carrier
    link = arrival_link(server, request)
    transfer = await uploads.create_upload(server, user, upload_request)
    url = signed_url(server, signing.Action.UPLOAD, transfer.id, user, carrier, on_link=link)
    offset = 0
    if transfer.size == 0:
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


async def head(request: web.Request) -> web.Response:
    """``HEAD /tus/{id}``: how much the server holds."""
    server = request.app[FILE_SERVER]
    upload_id, _ = _authorized_upload(server, request)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    transfer = await uploads.find_upload(server, upload_id)
    transfer, offset = await uploads.settled_offset(server, transfer)
    headers = _progress_headers(transfer, offset)
    if transfer.tus_metadata:
        headers["Upload-Metadata"] = tus.encode_metadata(transfer.tus_metadata)
    return web.Response(status=200, headers=headers)


async def _receive(
    server: FileServer, request: web.Request, transfer: Transfer, offset: int, link: str
) -> int:
    checksum_header = request.headers.get("Upload-Checksum")
    checksum = tus.parse_checksum(checksum_header) if checksum_header is not None else None
    with server.meters.transfer(link):
        return await uploads.receive(
            server, transfer, offset, request.content.iter_any(), link, checksum
        )


async def patch(request: web.Request) -> web.Response:
    """``PATCH /tus/{id}``: append bytes at the offset the server holds."""
    server = request.app[FILE_SERVER]
    upload_id, link = _authorized_upload(server, request)
    tus.check_tus_resumable(request.headers.get("Tus-Resumable"))
    async with server.transfers.upload_lock(upload_id):
        transfer = await uploads.find_upload(server, upload_id)
        if (
            transfer.state is TransferState.COMPLETE
            and request.headers.get("Upload-Offset") == str(transfer.size)
            and not request.body_exists
        ):
            # A client retrying its last PATCH after a lost answer: nothing left to do.
            return web.Response(status=204, headers=_progress_headers(transfer, transfer.size))
        offset = tus.check_patch(
            length=transfer.size,
            current_offset=await uploads.current_offset(server, transfer),
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
