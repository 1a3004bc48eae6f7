"""WAL checkpoints off the writer's commit path, on real SQLite files."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from geodrop.metadata.base import Transfer
from geodrop.metadata.sqlite import SqliteTransferStore
from geodrop.metadata.sqlite_checkpoints import WalCheckpointer


def _writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE t (n INTEGER)")
    _checkpoint_now(path)
    return connection


def _checkpoint_now(path: Path) -> None:
    """Copy the WAL into the database file (so the file alone has the schema)."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _rows_in_database_file(path: Path, table: str, tmp: Path) -> int:
    """Rows found in the database file alone, without its WAL (what checkpoints wrote)."""
    copy = tmp / "copy.sqlite3"
    shutil.copyfile(path, copy)
    with closing(sqlite3.connect(copy)) as connection:
        count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    copy.unlink()
    return count


def _wait_for_checkpoints(checkpointer: WalCheckpointer, count: int) -> None:
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < count:
        assert time.monotonic() < deadline, "no checkpoint ran"
        time.sleep(0.01)


def test_a_checkpoint_runs_every_so_many_commits_and_writes_them_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    writer = _writer(path)
    checkpointer = WalCheckpointer(path, every_commits=5)
    try:
        for n in range(4):
            writer.execute("INSERT INTO t VALUES (?)", (n,))
            checkpointer.committed()
        assert checkpointer.checkpoints == 0
        assert _rows_in_database_file(path, "t", tmp_path) == 0  # all still in the WAL
        writer.execute("INSERT INTO t VALUES (4)")
        checkpointer.committed()
        _wait_for_checkpoints(checkpointer, 1)
        assert _rows_in_database_file(path, "t", tmp_path) == 5
    finally:
        checkpointer.stop()
        writer.close()


def test_after_stop_commits_start_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    writer = _writer(path)
    checkpointer = WalCheckpointer(path, every_commits=1)
    writer.execute("INSERT INTO t VALUES (1)")
    checkpointer.committed()
    _wait_for_checkpoints(checkpointer, 1)
    checkpointer.stop()
    writer.execute("INSERT INTO t VALUES (2)")
    checkpointer.committed()
    time.sleep(0.05)
    assert checkpointer.checkpoints == 1
    assert _rows_in_database_file(path, "t", tmp_path) == 1
    writer.close()


def test_a_stores_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    """Past SQLite's default 1000 pages of WAL, no commit copied pages back itself."""
    path = tmp_path / "north.sqlite3"

    async def create_many() -> int:
        store = SqliteTransferStore(path)
        try:
            assert await store.get("north.aaaaaaaaaaaaaaaaaaaaaaaaaa") is None  # the schema
            _checkpoint_now(path)
            for n in range(300):
                await store.create(
                    Transfer(
                        id=f"north.{n:026d}",
                        sender=f"s{n}",
                        receivers=("r",),
                        filename="f.bin",
                        size=1,
                        sha256=None,
                        created_at=1.0,
                        expires_at=2.0,
                    )
                )
            wal_pages = (path.with_name(path.name + "-wal").stat().st_size - 32) // (4096 + 24)
            assert _rows_in_database_file(path, "transfers", tmp_path) == 0
            return wal_pages
        finally:
            await store.close()

    assert asyncio.run(create_many()) > 1000
    # Closing checkpoints everything: nothing was lost on the way.
    assert _rows_in_database_file(path, "transfers", tmp_path) == 300


def test_a_commit_stands_when_no_thread_can_be_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    checkpointer = WalCheckpointer(tmp_path / "db.sqlite3", every_commits=1)
    checkpointer.committed()  # does not raise
    checkpointer.stop()
    assert checkpointer.checkpoints == 0


def test_a_database_that_cannot_be_opened_ends_the_thread_and_fails_nothing(
    tmp_path: Path,
) -> None:
    checkpointer = WalCheckpointer(tmp_path / "no such folder" / "db.sqlite3", every_commits=1)
    checkpointer.committed()  # does not raise; the thread logs and ends
    checkpointer.committed()
    checkpointer.stop()
    assert checkpointer.checkpoints == 0
