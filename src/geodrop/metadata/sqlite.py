"""SQLite metadata (the embedded default).

One connection per store, used from one worker thread so the event loop never
waits on disk; WAL with ``synchronous=FULL`` so that a transaction that
returned is on disk: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, TypeVar

from geodrop.errors import Locked
from geodrop.metadata.base import (
    Delivery,
    InboxEntry,
    InboxStore,
    Transfer,
    TransferState,
    TransferStore,
    Usage,
)

T = TypeVar("T")

LOCK_WAIT_SECONDS: Final = 5.0

_TRANSFER_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    completed_at REAL,
    content_type TEXT NOT NULL,
    tus_metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    transfer_id TEXT NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
    receiver TEXT NOT NULL,
    position INTEGER NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0,
    received_at REAL,
    PRIMARY KEY (transfer_id, receiver)
);
CREATE INDEX IF NOT EXISTS transfers_expiry ON transfers(expires_at);
CREATE INDEX IF NOT EXISTS transfers_sender ON transfers(sender, created_at);
CREATE INDEX IF NOT EXISTS deliveries_unannounced ON deliveries(announced, transfer_id);
"""

_INBOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS inbox (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    file_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    region TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (file_id, receiver)
);
CREATE INDEX IF NOT EXISTS inbox_receiver ON inbox(receiver, cursor);
"""


class _Database:
    """One SQLite connection, driven from a single worker thread."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._path = path
        self._schema = schema
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.executescript(self._schema)
        return connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._connection is None:
                self._connection = self._connect()
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def _transfer(row: sqlite3.Row, receivers: list[str]) -> Transfer:
    return Transfer(
        id=row["id"],
        sender=row["sender"],
        receivers=tuple(receivers),
        filename=row["filename"],
        size=row["size"],
        sha256=row["sha256"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        state=TransferState(row["state"]),
        completed_at=row["completed_at"],
        content_type=row["content_type"],
        tus_metadata=json.loads(row["tus_metadata"]),
    )


def _load(connection: sqlite3.Connection, transfer_id: str) -> Transfer | None:
    row = connection.execute("SELECT * FROM transfers WHERE id = ?", (transfer_id,)).fetchone()
    if row is None:
        return None
    receivers = [
        r["receiver"]
        for r in connection.execute(
            "SELECT receiver FROM deliveries WHERE transfer_id = ? ORDER BY position",
            (transfer_id,),
        )
    ]
    return _transfer(row, receivers)


class SqliteTransferStore(TransferStore):
    """A region's transfers in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(path, _TRANSFER_SCHEMA)
        # One process owns an SQLite region, so its upload locks live here.
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}  # holders and waiters of each lock

    async def create(self, transfer: Transfer) -> None:
        def insert(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO transfers (id, sender, filename, size, sha256, created_at,"
                " expires_at, state, completed_at, content_type, tus_metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    transfer.id,
                    transfer.sender,
                    transfer.filename,
                    transfer.size,
                    transfer.sha256,
                    transfer.created_at,
                    transfer.expires_at,
                    transfer.state.value,
                    transfer.completed_at,
                    transfer.content_type,
                    json.dumps(dict(transfer.tus_metadata)),
                ),
            )
            c.executemany(
                "INSERT INTO deliveries (transfer_id, receiver, position) VALUES (?, ?, ?)",
                [(transfer.id, r, i) for i, r in enumerate(transfer.receivers)],
            )

        await self._db.run(insert)

    async def get(self, transfer_id: str) -> Transfer | None:
        return await self._db.run(lambda c: _load(c, transfer_id))

    async def complete(
        self, transfer_id: str, sha256: str, now: float, expires_at: float
    ) -> Transfer:
        def complete(c: sqlite3.Connection) -> Transfer:
            c.execute(
                "UPDATE transfers SET state = ?, sha256 = ?, completed_at = ?, expires_at = ?"
                " WHERE id = ?",
                (TransferState.COMPLETE.value, sha256, now, expires_at, transfer_id),
            )
            transfer = _load(c, transfer_id)
            if transfer is None:
                raise KeyError(transfer_id)
            return transfer

        return await self._db.run(complete)

    async def delete(self, transfer_id: str) -> None:
        await self._db.run(
            lambda c: c.execute("DELETE FROM transfers WHERE id = ?", (transfer_id,))
        )

    async def deliveries(self, transfer_id: str) -> list[Delivery]:
        def select(c: sqlite3.Connection) -> list[Delivery]:
            rows = c.execute(
                "SELECT * FROM deliveries WHERE transfer_id = ? ORDER BY position", (transfer_id,)
            )
            return [
                Delivery(r["transfer_id"], r["receiver"], bool(r["announced"]), r["received_at"])
                for r in rows
            ]

        return await self._db.run(select)

    async def unannounced(self, limit: int = 100) -> list[tuple[Transfer, str]]:
        def select(c: sqlite3.Connection) -> list[tuple[Transfer, str]]:
            rows = c.execute(
                "SELECT d.transfer_id, d.receiver FROM deliveries d"
                " JOIN transfers t ON t.id = d.transfer_id"
                " WHERE d.announced = 0 AND t.state = ? LIMIT ?",
                (TransferState.COMPLETE.value, limit),
            ).fetchall()
            out = []
            for row in rows:
                transfer = _load(c, row["transfer_id"])
                if transfer is not None:
                    out.append((transfer, row["receiver"]))
            return out

        return await self._db.run(select)

    async def mark_announced(self, transfer_id: str, receiver: str) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE deliveries SET announced = 1 WHERE transfer_id = ? AND receiver = ?",
                (transfer_id, receiver),
            )
        )

    async def mark_received(self, transfer_id: str, receiver: str, now: float) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE deliveries SET received_at = COALESCE(received_at, ?)"
                " WHERE transfer_id = ? AND receiver = ?",
                (now, transfer_id, receiver),
            )
        )

    async def expired(self, now: float, limit: int = 100) -> list[Transfer]:
        def select(c: sqlite3.Connection) -> list[Transfer]:
            ids = [
                r["id"]
                for r in c.execute(
                    "SELECT id FROM transfers WHERE expires_at < ? LIMIT ?", (now, limit)
                )
            ]
            return [t for t in (_load(c, i) for i in ids) if t is not None]

        return await self._db.run(select)

    async def usage(self, sender: str, since: float) -> Usage:
        def select(c: sqlite3.Connection) -> Usage:
            row = c.execute(
                "SELECT COALESCE(SUM(size), 0) AS held,"
                " COALESCE(SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END), 0) AS recent"
                " FROM transfers WHERE sender = ?",
                (since, sender),
            ).fetchone()
            return Usage(int(row["held"]), int(row["recent"]))

        return await self._db.run(select)

    @asynccontextmanager
    async def upload_lock(self, transfer_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(transfer_id, asyncio.Lock())
        # The lock may only be forgotten once nobody holds or awaits it: right after a
        # release, a woken waiter has not yet taken it, and a newcomer must queue on the
        # same lock rather than make a second one.
        self._lock_users[transfer_id] = self._lock_users.get(transfer_id, 0) + 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), LOCK_WAIT_SECONDS)
            except TimeoutError:
                raise Locked("another request is writing this upload; retry shortly") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._lock_users[transfer_id] -= 1
            if not self._lock_users[transfer_id]:
                del self._lock_users[transfer_id]
                del self._locks[transfer_id]

    async def close(self) -> None:
        await self._db.close()


def _entry(row: sqlite3.Row) -> InboxEntry:
    return InboxEntry(
        cursor=row["cursor"],
        receiver=row["receiver"],
        file_id=row["file_id"],
        sender=row["sender"],
        filename=row["filename"],
        size=row["size"],
        sha256=row["sha256"],
        region=row["region"],
        created_at=row["created_at"],
    )


class SqliteInboxStore(InboxStore):
    """The directory's inboxes in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(path, _INBOX_SCHEMA)

    async def add(self, entry: InboxEntry) -> InboxEntry:
        def insert(c: sqlite3.Connection) -> InboxEntry:
            c.execute(
                "INSERT OR IGNORE INTO inbox (receiver, file_id, sender, filename, size, sha256,"
                " region, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.receiver,
                    entry.file_id,
                    entry.sender,
                    entry.filename,
                    entry.size,
                    entry.sha256,
                    entry.region,
                    entry.created_at,
                ),
            )
            row = c.execute(
                "SELECT * FROM inbox WHERE file_id = ? AND receiver = ?",
                (entry.file_id, entry.receiver),
            ).fetchone()
            return _entry(row)

        return await self._db.run(insert)

    async def list(self, receiver: str, after: int, limit: int) -> list[InboxEntry]:
        def select(c: sqlite3.Connection) -> list[InboxEntry]:
            rows = c.execute(
                "SELECT * FROM inbox WHERE receiver = ? AND cursor > ? ORDER BY cursor LIMIT ?",
                (receiver, after, limit),
            )
            return [_entry(r) for r in rows]

        return await self._db.run(select)

    async def remove(self, file_id: str) -> None:
        await self._db.run(lambda c: c.execute("DELETE FROM inbox WHERE file_id = ?", (file_id,)))

    async def close(self) -> None:
        await self._db.close()
