"""The file server's background work: heartbeats, inbox changes, expiry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from typing import Final

from geodrop.errors import GeodropError
from geodrop.fileserver import retention
from geodrop.fileserver.context import FileServer

logger = logging.getLogger(__name__)

HEARTBEAT_PATH: Final = "/v1/peer/heartbeat"
INBOX_ENTRIES_PATH: Final = "/v1/peer/inbox/entries"
# Announcements per request to the directory (its MAX_ANNOUNCEMENTS allows 25).
ANNOUNCE_BATCH: Final = 25
INBOX_REMOVE_PATH: Final = "/v1/peer/inbox/remove"
ANNOUNCE_RETRY_SECONDS: Final = 2.0
# How often the directory is told what may have been missed; limits.sweep_interval_seconds
# (same default) says how often expired transfers are looked for.
SWEEP_SECONDS: Final = 30.0
# How often access units sharing a region exchange link figures, at most; figures older
# than this many intervals belong to a unit that stopped and are ignored.
LINK_SHARE_SECONDS: Final = 0.5
LINK_LOADS_FRESH_INTERVALS: Final = 4


async def heartbeats(server: FileServer) -> None:
    """Tell the directory, every interval, that this region lives and how loaded its links are."""
    url = server.config.directory.url + HEARTBEAT_PATH
    failing = False
    while True:
        payload = {
            "region": server.region.name,
            "links": [asdict(report) for report in server.meters.reports()],
        }
        try:
            await server.peers.call("POST", url, payload)
            if failing:
                logger.info("directory reachable again")
            failing = False
        except GeodropError as exc:
            if not failing:
                logger.warning("heartbeat to the directory failed: %s", exc.message)
            failing = True
        await asyncio.sleep(server.config.heartbeat_interval_seconds)


async def announce_pending(server: FileServer) -> int:
    """Put every completed, not yet announced file into its receivers' inboxes.

    Up to :data:`ANNOUNCE_BATCH` entries go in one request, which the directory stores in
    one transaction; they are marked announced only once it has acknowledged them.

    Returns:
        How many announcements the directory acknowledged.
    """
    url = server.config.directory.url + INBOX_ENTRIES_PATH
    done = 0
    while pending := await server.transfers.unannounced(ANNOUNCE_BATCH):
        entries = [
            {
                "receiver": receiver,
                "file_id": transfer.id,
                "sender": transfer.sender,
                "filename": transfer.filename,
                "size": transfer.size,
                "sha256": transfer.sha256,
                "region": server.region.name,
                "created_at": transfer.completed_at,
            }
            for transfer, receiver in pending
        ]
        await server.peers.call("POST", url, {"entries": entries})
        await server.transfers.mark_announced_many(
            [(transfer.id, receiver) for transfer, receiver in pending]
        )
        done += len(pending)
        if len(pending) < ANNOUNCE_BATCH:
            break
    return done


async def withdraw_pending(server: FileServer) -> int:
    """Have the directory remove every inbox entry of each retired file not yet withdrawn.

    Returns:
        How many files' entries the directory acknowledged removing.
    """
    url = server.config.directory.url + INBOX_REMOVE_PATH
    done = 0
    for file_id in await server.transfers.pending_inbox_removals():
        await server.peers.call("POST", url, {"file_id": file_id})
        await server.transfers.mark_inbox_removed(file_id)
        done += 1
    return done


async def tell_directory(server: FileServer) -> int:
    """Send the directory every pending inbox change: new entries, then removals.

    In that order, from this one loop: a removal queued while an entry of the same file
    was being announced is sent after it, so no entry outlives its file.

    Returns:
        How many changes the directory acknowledged.
    """
    return await announce_pending(server) + await withdraw_pending(server)


async def announcements(server: FileServer) -> None:
    """Deliver inbox changes as uploads complete or files go; retry until the directory has all.

    Completion and retirement are recorded durably before anything else is done, so a
    change survives a crash of this process or an outage of the directory.
    """
    while True:
        server.announce_wakeup.clear()
        try:
            await tell_directory(server)
            timeout = None
        except GeodropError as exc:
            logger.warning("inbox announcement failed, will retry: %s", exc.message)
            timeout = ANNOUNCE_RETRY_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.announce_wakeup.wait(), timeout or SWEEP_SECONDS)


async def expiry(server: FileServer) -> None:
    """Delete, data and metadata, every transfer past its upload expiry or retention.

    Of several access units sharing the region's metadata, one sweeps at a time.
    (Inbox announcements, by contrast, go out from whichever unit completed the upload:
    the directory takes them idempotently, and waiting for another unit would delay them.)
    """
    while True:
        async with server.transfers.try_exclusive("expiry") as mine:
            if mine:
                await retention.sweep(server, time.time())
        await asyncio.sleep(server.config.limits.sweep_interval_seconds)


async def link_load_sharing(server: FileServer) -> None:
    """Publish this unit's link figures and take in the other units' ones, several times a
    heartbeat, so every access unit of the region chooses links by the region's load."""
    interval = min(LINK_SHARE_SECONDS, server.config.heartbeat_interval_seconds)
    while True:
        now = time.time()
        await server.transfers.publish_link_loads(server.unit, server.meters.own_loads(), now)
        others = await server.transfers.other_units_link_loads(
            server.unit, now - LINK_LOADS_FRESH_INTERVALS * interval
        )
        server.meters.set_other_units(others)
        await asyncio.sleep(interval)
