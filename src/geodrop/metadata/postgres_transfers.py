"""A region's transfers in PostgreSQL, shared by every access unit of the region.

Same behaviour as :class:`~geodrop.metadata.sqlite.SqliteTransferStore`. SQLite runs one
writer at a time; here a read-modify-write first locks the transfer's row
(``SELECT … FOR UPDATE``), so that two access units changing one transfer at once take
turns exactly as SQLite's transactions would. Locks hold across processes (advisory
locks, :class:`~geodrop.metadata.postgres.AdvisoryLocks`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final

import asyncpg

from geodrop.errors import Locked
from geodrop.metadata.base import (
    Delivery,
    Tombstone,
    Transfer,
    TransferState,
    TransferStore,
    UnitLinkLoad,
    Usage,
)
from geodrop.metadata.postgres import (
    JOB_LOCKS,
    SENDER_LOCKS,
    UPLOAD_LOCKS,
    AdvisoryLocks,
    Connection,
    LockWaitExpired,
    PostgresDatabase,
)
from geodrop.metadata.postgres_schema import TRANSFER_MIGRATIONS
from geodrop.metadata.rows import (
    TRANSFER_COLUMNS,
    transfer_from_row,
    transfer_values,
    usage_from_row,
    usage_query,
    usage_window,
)

_USAGE_SQL: Final = usage_query(sender="$1", since="$2", first_full_hour="$3", boundary_end="$4")

# A transfer and its deliveries, in one statement ($12: the receivers, in order). The
# deliveries' foreign key is checked at the statement's end, when the transfer is there.
_INSERT_SQL: Final = (
    f"WITH t AS (INSERT INTO transfers ({TRANSFER_COLUMNS})"  # noqa: S608 (constants)
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb) RETURNING id)"
    " INSERT INTO deliveries (transfer_id, receiver, position)"
    " SELECT t.id, r.receiver, r.n - 1"
    " FROM t, unnest($12::text[]) WITH ORDINALITY AS r(receiver, n)"
)

# As SQLite's: how long a request waits for an upload another request is writing.
LOCK_WAIT_SECONDS: Final = 5.0

# A transfer with its receivers in order, in one statement.
_SELECT_TRANSFERS: Final = (
    "SELECT t.*, ARRAY(SELECT d.receiver FROM deliveries d WHERE d.transfer_id = t.id"
    " ORDER BY d.position) AS receivers FROM transfers t"
)


def _transfer(row: asyncpg.Record) -> Transfer:
    return transfer_from_row(row, row["receivers"])


def _tombstone(row: asyncpg.Record) -> Tombstone:
    return Tombstone(
        id=row["id"],
        sender=row["sender"],
        receivers=tuple(row["receivers"]),
        created_at=row["created_at"],
        expired_at=row["expired_at"],
    )


async def _load(c: Connection, transfer_id: str, *, for_update: bool = False) -> Transfer | None:
    lock = " FOR UPDATE OF t" if for_update else ""
    row = await c.fetchrow(f"{_SELECT_TRANSFERS} WHERE t.id = $1{lock}", transfer_id)
    return None if row is None else _transfer(row)


async def _usage(c: Connection, sender: str, since: float) -> Usage:
    window = usage_window(since)
    row = await c.fetchrow(
        _USAGE_SQL, sender, window.since, window.first_full_hour, window.boundary_end
    )
    assert row is not None  # scalar sub-queries always answer one row
    return usage_from_row(row)


async def _load_tombstone(c: Connection, transfer_id: str) -> Tombstone | None:
    row = await c.fetchrow("SELECT * FROM tombstones WHERE id = $1", transfer_id)
    return None if row is None else _tombstone(row)


class PostgresTransferStore(TransferStore):
    """A region's transfers in PostgreSQL.

    Args:
        dsn: the database's ``postgresql://`` URL.
        pool_size: the most pooled connections this process opens (its advisory locks
            use one more connection of their own).
    """

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self._db = PostgresDatabase(dsn, pool_size, "transfers", TRANSFER_MIGRATIONS)
        self._locks = AdvisoryLocks(self._db)

    async def create(self, transfer: Transfer) -> None:
        async with self._db.connection() as c:
            await c.execute(_INSERT_SQL, *transfer_values(transfer), list(transfer.receivers))

    async def create_admitted(
        self, transfer: Transfer, admit: Callable[[Usage], None], since: float
    ) -> None:
        # One transaction holding the sender's lock as a transaction-scoped advisory lock
        # (the key of sender_lock, so the two exclude each other; the commit gives it
        # back): three statements on one pooled connection, where sender_lock's session
        # lock costs a lock and an unlock on a connection of its own around them.
        async with self._db.transaction() as c:
            await c.execute(
                "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))",
                SENDER_LOCKS,
                transfer.sender,
            )
            # A statement of its own after the lock: its snapshot sees every upload of
            # the sender that committed before the lock was granted.
            admit(await _usage(c, transfer.sender, since))
            await c.execute(_INSERT_SQL, *transfer_values(transfer), list(transfer.receivers))

    async def get(self, transfer_id: str) -> Transfer | None:
        async with self._db.connection() as c:
            return await _load(c, transfer_id)

    async def complete(
        self, transfer_id: str, sha256: str, now: float, expires_at: float
    ) -> Transfer:
        async with self._db.transaction() as c:
            await c.execute(
                "UPDATE transfers SET state = $1, sha256 = $2, completed_at = $3,"
                " expires_at = $4 WHERE id = $5",
                TransferState.COMPLETE.value,
                sha256,
                now,
                expires_at,
                transfer_id,
            )
            transfer = await _load(c, transfer_id)
        if transfer is None:
            raise KeyError(transfer_id)
        return transfer

    async def delete(self, transfer_id: str) -> None:
        async with self._db.connection() as c:
            await c.execute("DELETE FROM transfers WHERE id = $1", transfer_id)

    async def deliveries(self, transfer_id: str) -> list[Delivery]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                "SELECT * FROM deliveries WHERE transfer_id = $1 ORDER BY position", transfer_id
            )
        return [
            Delivery(r["transfer_id"], r["receiver"], r["announced"], r["received_at"])
            for r in rows
        ]

    async def unannounced(self, limit: int = 100) -> list[tuple[Transfer, str]]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                "SELECT t.*, d.receiver AS unannounced_receiver,"
                " ARRAY(SELECT e.receiver FROM deliveries e WHERE e.transfer_id = t.id"
                " ORDER BY e.position) AS receivers"
                " FROM deliveries d JOIN transfers t ON t.id = d.transfer_id"
                " WHERE NOT d.announced AND t.state = $1 LIMIT $2",
                TransferState.COMPLETE.value,
                limit,
            )
        return [(_transfer(row), row["unannounced_receiver"]) for row in rows]

    async def mark_announced_many(self, deliveries: Sequence[tuple[str, str]]) -> None:
        # Not durable: lost in a crash, the entries are announced again, and the inbox
        # keeps one of each.
        async with self._db.transaction(durable=False) as c:
            await c.executemany(
                "UPDATE deliveries SET announced = TRUE WHERE transfer_id = $1 AND receiver = $2",
                deliveries,
            )

    async def mark_received(
        self,
        transfer_id: str,
        receiver: str,
        now: float,
        *,
        grace_seconds: float,
        max_downloads: int = 0,
    ) -> Transfer | None:
        # A receipt no download limit depends on is not durable: lost in a crash, the file
        # waits out its retention instead of the grace after delivery.
        async with self._db.transaction(durable=max_downloads > 0) as c:
            # The transfer's row first: two last receivers finishing at once must not
            # each see the other still waiting.
            transfer = await _load(c, transfer_id, for_update=True)
            if transfer is None:
                return None
            received = await c.fetchval(
                "UPDATE deliveries SET received_at = COALESCE(received_at, $1)"
                " WHERE transfer_id = $2 AND receiver = $3 RETURNING TRUE",
                now,
                transfer_id,
                receiver,
            )
            if not received:
                return transfer
            downloads = await c.fetchval(
                "UPDATE transfers SET downloads = downloads + 1 WHERE id = $1 RETURNING downloads",
                transfer_id,
            )
            waiting = await c.fetchval(
                "SELECT COUNT(*) FROM deliveries WHERE transfer_id = $1 AND received_at IS NULL",
                transfer_id,
            )
            if waiting == 0 or 0 < max_downloads <= downloads:
                await c.execute(
                    "UPDATE transfers SET expires_at = LEAST(expires_at, $1) WHERE id = $2",
                    now + grace_seconds,
                    transfer_id,
                )
            return await _load(c, transfer_id)

    async def expired(self, now: float, limit: int = 100) -> list[Transfer]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                f"{_SELECT_TRANSFERS} WHERE t.expires_at < $1 LIMIT $2", now, limit
            )
        return [_transfer(row) for row in rows]

    async def retire(self, transfer_id: str, now: float) -> Tombstone | None:
        async with self._db.transaction() as c:
            # Locked first: a second retire waits, then finds only the tombstone.
            transfer = await _load(c, transfer_id, for_update=True)
            if transfer is None:
                return await _load_tombstone(c, transfer_id)
            await c.execute(
                "INSERT INTO tombstones"
                " (id, sender, receivers, created_at, expired_at, inbox_pending)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (id) DO UPDATE SET sender = EXCLUDED.sender,"
                " receivers = EXCLUDED.receivers, created_at = EXCLUDED.created_at,"
                " expired_at = EXCLUDED.expired_at, inbox_pending = EXCLUDED.inbox_pending",
                transfer.id,
                transfer.sender,
                list(transfer.receivers),
                transfer.created_at,
                now,
                # Even an entry not yet marked announced may be on its way.
                transfer.state is TransferState.COMPLETE,
            )
            await c.execute("DELETE FROM transfers WHERE id = $1", transfer_id)
            return await _load_tombstone(c, transfer_id)

    async def tombstone(self, transfer_id: str) -> Tombstone | None:
        async with self._db.connection() as c:
            return await _load_tombstone(c, transfer_id)

    async def pending_inbox_removals(self, limit: int = 100) -> list[str]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                "SELECT id FROM tombstones WHERE inbox_pending ORDER BY expired_at LIMIT $1",
                limit,
            )
        return [row["id"] for row in rows]

    async def mark_inbox_removed(self, transfer_id: str) -> None:
        async with self._db.connection() as c:
            await c.execute(
                "UPDATE tombstones SET inbox_pending = FALSE WHERE id = $1", transfer_id
            )

    async def forget_tombstones(self, expired_before: float, limit: int = 1000) -> int:
        async with self._db.connection() as c:
            deleted: int = await c.fetchval(
                "WITH gone AS (DELETE FROM tombstones WHERE id IN (SELECT id FROM tombstones"
                " WHERE expired_at < $1 AND NOT inbox_pending LIMIT $2) RETURNING 1)"
                " SELECT COUNT(*) FROM gone",
                expired_before,
                limit,
            )
        return deleted

    async def usage(self, sender: str, since: float) -> Usage:
        async with self._db.connection() as c:
            return await _usage(c, sender, since)

    async def bytes_stored(self) -> int:
        async with self._db.connection() as c:
            stored = await c.fetchval("SELECT COALESCE(SUM(size), 0)::BIGINT FROM transfers")
        return int(stored)

    @asynccontextmanager
    async def upload_lock(self, transfer_id: str) -> AsyncIterator[None]:
        try:
            async with self._locks.hold(UPLOAD_LOCKS, transfer_id, LOCK_WAIT_SECONDS):
                yield
        except LockWaitExpired:
            raise Locked("another request is writing this upload; retry shortly") from None

    @asynccontextmanager
    async def sender_lock(self, sender: str) -> AsyncIterator[None]:
        async with self._locks.hold(SENDER_LOCKS, sender, None):
            yield

    @asynccontextmanager
    async def try_exclusive(self, job: str) -> AsyncIterator[bool]:
        async with self._locks.try_hold(JOB_LOCKS, job) as mine:
            yield mine

    async def publish_link_loads(
        self, unit: str, loads: Sequence[UnitLinkLoad], now: float
    ) -> None:
        if not loads:
            return
        async with self._db.connection() as c:
            await c.execute(
                "INSERT INTO unit_link_loads (unit, link, active_transfers,"
                " rate_bytes_per_second, bytes_sent, bytes_received, published_at)"
                " SELECT $1, l.link, l.active, l.rate, l.sent, l.received, $7"
                " FROM unnest($2::text[], $3::int[], $4::float8[], $5::bigint[], $6::bigint[])"
                " AS l(link, active, rate, sent, received)"
                " ON CONFLICT (unit, link) DO UPDATE SET"
                " active_transfers = EXCLUDED.active_transfers,"
                " rate_bytes_per_second = EXCLUDED.rate_bytes_per_second,"
                " bytes_sent = EXCLUDED.bytes_sent, bytes_received = EXCLUDED.bytes_received,"
                " published_at = EXCLUDED.published_at",
                unit,
                [load.link for load in loads],
                [load.active_transfers for load in loads],
                [load.rate_bytes_per_second for load in loads],
                [load.bytes_sent for load in loads],
                [load.bytes_received for load in loads],
                now,
            )

    async def other_units_link_loads(self, unit: str, fresh_after: float) -> list[UnitLinkLoad]:
        async with self._db.connection() as c:
            rows = await c.fetch(
                "SELECT link, SUM(active_transfers)::BIGINT AS active,"
                " SUM(rate_bytes_per_second) AS rate, SUM(bytes_sent)::BIGINT AS sent,"
                " SUM(bytes_received)::BIGINT AS received"
                " FROM unit_link_loads WHERE unit <> $1 AND published_at > $2"
                " GROUP BY link ORDER BY link",
                unit,
                fresh_after,
            )
        return [
            UnitLinkLoad(row["link"], row["active"], row["rate"], row["sent"], row["received"])
            for row in rows
        ]

    async def close(self) -> None:
        await self._locks.close()
        await self._db.close()
