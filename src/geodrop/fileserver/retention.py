"""Retention: how long a region keeps a transfer, and what is left of it afterwards.

- An unfinished upload expires ``limits.upload_expiry_seconds`` after its creation
  (tus expiration: HEAD and PATCH answers carry ``Upload-Expires``).
- A completed file is kept at most ``limits.retention_seconds`` after completion.
  Once every receiver has downloaded it whole, or ``limits.max_downloads`` complete
  downloads were counted, it goes ``limits.received_grace_seconds`` later.
- Expiry really deletes. The janitor (:func:`sweep`) deletes the data first, then
  replaces the metadata by a tombstone that says only who sent to whom, so the
  sender and receivers hear "expired" (410) rather than "not found" for
  :data:`TOMBSTONE_SECONDS`; then the tombstone goes too. Anyone else hears the same
  404 as for an id that never existed.
- The directory is told to drop the file's inbox entries, and told again until it
  acknowledges (``background.tell_directory``, with the inbox announcements).
"""

from __future__ import annotations

import logging
from typing import Final

from geodrop.errors import GeodropError, Gone, Locked, NotFound
from geodrop.fileserver.context import FileServer
from geodrop.metadata.base import Transfer, TransferState

logger = logging.getLogger(__name__)

# How long the sender and receivers of a retired transfer still hear 410 instead of 404.
TOMBSTONE_SECONDS: Final = 30 * 24 * 3600
# Expired transfers retired per store query; a sweep queries until none are left.
SWEEP_BATCH: Final = 100


async def refusal_for_missing(
    server: FileServer, transfer_id: str, user: str | None, not_found: str
) -> GeodropError:
    """The answer for a transfer this region does not hold (any more).

    Args:
        transfer_id: a well-formed id of this region.
        user: who asks; None when the request carries a valid signed URL for the id,
            which only its sender or receivers were ever given.
        not_found: the message of the 404, the same as for an id that never existed.

    Returns:
        Gone for the sender or a receiver of a retired transfer, else NotFound.
    """
    tombstone = await server.transfers.tombstone(transfer_id)
    if tombstone is not None and (user is None or tombstone.may_access(user)):
        return Gone("this file has expired and was deleted")
    return NotFound(not_found)


def check_downloads_left(server: FileServer, transfer: Transfer) -> None:
    """Refuse a download of a file that has had its ``limits.max_downloads``.

    Raises:
        Gone: the limit is set and reached; the file goes after the grace period.
    """
    limit = server.config.limits.max_downloads
    if limit and transfer.downloads >= limit:
        raise Gone(f"this file has been downloaded {limit} times, its limit; it has expired")


async def record_download(server: FileServer, transfer: Transfer, user: str, now: float) -> None:
    """Count a complete download; the file's end comes nearer once every receiver has it.

    The sender's own downloads are not counted: checking one's upload must not use up
    a receiver's download.
    """
    if user not in transfer.receivers:
        return
    limits = server.config.limits
    updated = await server.transfers.mark_received(
        transfer.id,
        user,
        now,
        grace_seconds=limits.received_grace_seconds,
        max_downloads=limits.max_downloads,
    )
    if updated is not None and updated.expires_at < transfer.expires_at:
        logger.info(
            "file %s delivered: it expires in %.0f s", transfer.id, updated.expires_at - now
        )


async def retire(server: FileServer, transfer: Transfer, now: float) -> None:
    """Delete a transfer's data, then leave only its tombstone.

    The caller holds the transfer's upload lock. Data goes first: a crash in between
    leaves the expired record, and the next sweep finishes the job.
    """
    await server.store.delete_upload(transfer.id)
    await server.store.delete_file(transfer.id)
    await server.transfers.retire(transfer.id, now)
    if transfer.state is TransferState.COMPLETE:
        server.announce_wakeup.set()  # its inbox entries are to be removed


async def sweep(server: FileServer, now: float) -> int:
    """Retire every transfer past its expiry; forget tombstones past theirs.

    A transfer a request is still writing is left for the next sweep.

    Returns:
        How many transfers were retired.
    """
    retired = 0
    passed: set[str] = set()
    while True:
        batch = [t for t in await server.transfers.expired(now, SWEEP_BATCH) if t.id not in passed]
        if not batch:
            break
        for transfer in batch:
            passed.add(transfer.id)
            try:
                async with server.transfers.upload_lock(transfer.id):
                    # Under the lock: a PATCH may have completed it in the meantime.
                    current = await server.transfers.get(transfer.id)
                    if current is None or current.expires_at >= now:
                        continue
                    await retire(server, current, now)
            except Locked:
                continue
            retired += 1
            logger.info("transfer %s expired: data deleted, tombstone kept", transfer.id)
    forgotten = await server.transfers.forget_tombstones(now - TOMBSTONE_SECONDS)
    if forgotten:
        logger.info("%d tombstones forgotten", forgotten)
    return retired
