"""Inboxes: entries added by file servers, read (and waited on) by receivers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from geodrop.errors import BadRequest, NotFound
from geodrop.metadata.base import ANY_RECEIVER, InboxEntry, InboxStore
from geodrop.protocol import usertokens
from geodrop.protocol.fileid import parse_file_id

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS: Final = 60.0
PAGE_SIZE: Final = 100
# The most announcements one ``POST /v1/peer/inbox/entries`` may carry: at the longest
# file names that is still well inside the directory's 64 KiB request limit.
MAX_ANNOUNCEMENTS: Final = 25


class Inboxes:
    """The inbox service: durable entries, and wake-ups for receivers waiting on them.

    Waiters are woken by the store's notifications (:meth:`listen`), so an entry that a
    file server announced to another directory process sharing the store wakes them too.
    """

    def __init__(self, store: InboxStore) -> None:
        self.store = store
        # Per receiver, one event for each request waiting on that receiver's inbox.
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self.closing = False

    def changed(self, receiver: str) -> None:
        """Wake every request waiting on ``receiver``'s inbox (``ANY_RECEIVER``: on any)."""
        if receiver == ANY_RECEIVER:
            groups = list(self._waiting.values())
        else:
            groups = [self._waiting.get(receiver, set())]
        for events in groups:
            for event in events:
                event.set()

    async def listen(self) -> None:
        """Wake waiters whenever any process adds an entry; runs until cancelled."""
        try:
            await self.store.listen(self.changed)
        except Exception:
            logger.exception("inbox notifications stopped: only this process's adds wake waiters")
            raise

    async def close_waiters(self) -> None:
        """Release every waiting receiver at once (the directory is shutting down)."""
        self.closing = True
        self.changed(ANY_RECEIVER)

    async def add(self, entry: InboxEntry) -> InboxEntry:
        return (await self.add_many([entry]))[0]

    async def add_many(self, entries: Sequence[InboxEntry]) -> list[InboxEntry]:
        """Add entries durably, in one transaction, and wake their receivers' waiters."""
        stored = await self.store.add_many(entries)
        # At once, without waiting for the store's notification to come round.
        for receiver in dict.fromkeys(entry.receiver for entry in stored):
            self.changed(receiver)
        return stored

    async def remove(self, file_id: str) -> None:
        """Drop every entry of a file that expired or was deleted."""
        await self.store.remove(file_id)

    async def wait_for_entries(
        self, receiver: str, after: int, wait_seconds: float
    ) -> list[InboxEntry]:
        """Entries after ``after``; if none, wait up to ``wait_seconds`` for one (long-poll)."""
        deadline = time.monotonic() + min(wait_seconds, MAX_WAIT_SECONDS)
        woken = asyncio.Event()
        waiters = self._waiting.setdefault(receiver, set())
        waiters.add(woken)
        try:
            while True:
                # Cleared before reading: an entry added while the read runs wakes the
                # wait that follows it.
                woken.clear()
                entries = await self.store.list(receiver, after, PAGE_SIZE)
                remaining = deadline - time.monotonic()
                if entries or remaining <= 0 or self.closing:
                    return entries
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), remaining)
        finally:
            waiters.discard(woken)
            if not waiters and self._waiting.get(receiver) is waiters:
                del self._waiting[receiver]


def entry_json(entry: InboxEntry) -> dict[str, Any]:
    return {
        "cursor": entry.cursor,
        "file_id": entry.file_id,
        "sender": entry.sender,
        "name": entry.filename,
        "size": entry.size,
        "sha256": entry.sha256,
        "region": entry.region,
        "created_at": entry.created_at,
    }


def parse_file_reference(body: dict[str, Any], regions: tuple[str, ...]) -> tuple[str, str]:
    """``(file_id, owning region)`` named by a file server's announcement or removal.

    Raises:
        BadRequest: ``file_id`` is missing or not a file id of this cluster.
    """
    file_id = body.get("file_id")
    if not isinstance(file_id, str):
        raise BadRequest("file_id: required")
    try:
        region = parse_file_id(file_id).region
    except NotFound:
        raise BadRequest("file_id: not a file id") from None
    if region not in regions:
        raise BadRequest("file_id: not a file of this cluster's regions")
    return file_id, region


def parse_entry(body: dict[str, Any], regions: tuple[str, ...]) -> InboxEntry:
    """An inbox entry from a file server's announcement.

    Raises:
        BadRequest: a field is missing or malformed.
    """
    receiver, sender = body.get("receiver"), body.get("sender")
    for key, user in (("receiver", receiver), ("sender", sender)):
        if not isinstance(user, str) or not usertokens.USER_ID.match(user):
            raise BadRequest(f"{key}: not a valid user id")
    file_id, region = parse_file_reference(body, regions)
    if body.get("region") != region:
        raise BadRequest("region: must be the file's owning region")
    filename, size, sha256 = body.get("filename"), body.get("size"), body.get("sha256")
    if not isinstance(filename, str) or not isinstance(size, int) or not isinstance(sha256, str):
        raise BadRequest("filename, size and sha256 are required")
    created_at = body.get("created_at")
    return InboxEntry(
        cursor=0,
        receiver=str(receiver),
        file_id=file_id,
        sender=str(sender),
        filename=filename,
        size=size,
        sha256=sha256,
        region=region,
        created_at=float(created_at) if isinstance(created_at, int | float) else time.time(),
    )
