"""SQLite metadata (the embedded default).

One connection per store, used from one worker thread so the event loop never
waits on disk; WAL with ``synchronous=FULL`` so that a transaction that
returned is on disk: nothing acknowledged is lost.

Two kinds of bookkeeping commit without waiting for the disk (``durable=False``, WAL's
``synchronous=NORMAL``): an announcement's "the inbox has it" marks and a download's
receipt where no download limit hangs on it. A machine crash may undo such a commit,
never the database's consistency; the next durable commit makes it durable too (it
syncs the same WAL, written in order), and losing one only means the inbox is told
twice (it keeps one entry) or a delivered file waits out its retention instead of the
grace after delivery. See :meth:`_Database.run`.

Schemas are versioned: a database records its version in ``PRAGMA user_version``
and is upgraded in place, one migration at a time, when a store opens it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from geodrop.errors import ConfigError, Locked
from geodrop.metadata.base import (
    Delivery,
    InboxEntry,
    InboxStore,
    RegionBeat,
    Tombstone,
    Transfer,
    TransferState,
    TransferStore,
    UnitLinkLoad,
    Usage,
)
from geodrop.metadata.locks import KeyedLocks
from geodrop.metadata.rows import (
    TRANSFER_COLUMNS,
    UPLOAD_COUNT_BUCKET_SECONDS,
    inbox_entry_from_row,
    transfer_from_row,
    transfer_values,
    usage_from_row,
    usage_query,
    usage_window,
)
from geodrop.metadata.sqlite_checkpoints import BACKSTOP_PAGES, WalCheckpointer

T = TypeVar("T")

LOCK_WAIT_SECONDS: Final = 5.0
# At most this many calls share one transaction (group commit, see _Database).
MAX_BATCH: Final = 64

# A migration is the statements that upgrade a database from the version before it.
# Version 0 is a new database, or one made before versions were recorded (which has
# version 1's tables: hence IF NOT EXISTS there). Never change a released migration;
# add the next one.
Migration = tuple[str, ...]

_USAGE_SQL: Final = usage_query(
    sender=":sender",
    since=":since",
    first_full_hour=":first_full_hour",
    boundary_end=":boundary_end",
)


def _usage(c: sqlite3.Connection, sender: str, since: float) -> Usage:
    window = usage_window(since)
    parameters = {
        "sender": sender,
        "since": window.since,
        "first_full_hour": window.first_full_hour,
        "boundary_end": window.boundary_end,
    }
    return usage_from_row(c.execute(_USAGE_SQL, parameters).fetchone())


# Trigger steps of migration 3: a sender's row follows their transfers' sizes (a sender
# holding nothing has no row).
_ADD_NEW_SIZE: Final = (
    "INSERT INTO sender_bytes (sender, bytes_held) VALUES (NEW.sender, NEW.size)"
    " ON CONFLICT (sender) DO UPDATE SET bytes_held = bytes_held + excluded.bytes_held"
)
_TAKE_OLD_SIZE: Final = (
    "UPDATE sender_bytes SET bytes_held = bytes_held - OLD.size WHERE sender = OLD.sender;"
    " DELETE FROM sender_bytes WHERE sender = OLD.sender AND bytes_held = 0"
)

_HOUR_OF_CREATED: Final = f"CAST(created_at / {UPLOAD_COUNT_BUCKET_SECONDS} AS INTEGER)"
_HOUR_OF_NEW: Final = f"CAST(NEW.created_at / {UPLOAD_COUNT_BUCKET_SECONDS} AS INTEGER)"

_TRANSFER_MIGRATIONS: Final[tuple[Migration, ...]] = (
    # 1: transfers and their deliveries.
    (
        """CREATE TABLE IF NOT EXISTS transfers (
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
        )""",
        """CREATE TABLE IF NOT EXISTS deliveries (
            transfer_id TEXT NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
            receiver TEXT NOT NULL,
            position INTEGER NOT NULL,
            announced INTEGER NOT NULL DEFAULT 0,
            received_at REAL,
            PRIMARY KEY (transfer_id, receiver)
        )""",
        "CREATE INDEX IF NOT EXISTS transfers_expiry ON transfers(expires_at)",
        "CREATE INDEX IF NOT EXISTS transfers_sender ON transfers(sender, created_at)",
        "CREATE INDEX IF NOT EXISTS deliveries_unannounced ON deliveries(announced, transfer_id)",
    ),
    # 2: retention: complete downloads counted, and tombstones of retired transfers
    # (who sent to whom and when, nothing about the file).
    (
        "ALTER TABLE transfers ADD COLUMN downloads INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE tombstones (
            id TEXT PRIMARY KEY,
            sender TEXT NOT NULL,
            receivers TEXT NOT NULL,
            created_at REAL NOT NULL,
            expired_at REAL NOT NULL,
            inbox_pending INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX tombstones_expired ON tombstones(expired_at)",
        "CREATE INDEX tombstones_sender ON tombstones(sender, created_at)",
        "CREATE INDEX tombstones_inbox_pending ON tombstones(inbox_pending)",
    ),
    # 3: each sender's bytes held, kept by triggers, so a quota check reads one row
    # instead of summing every transfer the sender holds.
    (
        """CREATE TABLE sender_bytes (
            sender TEXT PRIMARY KEY,
            bytes_held INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT INTO sender_bytes (sender, bytes_held)"
        " SELECT sender, SUM(size) FROM transfers GROUP BY sender",
        f"""CREATE TRIGGER transfers_held_insert AFTER INSERT ON transfers BEGIN
            {_ADD_NEW_SIZE};
        END""",
        f"""CREATE TRIGGER transfers_held_delete AFTER DELETE ON transfers BEGIN
            {_TAKE_OLD_SIZE};
        END""",
        f"""CREATE TRIGGER transfers_held_update AFTER UPDATE OF sender, size ON transfers BEGIN
            {_TAKE_OLD_SIZE};
            {_ADD_NEW_SIZE};
        END""",
    ),
    # 4: each sender's uploads counted by the hour of their creation, kept by a trigger,
    # so a quota check counts whole hours of its window from at most 25 rows instead of
    # every upload the sender made in it (rows.usage_query). Retiring a transfer leaves
    # its count (its tombstone counted as an upload already); counts two days older
    # than the sender's newest upload go.
    (
        """CREATE TABLE sender_uploads (
            sender TEXT NOT NULL,
            hour INTEGER NOT NULL,
            uploads INTEGER NOT NULL,
            PRIMARY KEY (sender, hour)
        ) WITHOUT ROWID""",
        f"INSERT INTO sender_uploads (sender, hour, uploads)"  # noqa: S608 (constants)
        f" SELECT sender, {_HOUR_OF_CREATED}, COUNT(*) FROM"
        f" (SELECT sender, created_at FROM transfers"
        f"  UNION ALL SELECT sender, created_at FROM tombstones)"
        f" GROUP BY sender, {_HOUR_OF_CREATED}",
        f"""CREATE TRIGGER transfers_uploads_insert AFTER INSERT ON transfers BEGIN
            INSERT INTO sender_uploads (sender, hour, uploads)
                VALUES (NEW.sender, {_HOUR_OF_NEW}, 1)
                ON CONFLICT (sender, hour) DO UPDATE SET uploads = uploads + 1;
            DELETE FROM sender_uploads
                WHERE sender = NEW.sender AND hour < {_HOUR_OF_NEW} - 48;
        END""",  # noqa: S608 (constants)
    ),
)

_INBOX_MIGRATIONS: Final[tuple[Migration, ...]] = (
    # 1: the inboxes.
    (
        """CREATE TABLE IF NOT EXISTS inbox (
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
        )""",
        "CREATE INDEX IF NOT EXISTS inbox_receiver ON inbox(receiver, cursor)",
    ),
)


def schema_version(connection: sqlite3.Connection) -> int:
    """The schema version a database records (0: none)."""
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(connection: sqlite3.Connection, path: Path, migrations: tuple[Migration, ...]) -> None:
    """Upgrade the database to the last of ``migrations``, one transaction per step.

    Each step re-reads the version under the write lock, so processes opening the same
    database at once never run a step twice; a step that fails leaves the version before.

    Raises:
        ConfigError: the database is of a newer version than this geodrop knows.
    """
    latest = len(migrations)
    while True:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(connection)
            if version > latest:
                raise ConfigError(
                    f"{path}: metadata schema version {version} is newer than this geodrop"
                    f" knows ({latest}); upgrade geodrop or use another database"
                )
            if version == latest:
                connection.execute("COMMIT")
                return
            for statement in migrations[version]:
                connection.execute(statement)
            # PRAGMA takes no parameters; the version is an int of ours.
            connection.execute(f"PRAGMA user_version = {version + 1:d}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


@dataclass(slots=True)
class _Call:
    work: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future[Any]
    durable: bool


class _Database:
    """One SQLite connection, driven from a single worker thread.

    Group commit: calls that arrive while the thread is busy (mostly waiting for the
    disk to confirm the last commit) run together in the next transaction, each in a
    savepoint of its own, and are answered once that one commit is durable. Under
    concurrent load one fsync then serves many calls instead of one each (A/B with
    bench/: +7% upload negotiations a second, +9% small-file transactions a second at
    9% less server CPU each). A call that raises is rolled back to its savepoint alone,
    as if it had run by itself; if the shared transaction itself fails, every call of
    the batch is run again alone, each in its own transaction, exactly as without
    batching. A lone call runs as it always did.
    """

    def __init__(self, path: Path, migrations: tuple[Migration, ...]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._path = path
        self._migrations = migrations
        self._connection: sqlite3.Connection | None = None
        self._pending: collections.deque[_Call] = collections.deque()
        # The event loop's own connection, for point reads (:meth:`read`).
        self._reader: sqlite3.Connection | None = None
        self._checkpointer = WalCheckpointer(path)
        # The connection's ``PRAGMA synchronous`` now (see _commit_durably).
        self._durable_commits = True

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        self._durable_commits = True
        # WAL checkpoints run off the commit path (sqlite_checkpoints); this is the backstop.
        connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES:d}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        try:
            migrate(connection, self._path, self._migrations)
        except BaseException:
            connection.close()
            raise
        return connection

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    async def run(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``work`` in a transaction of the worker thread; its result once committed.

        Args:
            durable: answer once the commit is on disk (the default). False: once it is
                written, which a machine crash may undo (see the module docstring). A
                batch with any durable call commits durably. The small-file benchmark's
                transaction (bench/smallfiles.py) waited for 6 disk syncs, now 4.
        """
        call = _Call(work, concurrent.futures.Future(), durable)
        self._pending.append(call)
        # One drain per call: a drain that finds its call already taken by an earlier
        # batch returns at once.
        self._executor.submit(self._drain)
        result: T = await asyncio.wrap_future(call.future)
        return result

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work``, a look-up by key that writes nothing, on the event loop itself.

        The one place metadata is read on the loop, measured: a look-up through the
        worker thread cost ~170 µs of CPU (submitting, waking the thread, waking the loop
        again), the SELECTs themselves ~10 µs; a download negotiation makes one. WAL lets
        this connection read beside the worker's writes, and it sees every commit the
        worker has answered. A read that would have to wait for a lock (SQLite's rare
        WAL recoveries) goes through the worker instead of stalling the loop.
        """
        if self._reader is None:
            # Opened by the worker (no file work on the loop), once its own connection
            # has created and migrated the schema.
            reader = await self.run(lambda connection: self._open_reader())
            if self._reader is None:
                self._reader = reader
            else:  # another read opened one meanwhile
                reader.close()
        try:
            self._reader.execute("BEGIN")
            try:
                return work(self._reader)
            finally:
                self._reader.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return await self.run(work)

    def _open_reader(self) -> sqlite3.Connection:
        # Opened in the worker thread, used on the loop.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        # Never wait for a lock on the loop: fall back to the worker at once.
        connection.execute("PRAGMA busy_timeout=0")
        connection.execute("PRAGMA query_only=ON")
        return connection

    def _drain(self) -> None:
        calls: list[_Call] = []
        while self._pending and len(calls) < MAX_BATCH:
            call = self._pending.popleft()
            if call.future.set_running_or_notify_cancel():
                calls.append(call)
        if len(calls) == 1:
            self._run_alone(calls[0])
        elif calls:
            self._run_batch(calls)

    def _commit_durably(self, connection: sqlite3.Connection, durable: bool) -> None:
        """Set whether the next commits wait for the disk (``PRAGMA synchronous``, which
        applies to the connection's commits from the next transaction on)."""
        if durable != self._durable_commits:
            connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable_commits = durable

    def _run_alone(self, call: _Call) -> None:
        try:
            connection = self._connected()
            self._commit_durably(connection, call.durable)
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = call.work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except BaseException as exc:
            call.future.set_exception(exc)
        else:
            self._checkpointer.committed()
            call.future.set_result(result)

    def _run_batch(self, calls: list[_Call]) -> None:
        try:
            connection = self._connected()
            self._commit_durably(connection, any(call.durable for call in calls))
            connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            # Each call alone would have met the same failure; let each meet its own.
            for call in calls:
                self._run_alone(call)
            return
        outcomes: list[tuple[_Call, Any, BaseException | None]] = []
        try:
            for call in calls:
                connection.execute("SAVEPOINT call")
                try:
                    result = call.work(connection)
                except Exception as exc:
                    connection.execute("ROLLBACK TO call")
                    connection.execute("RELEASE call")
                    outcomes.append((call, None, exc))
                else:
                    connection.execute("RELEASE call")
                    outcomes.append((call, result, None))
            connection.execute("COMMIT")
        except BaseException:
            # The shared transaction failed (I/O error, a rolled-back savepoint, …):
            # nothing of it was kept, so every call runs again on its own.
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            for call in calls:
                self._run_alone(call)
            return
        self._checkpointer.committed()
        for call, result, error in outcomes:
            if error is None:
                call.future.set_result(result)
            else:
                call.future.set_exception(error)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

        def close() -> None:
            self._checkpointer.stop()
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def _transfer(row: sqlite3.Row, receivers: list[str]) -> Transfer:
    return transfer_from_row(row, receivers)


def _tombstone(row: sqlite3.Row) -> Tombstone:
    return Tombstone(
        id=row["id"],
        sender=row["sender"],
        receivers=tuple(json.loads(row["receivers"])),
        created_at=row["created_at"],
        expired_at=row["expired_at"],
    )


def _load_tombstone(connection: sqlite3.Connection, transfer_id: str) -> Tombstone | None:
    row = connection.execute("SELECT * FROM tombstones WHERE id = ?", (transfer_id,)).fetchone()
    return None if row is None else _tombstone(row)


def _insert(c: sqlite3.Connection, transfer: Transfer) -> None:
    c.execute(
        f"INSERT INTO transfers ({TRANSFER_COLUMNS})"  # noqa: S608 (a constant)
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        transfer_values(transfer),
    )
    c.executemany(
        "INSERT INTO deliveries (transfer_id, receiver, position) VALUES (?, ?, ?)",
        [(transfer.id, r, i) for i, r in enumerate(transfer.receivers)],
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
        self._db = _Database(path, _TRANSFER_MIGRATIONS)
        # One process owns an SQLite region, so its locks live here.
        self._upload_locks = KeyedLocks()
        self._sender_locks = KeyedLocks()

    async def create(self, transfer: Transfer) -> None:
        await self._db.run(lambda c: _insert(c, transfer))

    async def create_admitted(
        self, transfer: Transfer, admit: Callable[[Usage], None], since: float
    ) -> None:
        # One call of the writer: the usage read and the insert share a transaction
        # (or a savepoint of a shared one), which no other write comes between. No
        # sender's lock is waited for, so one sender's concurrent creations commit
        # together (group commit) instead of one fsync after another.
        def insert(c: sqlite3.Connection) -> None:
            admit(_usage(c, transfer.sender, since))
            _insert(c, transfer)

        await self._db.run(insert)

    async def get(self, transfer_id: str) -> Transfer | None:
        return await self._db.read(lambda c: _load(c, transfer_id))

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

        # On the loop: ``limit`` rows of a partial index and a look-up by key each (the
        # announcer asks for 25 at a time), not worth a trip through the worker.
        return await self._db.read(select)

    async def mark_announced_many(self, deliveries: Sequence[tuple[str, str]]) -> None:
        # Not durable: lost in a crash, the entries are announced again, and the inbox
        # keeps one of each.
        await self._db.run(
            lambda c: c.executemany(
                "UPDATE deliveries SET announced = 1 WHERE transfer_id = ? AND receiver = ?",
                deliveries,
            ),
            durable=False,
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
        def update(c: sqlite3.Connection) -> Transfer | None:
            received = c.execute(
                "UPDATE deliveries SET received_at = COALESCE(received_at, ?)"
                " WHERE transfer_id = ? AND receiver = ?",
                (now, transfer_id, receiver),
            )
            if received.rowcount:
                c.execute(
                    "UPDATE transfers SET downloads = downloads + 1 WHERE id = ?", (transfer_id,)
                )
            transfer = _load(c, transfer_id)
            if transfer is None or not received.rowcount:
                return transfer
            waiting = c.execute(
                "SELECT COUNT(*) FROM deliveries WHERE transfer_id = ? AND received_at IS NULL",
                (transfer_id,),
            ).fetchone()[0]
            if waiting == 0 or 0 < max_downloads <= transfer.downloads:
                c.execute(
                    "UPDATE transfers SET expires_at = MIN(expires_at, ?) WHERE id = ?",
                    (now + grace_seconds, transfer_id),
                )
                transfer = _load(c, transfer_id)
            return transfer

        # A receipt no download limit depends on is not durable: lost in a crash, the file
        # waits out its retention instead of the grace after delivery.
        return await self._db.run(update, durable=max_downloads > 0)

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

    async def retire(self, transfer_id: str, now: float) -> Tombstone | None:
        def bury(c: sqlite3.Connection) -> Tombstone | None:
            transfer = _load(c, transfer_id)
            if transfer is None:
                return _load_tombstone(c, transfer_id)
            c.execute(
                "INSERT OR REPLACE INTO tombstones"
                " (id, sender, receivers, created_at, expired_at, inbox_pending)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    transfer.id,
                    transfer.sender,
                    json.dumps(list(transfer.receivers)),
                    transfer.created_at,
                    now,
                    # Even an entry not yet marked announced may be on its way.
                    int(transfer.state is TransferState.COMPLETE),
                ),
            )
            c.execute("DELETE FROM transfers WHERE id = ?", (transfer_id,))
            return _load_tombstone(c, transfer_id)

        return await self._db.run(bury)

    async def tombstone(self, transfer_id: str) -> Tombstone | None:
        return await self._db.read(lambda c: _load_tombstone(c, transfer_id))

    async def pending_inbox_removals(self, limit: int = 100) -> list[str]:
        def select(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "SELECT id FROM tombstones WHERE inbox_pending = 1 ORDER BY expired_at LIMIT ?",
                (limit,),
            )
            return [r["id"] for r in rows]

        # On the loop: the announcer asks after every completed upload, and the index on
        # inbox_pending leaves it the few retired files not yet withdrawn (usually none).
        return await self._db.read(select)

    async def mark_inbox_removed(self, transfer_id: str) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE tombstones SET inbox_pending = 0 WHERE id = ?", (transfer_id,)
            )
        )

    async def forget_tombstones(self, expired_before: float, limit: int = 1000) -> int:
        def delete(c: sqlite3.Connection) -> int:
            deleted = c.execute(
                "DELETE FROM tombstones WHERE id IN (SELECT id FROM tombstones"
                " WHERE expired_at < ? AND inbox_pending = 0 LIMIT ?)",
                (expired_before, limit),
            )
            return deleted.rowcount

        return await self._db.run(delete)

    async def usage(self, sender: str, since: float) -> Usage:
        def select(c: sqlite3.Connection) -> Usage:
            return _usage(c, sender, since)

        # On the loop: one running total, at most 25 hourly counts, the index ranges of
        # the window's first, partial hour and two index look-ups of the oldest. An
        # early look only: create_admitted reads the usage again with the insert.
        return await self._db.read(select)

    async def bytes_stored(self) -> int:
        def select(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT COALESCE(SUM(size), 0) FROM transfers").fetchone()
            return int(row[0])

        return await self._db.run(select)

    @asynccontextmanager
    async def upload_lock(self, transfer_id: str) -> AsyncIterator[None]:
        try:
            async with self._upload_locks.hold(transfer_id, within=LOCK_WAIT_SECONDS):
                yield
        except TimeoutError:
            raise Locked("another request is writing this upload; retry shortly") from None

    @asynccontextmanager
    async def sender_lock(self, sender: str) -> AsyncIterator[None]:
        async with self._sender_locks.hold(sender):
            yield

    @asynccontextmanager
    async def try_exclusive(self, job: str) -> AsyncIterator[bool]:
        # Only this process uses an SQLite region.
        yield True

    async def publish_link_loads(
        self, unit: str, loads: Sequence[UnitLinkLoad], now: float
    ) -> None:
        return

    async def other_units_link_loads(self, unit: str, fresh_after: float) -> list[UnitLinkLoad]:
        return []

    async def close(self) -> None:
        await self._db.close()


def _entry(row: sqlite3.Row) -> InboxEntry:
    return inbox_entry_from_row(row)


class SqliteInboxStore(InboxStore):
    """The directory's inboxes in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = _Database(path, _INBOX_MIGRATIONS)
        # One directory process uses an SQLite inbox: its listeners and heartbeats live here.
        self._listeners: list[Callable[[str], None]] = []
        self._beats: dict[str, RegionBeat] = {}

    async def add_many(self, entries: Sequence[InboxEntry]) -> list[InboxEntry]:
        def insert(c: sqlite3.Connection) -> list[InboxEntry]:
            stored = []
            for entry in entries:
                c.execute(
                    "INSERT OR IGNORE INTO inbox (receiver, file_id, sender, filename, size,"
                    " sha256, region, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                stored.append(_entry(row))
            return stored

        stored = await self._db.run(insert)
        for receiver in dict.fromkeys(entry.receiver for entry in stored):
            for changed in list(self._listeners):
                changed(receiver)
        return stored

    async def list(self, receiver: str, after: int, limit: int) -> list[InboxEntry]:
        def select(c: sqlite3.Connection) -> list[InboxEntry]:
            rows = c.execute(
                "SELECT * FROM inbox WHERE receiver = ? AND cursor > ? ORDER BY cursor LIMIT ?",
                (receiver, after, limit),
            )
            return [_entry(r) for r in rows]

        # On the loop: one index range of at most ``limit`` rows (the inbox's page of
        # 100), mostly none or a few, as a receiver's long-poll reads it before and
        # after each wait. Through the worker, each read cost a thread hop both ways.
        return await self._db.read(select)

    async def remove(self, file_id: str) -> None:
        await self._db.run(lambda c: c.execute("DELETE FROM inbox WHERE file_id = ?", (file_id,)))

    async def listen(self, changed: Callable[[str], None]) -> None:
        self._listeners.append(changed)
        try:
            await asyncio.Event().wait()
        finally:
            self._listeners.remove(changed)

    async def record_heartbeat(
        self, region: str, links: Sequence[dict[str, object]], now: float
    ) -> None:
        beats = self._beats[region].beats if region in self._beats else 0
        self._beats[region] = RegionBeat(region, now, beats + 1, [*links])

    async def heartbeats(self) -> Sequence[RegionBeat]:
        return list(self._beats.values())

    async def close(self) -> None:
        await self._db.close()
