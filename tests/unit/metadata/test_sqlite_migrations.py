"""SQLite schema versions: a database made by an older geodrop is upgraded in place.

``V1_TRANSFER_SCHEMA`` is the schema geodrop 0.1 created (before versions were
recorded: ``user_version`` 0), frozen here as it shipped.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Final

import pytest

from geodrop.errors import ConfigError
from geodrop.metadata.base import Delivery, InboxEntry, Tombstone, TransferState, Usage
from geodrop.metadata.sqlite import SqliteInboxStore, SqliteTransferStore, schema_version

NOW: Final = 1_700_000_000.0
SHA: Final = "ab" * 32
DONE: Final = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"
PENDING: Final = "north.bbbbbbbbbbbbbbbbbbbbbbbbbb"
LATEST_TRANSFER_VERSION: Final = 4

V1_TRANSFER_SCHEMA: Final = """
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

V1_INBOX_SCHEMA: Final = """
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


def make_v1_transfer_database(path: Path) -> None:
    """A region database as geodrop 0.1 left it: one complete file, one upload in progress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(V1_TRANSFER_SCHEMA)
        rows = [
            (DONE, "alice", "报告.pdf", 10, SHA, NOW, NOW + 100, "complete", NOW + 1),
            (PENDING, "alice", "b.bin", 20, None, NOW, NOW + 50, "uploading", None),
        ]
        db.executemany(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, "application/pdf", json.dumps({"filename": row[2]})) for row in rows],
        )
        db.executemany(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)",
            [
                (DONE, "bob", 0, 1, None),
                (DONE, "carol", 1, 0, None),
                (PENDING, "bob", 0, 0, None),
            ],
        )
    db.close()


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return schema_version(db)
    finally:
        db.close()


def columns(path: Path, table: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


async def test_a_v1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "north" / "metadata.sqlite3"
    make_v1_transfer_database(path)
    assert version_of(path) == 0
    assert "downloads" not in columns(path, "transfers")

    store = SqliteTransferStore(path)
    try:
        done = await store.get(DONE)
        assert done is not None
        assert (done.filename, done.size, done.sha256) == ("报告.pdf", 10, SHA)
        assert done.state is TransferState.COMPLETE
        assert done.receivers == ("bob", "carol")
        assert done.downloads == 0  # the new column, filled in for old rows
        assert await store.deliveries(DONE) == [
            Delivery(DONE, "bob", announced=True, received_at=None),
            Delivery(DONE, "carol", announced=False, received_at=None),
        ]
        pending = await store.get(PENDING)
        assert pending is not None
        assert pending.state is TransferState.UPLOADING
        # Version 3's running totals start from the rows already there.
        assert await store.usage("alice", since=0.0) == Usage(30, 2, NOW)

        # What version 2 adds works on the upgraded data.
        received = await store.mark_received(DONE, "bob", NOW + 2, grace_seconds=5)
        assert received is not None
        assert received.downloads == 1
        assert await store.retire(PENDING, NOW + 60) == Tombstone(
            PENDING, "alice", ("bob",), NOW, NOW + 60
        )
        assert await store.usage("alice", since=0.0) == Usage(10, 2, NOW)
    finally:
        await store.close()

    assert version_of(path) == LATEST_TRANSFER_VERSION
    assert "downloads" in columns(path, "transfers")
    assert columns(path, "tombstones") == [
        "id",
        "sender",
        "receivers",
        "created_at",
        "expired_at",
        "inbox_pending",
    ]
    # Opening it again runs no migration twice.
    again = SqliteTransferStore(path)
    try:
        assert await again.tombstone(PENDING) is not None
        assert await again.get(DONE) == received
    finally:
        await again.close()
    assert version_of(path) == LATEST_TRANSFER_VERSION


async def test_a_new_database_starts_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    store = SqliteTransferStore(path)
    try:
        assert await store.get(DONE) is None
    finally:
        await store.close()
    assert version_of(path) == LATEST_TRANSFER_VERSION


async def test_a_database_from_a_newer_geodrop_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    make_v1_transfer_database(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    store = SqliteTransferStore(path)
    try:
        with pytest.raises(ConfigError, match="version 99 is newer"):
            await store.get(DONE)
    finally:
        await store.close()
    assert version_of(path) == 99
    assert "downloads" not in columns(path, "transfers")


async def test_a_failed_migration_leaves_the_version_before(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    make_v1_transfer_database(path)
    with sqlite3.connect(path) as db:
        # Something in the way of version 2's new table: its step must fail as a whole.
        db.execute("CREATE TABLE tombstones (unrelated TEXT)")
    db.close()
    store = SqliteTransferStore(path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await store.get(DONE)
    finally:
        await store.close()
    assert version_of(path) == 1  # version 1 done, version 2 rolled back entirely
    assert "downloads" not in columns(path, "transfers")


async def test_an_unversioned_inbox_database_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_INBOX_SCHEMA)
        db.execute(
            "INSERT INTO inbox (receiver, file_id, sender, filename, size, sha256, region,"
            " created_at) VALUES ('bob', ?, 'alice', 'a.txt', 1, ?, 'north', ?)",
            (DONE, SHA, NOW),
        )
    db.close()
    store = SqliteInboxStore(path)
    try:
        assert [e.file_id for e in await store.list("bob", 0, 10)] == [DONE]
        added = await store.add(
            InboxEntry(0, "bob", PENDING, "alice", "b.txt", 2, SHA, "north", NOW)
        )
        assert added.cursor == 2
    finally:
        await store.close()
    assert version_of(path) == 1
