"""The file server's background work: heartbeats, inbox announcements, expiry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from typing import Final

from geodrop.errors import GeodropError
from geodrop.fileserver.context import FileServer
from geodrop.fileserver.uploads import terminate

logger = logging.getLogger(__name__)

HEARTBEAT_PATH: Final = "/v1/peer/heartbeat"
INBOX_PATH: Final = "/v1/peer/inbox"
ANNOUNCE_RETRY_SECONDS: Final = 2.0
SWEEP_SECONDS: Final = 30.0


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

    Returns:
        How many announcements the directory acknowledged.
    """
    url = server.config.directory.url + INBOX_PATH
    done = 0
    for transfer, receiver in await server.transfers.unannounced():
        await server.peers.call(
            "POST",
            url,
            {
                "receiver": receiver,
                "file_id": transfer.id,
                "sender": transfer.sender,
                "filename": transfer.filename,
                "size": transfer.size,
                "sha256": transfer.sha256,
                "region": server.region.name,
                "created_at": transfer.completed_at,
            },
        )
        await server.transfers.mark_announced(transfer.id, receiver)
        done += 1
    return done


async def announcements(server: FileServer) -> None:
    """Deliver inbox entries as uploads complete; retry until the directory has them all.

    Completion is recorded durably before the client is answered, so an entry
    survives a crash of this process or an outage of the directory.
    """
    while True:
        server.announce_wakeup.clear()
        try:
            await announce_pending(server)
            timeout = None
        except GeodropError as exc:
            logger.warning("inbox announcement failed, will retry: %s", exc.message)
            timeout = ANNOUNCE_RETRY_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.announce_wakeup.wait(), timeout or SWEEP_SECONDS)


async def expiry(server: FileServer) -> None:
    """Delete, data and metadata, every transfer past its upload expiry or retention."""
    while True:
        for transfer in await server.transfers.expired(time.time()):
            await terminate(server, transfer)
            logger.info("transfer %s expired and was deleted", transfer.id)
        await asyncio.sleep(SWEEP_SECONDS)
