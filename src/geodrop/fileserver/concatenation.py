"""tus concatenation: partial uploads sent in parallel, then one final upload made of them.

- A **partial upload** (``Upload-Concat: partial``) is an upload of its sender with no
  receivers, its role recorded in its tus_metadata (:data:`tus.CONCAT_METADATA_KEY`, a
  key no client can send). Once whole it is not committed: it is never a file, so it is
  never downloadable, announced or listed. It waits for its final upload, or expires as
  any unfinished upload does.
- A **final upload** (``Upload-Concat: final;URL URL ...``) names partial uploads of the
  same sender in this region, all whole. The storage unit fills it from them
  (:meth:`BlobStore.concatenate`: a kernel copy on local FS, server-side part copies on
  S3); then it is checked against its sha256, committed and announced like any upload,
  and its partials are retired (their tombstones say 410, as after termination).

Quotas: each partial counts as one of its sender's uploads and holds its bytes from its
creation, as any upload does. The final upload is not checked again: its bytes are those
its partials already hold (they stop counting when the partials are retired, a moment
later), and refusing it after every byte arrived would waste them all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from geodrop.config import LinkConfig
from geodrop.errors import BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge
from geodrop.fileserver import retention, uploads
from geodrop.fileserver.context import FileServer
from geodrop.metadata.base import Transfer
from geodrop.protocol import tus
from geodrop.protocol.fileid import parse_file_id
from geodrop.protocol.linkchoice import choose_link

logger = logging.getLogger(__name__)

# A partial upload is never shown as a file; its name only has to be valid.
PARTIAL_NAME: Final = "partial upload"


async def create_partial(
    server: FileServer, sender: str, size: int, metadata: Mapping[str, str]
) -> Transfer:
    """Record a partial upload of ``size`` bytes and make its storage area.

    Args:
        metadata: the client's Upload-Metadata; kept, and answered to HEAD.

    Raises:
        BadRequest: the metadata's ``filename`` is not a valid name.
        InsufficientStorage, QuotaExceeded, PayloadTooLarge: as for any upload.
    """
    request = uploads.UploadRequest(
        name=uploads.validate_name(metadata.get("filename") or PARTIAL_NAME),
        size=size,
        sha256=None,
        receivers=(),
        content_type="application/octet-stream",
    )
    return await uploads.create_upload(
        server, sender, request, tus_metadata=tus.with_concat(metadata, tus.PARTIAL)
    )


async def create_final(
    server: FileServer,
    sender: str,
    partial_ids: Sequence[str],
    describe: Callable[[int], uploads.UploadRequest],
    metadata: Mapping[str, str],
) -> Transfer:
    """Make, check and commit the final upload of ``partial_ids``; retire the partials.

    Args:
        partial_ids: the partial uploads, in the order their bytes follow each other.
        describe: the final's upload request for its length (validates its metadata).
        metadata: the client's Upload-Metadata, kept with the final upload.

    Returns:
        The final upload, complete.

    Raises:
        NotFound: a partial upload is not one of ``sender``'s in this region (the
            answer for another sender's upload too, so nobody learns it exists).
        Gone: a partial upload expired, or was used by a final upload already.
        BadRequest: an upload named is not a partial upload, or the metadata is invalid.
        PayloadTooLarge: the partials add up to more than the largest file accepted.
        Conflict: a partial upload is not whole yet.
        Locked: another request is writing a partial upload.
        ChecksumMismatch: the concatenated bytes do not match the metadata's sha256;
            nothing of the final upload stays, its partials do.
        InsufficientStorage: no room for the final upload.
    """
    if len(set(partial_ids)) != len(partial_ids):
        # Taking one upload's lock twice would wait on itself.
        raise BadRequest("Upload-Concat names a partial upload twice")
    # Checked before the locks too, so a plain mistake never waits on a PATCH's lock.
    whole = await _whole_partials(server, sender, partial_ids, locked=False)
    request = describe(sum(p.size for p in whole))
    async with contextlib.AsyncExitStack() as held:
        # Always in the same order, so two final uploads sharing partials cannot deadlock.
        for upload_id in sorted(partial_ids):
            await held.enter_async_context(server.transfers.upload_lock(upload_id))
        partials = await _whole_partials(server, sender, partial_ids, locked=True)
        concat = tus.UploadConcat(final=True, partial_ids=tuple(partial_ids))
        final = await uploads.create_upload(
            server,
            sender,
            request,
            tus_metadata=tus.with_concat(metadata, concat),
            quota_checked=False,
        )
        try:
            await server.store.concatenate(final.id, [p.id for p in partials])
            final = await uploads.complete(server, final)
        except Exception:
            # Nobody was told the final upload's id: it goes without a tombstone.
            await server.store.delete_upload(final.id)
            await server.store.delete_file(final.id)
            await server.transfers.delete(final.id)
            raise
        now = time.time()
        for partial in partials:
            await retention.retire(server, partial, now)
    logger.info(
        "final upload %s made of %d partial uploads by %s: %d bytes",
        final.id,
        len(partials),
        sender,
        final.size,
    )
    return final


def check_not_final(transfer: Transfer) -> None:
    """Refuse a PATCH to a final upload.

    Raises:
        Forbidden: it is one (Concatenation: "The Server MUST respond with the 403
            Forbidden status to PATCH requests against a final upload URL").
    """
    concat = tus.stored_concat(transfer.tus_metadata)
    if concat is not None and concat.final:
        raise Forbidden("a final upload is made of its partial uploads and takes no PATCH")


def concat_header(transfer: Transfer) -> dict[str, str]:
    """The Upload-Concat header of a HEAD answer, if the upload is partial or final."""
    concat = tus.stored_concat(transfer.tus_metadata)
    return {} if concat is None else {"Upload-Concat": tus.format_upload_concat(concat)}


def creation_link(server: FileServer, client_carrier: str) -> LinkConfig:
    """The link a client of ``client_carrier`` creates its partial and final uploads on."""
    return server.meters.config(choose_link(server.meters.loads(), client_carrier).name)


async def _whole_partials(
    server: FileServer, sender: str, partial_ids: Sequence[str], *, locked: bool
) -> list[Transfer]:
    """The partial uploads ``partial_ids`` of ``sender``, each whole, their sum not too large.

    Args:
        locked: the caller holds the partial uploads' locks.
    """
    partials = [
        await _own_partial(server, sender, position, upload_id)
        for position, upload_id in enumerate(partial_ids, start=1)
    ]
    total = sum(p.size for p in partials)
    limit = server.config.limits.max_file_size
    if total > limit:
        raise PayloadTooLarge(
            f"the partial uploads add up to {total} bytes, above the limit of {limit}",
            headers={"Tus-Max-Size": str(limit)},
        )
    for position, partial in enumerate(partials, start=1):
        offset = await uploads.current_offset(server, partial, locked=locked)
        if offset < partial.size:
            raise Conflict(
                f"partial upload {position} ({partial.id}) holds {offset} of its"
                f" {partial.size} bytes: send the rest before creating the final upload"
            )
    return partials


async def _own_partial(server: FileServer, sender: str, position: int, upload_id: str) -> Transfer:
    """Partial upload number ``position`` of a final upload's list, if it is ``sender``'s."""
    unknown = f"partial upload {position} of Upload-Concat: no such upload"
    try:
        region = parse_file_id(upload_id).region
    except NotFound:
        raise NotFound(unknown) from None
    if region != server.region.name:
        raise NotFound(unknown)
    transfer = await server.transfers.get(upload_id)
    if transfer is None:
        refusal = await retention.refusal_for_missing(server, upload_id, sender, unknown)
        if isinstance(refusal, Gone):
            raise Gone(
                f"partial upload {position} ({upload_id}) expired, was deleted or was"
                " already used by a final upload"
            )
        raise refusal
    if transfer.sender != sender:
        raise NotFound(unknown)
    if not uploads.is_partial(transfer):
        raise BadRequest(
            f"upload {position} of Upload-Concat ({upload_id}) is not a partial upload:"
            " create those with Upload-Concat: partial"
        )
    if transfer.expires_at < time.time():
        raise Gone(f"partial upload {position} ({upload_id}) has expired")
    return transfer
