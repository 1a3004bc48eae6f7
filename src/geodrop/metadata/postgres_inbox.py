"""The directory's inboxes and region heartbeats in PostgreSQL, shared by directory processes.

Same behaviour as :class:`~geodrop.metadata.sqlite.SqliteInboxStore`, plus what only
matters with several processes: an entry added by one process wakes the receivers waiting
on every other (``NOTIFY``), and every process sees every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import asyncpg

from geodrop.metadata.base import ANY_RECEIVER, InboxEntry, InboxStore, RegionBeat
from geodrop.metadata.postgres import CONNECTION_ERRORS, PostgresDatabase
from geodrop.metadata.postgres_schema import INBOX_MIGRATIONS
from geodrop.metadata.rows import inbox_entry_from_row

logger = logging.getLogger(__name__)

# The notification channel; its payload is the receiver an entry was added for.
CHANNEL: Final = "geodrop_inbox"
# Waits before connecting again after the listening connection was lost: from the
# first figure, doubling up to the second.
RECONNECT_FIRST_SECONDS: Final = 0.1
RECONNECT_MOST_SECONDS: Final = 5.0
# A listening connection that has said nothing for this long is asked whether it still
# lives (a broken network may never tell).
PING_SECONDS: Final = 10.0
# Advisory transaction locks of inbox adds, one per receiver (see :meth:`add`).
_INBOX_ADD_LOCKS: Final = 0x6764_0101


def _entry(row: asyncpg.Record) -> InboxEntry:
    return inbox_entry_from_row(row)


class PostgresInboxStore(InboxStore):
    """The directory's inboxes in PostgreSQL.

    Args:
        dsn: the database's ``postgresql://`` URL.
        pool_size: the most pooled connections this process opens (:meth:`listen` uses
            one more of its own).
    """

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self._db = PostgresDatabase(dsn, pool_size, "inbox", INBOX_MIGRATIONS)

    async def add_many(self, entries: Sequence[InboxEntry]) -> list[InboxEntry]:
        stored = []
        async with self._db.transaction() as c:
            # Cursors come from a sequence, in the order adds *start*; a reader must never
            # see cursor 7 committed while 6 is still to come, or it would skip 6 for
            # good. Adds for one receiver therefore take turns (until commit), so that
            # each receiver's cursors become visible in order. The locks are taken in
            # one order, so two batches naming the same receivers cannot deadlock.
            receivers = sorted({entry.receiver for entry in entries})
            for receiver in receivers:
                await c.execute(
                    "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))",
                    _INBOX_ADD_LOCKS,
                    receiver,
                )
            for entry in entries:
                await c.execute(
                    "INSERT INTO inbox (receiver, file_id, sender, filename, size, sha256,"
                    " region, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (file_id, receiver) DO NOTHING",
                    entry.receiver,
                    entry.file_id,
                    entry.sender,
                    entry.filename,
                    entry.size,
                    entry.sha256,
                    entry.region,
                    entry.created_at,
                )
                row = await c.fetchrow(
                    "SELECT * FROM inbox WHERE file_id = $1 AND receiver = $2",
                    entry.file_id,
                    entry.receiver,
                )
                assert row is not None  # inserted, or already there, in this transaction
                stored.append(_entry(row))
            # Delivered to every listener when (and only if) the transaction commits.
            for receiver in receivers:
                await c.execute("SELECT pg_notify($1, $2)", CHANNEL, receiver)
        return stored

    async def list(self, receiver: str, after: int, limit: int) -> list[InboxEntry]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                "SELECT * FROM inbox WHERE receiver = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                receiver,
                after,
                limit,
            )
        return [_entry(row) for row in rows]

    async def remove(self, file_id: str) -> None:
        async with self._db.connection() as c:
            await c.execute("DELETE FROM inbox WHERE file_id = $1", file_id)

    async def listen(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(receiver)`` for every entry any process adds; runs until cancelled.

        A connection of its own ``LISTEN``s. When it is lost (the server restarted, the
        network broke) it is opened again after a short, growing pause; notifications
        sent meanwhile are lost, so each time it listens again it calls
        ``changed(ANY_RECEIVER)`` for every waiter to look again.
        """
        pause = RECONNECT_FIRST_SECONDS
        while True:
            try:
                await self._listen_once(changed)
                pause = RECONNECT_FIRST_SECONDS  # it listened, then was lost: retry soon
            except (*CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:
                logger.warning("inbox notifications: %s; listening again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_MOST_SECONDS)

    async def _listen_once(self, changed: Callable[[str], None]) -> None:
        """Listen on one connection until it is lost."""
        connection = await self._db.connect()
        lost = asyncio.Event()

        def notified(_connection: Any, _pid: int, _channel: str, payload: object) -> None:
            changed(str(payload))

        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(CHANNEL, notified)
            changed(ANY_RECEIVER)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=PING_SECONDS)
            logger.warning("inbox notifications: connection lost")
        finally:
            connection.terminate()

    async def record_heartbeat(
        self, region: str, links: Sequence[dict[str, object]], now: float
    ) -> None:
        async with self._db.connection() as c:
            await c.execute(
                "INSERT INTO region_heartbeats (region, last_beat, beats, links)"
                " VALUES ($1, $2, 1, $3::jsonb) ON CONFLICT (region) DO UPDATE SET"
                " last_beat = EXCLUDED.last_beat, beats = region_heartbeats.beats + 1,"
                " links = EXCLUDED.links",
                region,
                now,
                json.dumps(list(links)),
            )

    async def heartbeats(self) -> Sequence[RegionBeat]:
        async with self._db.connection() as c:
            rows = await c.fetch("SELECT * FROM region_heartbeats ORDER BY region")
        return [
            RegionBeat(row["region"], row["last_beat"], row["beats"], json.loads(row["links"]))
            for row in rows
        ]

    async def close(self) -> None:
        await self._db.close()
