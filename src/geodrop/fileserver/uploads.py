"""The upload side of the access unit: negotiation, tus writes, completion."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from geodrop.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Gone,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
)
from geodrop.fileserver import quota, recvfile, retention
from geodrop.fileserver.context import FileServer
from geodrop.fileserver.quota import check_quota
from geodrop.fileserver.streamhash import StreamSha256
from geodrop.metadata.base import Transfer, TransferState
from geodrop.protocol import tus, usertokens
from geodrop.protocol.fileid import new_file_id, parse_file_id
from geodrop.storage.base import UploadWriter, full_is_insufficient_storage

if TYPE_CHECKING:
    from hashlib import _Hash

logger = logging.getLogger(__name__)

_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}\Z")
_CONTENT_TYPE: Final = re.compile(r"^[a-zA-Z0-9!#$&^_.+-]{1,64}/[a-zA-Z0-9!#$&^_.+-]{1,64}\Z")
MAX_NAME_LENGTH: Final = 255
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A validated request to send one file."""

    name: str
    size: int
    sha256: str | None
    receivers: tuple[str, ...]
    content_type: str


def validate_name(name: object) -> str:
    """A file name is metadata only, never part of a path, but it must still be sane.

    Raises:
        BadRequest: not a string, empty, too long, or with control characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("name: a non-empty string is required")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"name: at most {MAX_NAME_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise BadRequest("name: control characters are not allowed")
    if not name.isascii():
        try:
            # JSON may carry lone surrogates ("\ud800"); no metadata store can keep them.
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("name: not valid Unicode") from None
    return name


def parse_upload_request(
    body: Mapping[str, Any], *, max_size: int, max_receivers: int
) -> UploadRequest:
    """Validate a negotiation body ``{"name", "size", "sha256", "receivers", "content_type"?}``.

    Raises:
        BadRequest: a field is missing or malformed; the message names it.
        PayloadTooLarge: ``size`` is above the cluster's limit.
    """
    name = validate_name(body.get("name"))
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("size: a non-negative integer is required")
    if size > max_size:
        raise PayloadTooLarge(f"size: {size} bytes is above the limit of {max_size}")
    sha256 = body.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_HEX.match(sha256)):
        raise BadRequest("sha256: 64 lowercase hex digits are required")
    if size == 0 and sha256 is not None and sha256 != EMPTY_SHA256:
        # A 0-byte upload completes at creation: a wrong digest could never be corrected.
        raise BadRequest("sha256: does not match a 0-byte file")
    receivers = parse_receivers(body.get("receivers"), max_receivers)
    content_type = body.get("content_type", "application/octet-stream")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type):
        raise BadRequest("content_type: a MIME type like text/plain is required")
    return UploadRequest(name, size, sha256, receivers, content_type)


def parse_receivers(value: object, max_receivers: int) -> tuple[str, ...]:
    """A list of distinct user ids.

    Raises:
        BadRequest: not a non-empty list of valid user ids, or too many.
    """
    if not isinstance(value, list) or not value:
        raise BadRequest("receivers: a non-empty list of user ids is required")
    if len(value) > max_receivers:
        raise BadRequest(f"receivers: at most {max_receivers}")
    out: list[str] = []
    for i, user in enumerate(value):
        if not isinstance(user, str) or not usertokens.USER_ID.match(user):
            raise BadRequest(f"receivers[{i}]: not a valid user id")
        if user not in out:
            out.append(user)
    return tuple(out)


async def check_storage(server: FileServer, size: int) -> None:
    """Refuse an upload of ``size`` bytes that this region's storage has no room for.

    Raises:
        InsufficientStorage: the storage unit has no room for it (507).
    """
    # limits.min_free_bytes of headroom: one upload cannot fill the disk to the last byte.
    if size + server.config.limits.min_free_bytes > await server.store.free_bytes():
        raise InsufficientStorage("this region's storage is full; try again later")


async def create_upload(
    server: FileServer,
    sender: str,
    request: UploadRequest,
    *,
    tus_metadata: Mapping[str, str] | None = None,
    quota_checked: bool = True,
) -> Transfer:
    """Record a new upload and make its storage area.

    A refusal leaves nothing: the quota is checked before the area is made, and again
    in one step with the record (a check lost to the sender's concurrent uploads removes
    the area again).

    Args:
        tus_metadata: kept with the transfer (tus concatenation records its role there).
        quota_checked: False only for an upload whose bytes and upload count its sender's
            quota already holds (a final upload made of partial ones, concatenation.py).

    Raises:
        InsufficientStorage: the storage unit has no room for it (507).
        QuotaExceeded: the sender is over a per-user quota in this region (429).
        PayloadTooLarge: the file alone is larger than the per-user quota (413).
    """
    await check_storage(server, request.size)
    if quota_checked:
        await check_quota(server.transfers, server.config.limits, sender, request.size, time.time())
    upload_id = str(new_file_id(server.region.name))
    await server.store.create_upload(upload_id)
    try:
        transfer = await _record(server, sender, request, upload_id, quota_checked, tus_metadata)
    except Exception:
        # Refused, or the record failed: nothing names the area. (Not on cancellation:
        # the record's commit may still land, and its upload needs the area.)
        await server.store.delete_upload(upload_id)
        raise
    logger.info("upload %s created by %s: %d bytes", transfer.id, sender, request.size)
    return transfer


async def _record(
    server: FileServer,
    sender: str,
    request: UploadRequest,
    transfer_id: str,
    quota_checked: bool,
    tus_metadata: Mapping[str, str] | None,
    *,
    whole_sha256: str | None = None,
) -> Transfer:
    """Record a new transfer whose storage is made, once the sender's quota allows it.

    The quota is this region's metadata's count of the sender's uploads (see quota.py).
    The check and the record are one step of the store (``create_admitted``), so a burst
    of concurrent negotiations cannot all pass the same check; storage work (fsyncs) of
    one sender's uploads overlaps. Callers check the quota once before that work too, so
    a refused request mostly costs none.

    Args:
        whole_sha256: the file is whole and has this sha256: recorded complete.
    """
    limits = server.config.limits
    now = time.time()
    transfer = Transfer(
        id=transfer_id,
        sender=sender,
        receivers=request.receivers,
        filename=request.name,
        size=request.size,
        sha256=request.sha256,
        created_at=now,
        expires_at=now + limits.upload_expiry_seconds,
        content_type=request.content_type,
        tus_metadata=dict(tus_metadata or {}),
    )
    if whole_sha256 is not None:
        transfer = replace(
            transfer,
            sha256=whole_sha256,
            state=TransferState.COMPLETE,
            completed_at=now,
            expires_at=now + limits.retention_seconds,
        )
    if quota_checked:
        admit = partial(quota.admit, limits, request.size, now)
        await server.transfers.create_admitted(transfer, admit, quota.window_start(now))
    else:
        await server.transfers.create(transfer)
    return transfer


async def create_whole(
    server: FileServer,
    sender: str,
    request: UploadRequest,
    data: bytes,
    checksum: tuple[str, bytes] | None,
) -> Transfer:
    """A whole small file sent with its creation request: checked, stored durably and
    recorded complete at once, with its inbox entries queued.

    A refusal leaves nothing: a file that does not match its Upload-Checksum or
    negotiated sha256 is refused before anything is stored, one over the quota before or
    (lost to the sender's concurrent uploads) right after its file is written.

    Raises:
        ChecksumMismatch: ``data`` does not match ``checksum`` or ``request.sha256``.
        InsufficientStorage, QuotaExceeded, PayloadTooLarge: as :func:`create_upload`.
    """
    if len(data) != request.size:
        raise BadRequest(f"the body has {len(data)} bytes, Upload-Length says {request.size}")
    if checksum is not None and not hmac.compare_digest(
        hashlib.new(checksum[0], data).digest(), checksum[1]
    ):
        raise ChecksumMismatch("the chunk does not match its Upload-Checksum")
    digest = hashlib.sha256(data).hexdigest()
    if request.sha256 is not None and digest != request.sha256:
        raise ChecksumMismatch("the file's sha256 does not match the negotiated one")
    await check_storage(server, request.size)
    await check_quota(server.transfers, server.config.limits, sender, request.size, time.time())
    file_id = str(new_file_id(server.region.name))
    # The file first: a crash before its record leaves bytes nobody was promised.
    await server.store.store_whole(file_id, data)
    try:
        transfer = await _record(server, sender, request, file_id, True, None, whole_sha256=digest)
    except Exception:
        await server.store.delete_file(file_id)  # as for create_upload's area
        raise
    server.announce_wakeup.set()
    logger.info(
        "upload %s created complete by %s: %d bytes, sha256 %s",
        transfer.id,
        sender,
        request.size,
        digest,
    )
    return transfer


async def find_upload(server: FileServer, upload_id: str) -> Transfer:
    """The transfer of a local upload id, in whatever state.

    Only a request with a valid signed URL for ``upload_id`` gets here, and only the
    sender is given those: so an expired upload's tombstone answers 410.

    Raises:
        NotFound: no such upload here.
        Gone: it expired (or was deleted).
    """
    file_id = parse_file_id(upload_id)
    if file_id.region != server.region.name:
        raise NotFound("no such upload")
    transfer = await server.transfers.get(upload_id)
    if transfer is None:
        raise await retention.refusal_for_missing(server, upload_id, None, "no such upload")
    if transfer.expires_at < time.time():
        raise Gone("this upload has expired")
    return transfer


def is_partial(transfer: Transfer) -> bool:
    """Whether ``transfer`` is a partial upload (tus concatenation, see concatenation.py).

    Once whole, a partial upload is not committed as a file: it waits in its upload
    area for the final upload that is made of it.
    """
    concat = tus.stored_concat(transfer.tus_metadata)
    return concat is not None and not concat.final


async def current_offset(server: FileServer, transfer: Transfer, *, locked: bool = False) -> int:
    """How much of an upload the server holds (all of it once complete).

    Args:
        locked: the caller holds the upload's lock.

    Raises:
        NotFound, Gone: the upload went while its lost area was being made again.
    """
    if transfer.state is TransferState.COMPLETE:
        return transfer.size
    try:
        return await server.store.upload_offset(transfer.id)
    except NotFound:
        pass
    try:
        digest = await _committed_sha256(server, transfer)
    except NotFound:
        # No area and no file: the machine went down before the area's creation reached
        # the disk (the store does not wait for that: see create_upload). It is made again,
        # under the upload's lock, so a termination in progress cannot be undone.
        if locked:
            return await _make_lost_area_again(server, transfer)
        async with server.transfers.upload_lock(transfer.id):
            return await current_offset(server, await find_upload(server, transfer.id), locked=True)
    # A crash between committing the bytes and recording completion: finish the record.
    await _record_completion(server, transfer, digest)
    return transfer.size


async def _make_lost_area_again(server: FileServer, transfer: Transfer) -> int:
    try:
        await server.store.create_upload(transfer.id)
    except FileExistsError:
        return await server.store.upload_offset(transfer.id)
    logger.warning("upload %s: its area was lost in a crash; it starts again from 0", transfer.id)
    return 0


async def settled_offset(server: FileServer, transfer: Transfer) -> tuple[Transfer, int]:
    """The offset to tell a client, after finishing an upload a crash left whole but unfinished.

    All bytes stored but no commit (the process died between the last write and the
    commit): answering "offset = length" would make the client stop while the file never
    appears. The upload is completed here instead, under its lock.

    Returns:
        The transfer as it now stands, and its offset.

    If the stored bytes do not match the negotiated sha256, the upload restarts from
    zero, and the offset says so.
    """
    offset = await current_offset(server, transfer)
    if offset < transfer.size or transfer.state is TransferState.COMPLETE or is_partial(transfer):
        return transfer, offset
    async with server.transfers.upload_lock(transfer.id):
        transfer = await find_upload(server, transfer.id)
        if transfer.state is TransferState.UPLOADING:
            offset = await current_offset(server, transfer, locked=True)
            # current_offset finishes the record of a file committed before the crash.
            transfer = await find_upload(server, transfer.id)
            if transfer.state is TransferState.UPLOADING:
                if offset < transfer.size:
                    return transfer, offset
                try:
                    transfer = await complete(server, transfer)
                except ChecksumMismatch:
                    return transfer, 0
    return transfer, transfer.size


async def _committed_sha256(server: FileServer, transfer: Transfer) -> str:
    blob = await server.store.open_file(transfer.id)
    try:
        if blob.size != transfer.size:
            raise Conflict("upload storage is inconsistent")
        if transfer.sha256 is not None:
            return transfer.sha256
        sha = hashlib.sha256()
        async for chunk in blob.chunks(0, blob.size):
            sha.update(chunk)
        return sha.hexdigest()
    finally:
        await blob.close()


async def receive(
    server: FileServer,
    transfer: Transfer,
    offset: int,
    body: AsyncIterator[bytes],
    link: str,
    checksum: tuple[str, bytes] | None,
    take_over: Callable[[int], recvfile.TakenBody | None] | None = None,
) -> int:
    """Append a PATCH body at ``offset``; complete the upload if it is now whole (a whole
    partial upload waits for its final upload instead).

    Args:
        body: the body's chunks, as the request's stream gives them.
        take_over: asked, when the store writes to a local file, to take the body from
            the connection instead if it fits the room left (recvfile.py); None, or its
            None, reads ``body``.

    Returns:
        The new offset.

    Raises:
        PayloadTooLarge: the body runs past the declared length (nothing of it is kept).
        ChecksumMismatch: the body does not match its Upload-Checksum (it is discarded),
            or the finished file does not match the negotiated sha256 (the upload
            restarts from zero).
    """
    if transfer.state is TransferState.COMPLETE:
        raise Conflict("this upload is already complete")
    hasher = hashlib.new(checksum[0]) if checksum else None
    # A request that carries the upload from offset 0 hashes the whole file as it
    # arrives, so completion need not read it back, on a thread of its own beside the
    # event loop (streamhash.py, recvfile.py).
    partial = is_partial(transfer)
    hash_whole = offset == 0 and not partial
    room = transfer.size - offset
    async with server.store.open_writer(transfer.id, offset) as writer:
        fd = writer.local_fd()
        taken = take_over(room) if take_over is not None and fd is not None else None
        if taken is not None and fd is not None:
            digest = await _receive_taken(server, writer, fd, taken, room, link, hasher, hash_whole)
        else:
            digest = await _receive_chunks(server, writer, body, room, link, hasher, hash_whole)
        if (
            checksum is not None
            and hasher is not None
            and not hmac.compare_digest(hasher.digest(), checksum[1])
        ):
            await writer.rollback(offset)
            raise ChecksumMismatch("the chunk does not match its Upload-Checksum")
        new_offset = writer.offset
    if new_offset == transfer.size and not partial:
        await complete(server, transfer, digest)
    return new_offset


async def _receive_chunks(
    server: FileServer,
    writer: UploadWriter,
    body: AsyncIterator[bytes],
    room: int,
    link: str,
    hasher: _Hash | None,
    hash_whole: bool,
) -> str | None:
    """Write the body's chunks; the file's sha256 if hashed whole and now complete."""
    whole = StreamSha256() if hash_whole else None
    start = writer.offset
    try:
        async for chunk in _until_stalled(body, server.config.limits.body_idle_seconds):
            if len(chunk) > room:
                # A body without Content-Length (chunked) that runs past the declared
                # length: the whole request is refused, as it would have been up front.
                await writer.rollback(start)
                raise PayloadTooLarge("more bytes than the declared Upload-Length")
            room -= len(chunk)
            await writer.write(chunk)
            server.meters.received(link, len(chunk))
            if hasher is not None:
                hasher.update(chunk)
            if whole is not None:
                await whole.update(chunk)
        return await whole.hexdigest() if whole is not None and room == 0 else None
    finally:
        if whole is not None:
            whole.close()


async def _until_stalled(body: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """``body``'s chunks, ending with :class:`BodyStalled` after ``seconds`` without one."""
    chunks = aiter(body)
    while True:
        try:
            async with recvfile.idle_limit(seconds):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        yield chunk


async def _receive_taken(
    server: FileServer,
    writer: UploadWriter,
    fd: int,
    taken: recvfile.TakenBody,
    room: int,
    link: str,
    hasher: _Hash | None,
    hash_whole: bool,
) -> str | None:
    """Write a body taken from its connection (recvfile.py); as :func:`_receive_chunks`."""
    if len(taken.buffered) + taken.remaining > room:
        raise PayloadTooLarge("more bytes than the declared Upload-Length")
    whole = hashlib.sha256() if hash_whole else None
    hashes = [sha for sha in (hasher, whole) if sha is not None]
    if taken.buffered:
        await writer.write(taken.buffered)
        server.meters.received(link, len(taken.buffered))
        for sha in hashes:
            sha.update(taken.buffered)
    remaining = taken.remaining

    def written(count: int) -> None:
        writer.wrote(count)
        server.meters.received(link, count)

    idle = server.config.limits.body_idle_seconds
    with recvfile.receiving(taken.sock, fd, hashes, written, idle) as receiver:
        while remaining:
            with full_is_insufficient_storage():
                remaining -= await receiver.receive(min(remaining, recvfile.SLICE_BYTES))
        await receiver.hashed()
    return (
        whole.hexdigest()
        if whole is not None and room == len(taken.buffered) + taken.remaining
        else None
    )


async def complete(server: FileServer, transfer: Transfer, digest: str | None = None) -> Transfer:
    """Verify a whole upload, commit it durably and queue its inbox entries.

    Args:
        server: this file server.
        transfer: the upload, all of whose bytes are in its upload area.
        digest: the sha256 of those bytes if the caller hashed them on their way
            in; None reads them back.

    Raises:
        ChecksumMismatch: the bytes do not match the negotiated sha256; the
            upload area is emptied so the client can send the file again.
    """
    if digest is None:
        digest = await server.store.upload_sha256(transfer.id)
    if transfer.sha256 is not None and digest != transfer.sha256:
        await server.store.delete_upload(transfer.id)
        await server.store.create_upload(transfer.id)
        raise ChecksumMismatch(
            "the file's sha256 does not match the negotiated one; send it again from offset 0"
        )
    await server.store.commit(transfer.id)
    return await _record_completion(server, transfer, digest)


async def _record_completion(server: FileServer, transfer: Transfer, digest: str) -> Transfer:
    now = time.time()
    done = await server.transfers.complete(
        transfer.id, digest, now, now + server.config.limits.retention_seconds
    )
    server.announce_wakeup.set()
    logger.info("upload %s complete: %d bytes, sha256 %s", transfer.id, transfer.size, digest)
    return done


async def terminate(server: FileServer, transfer: Transfer) -> None:
    """Delete an upload (tus termination) or a completed file: data, metadata, inbox entries.

    Only a tombstone stays, as after expiry (retention.py).
    """
    await retention.retire(server, transfer, time.time())
