"""Which SQLite commits wait for the disk: durable unless a call says otherwise (the
stores' bookkeeping calls: tests/integration/metadata/test_stores.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from geodrop.metadata.sqlite import _Database

# PRAGMA synchronous as SQLite reports it.
NORMAL = 1
FULL = 2


def _synchronous(connection: sqlite3.Connection) -> int:
    """The level the transaction running on ``connection`` will commit with."""
    level: int = connection.execute("PRAGMA synchronous").fetchone()[0]
    return level


async def test_a_call_commits_durably_unless_it_says_otherwise(tmp_path: Path) -> None:
    db = _Database(tmp_path / "db.sqlite3", ())
    try:
        assert await db.run(_synchronous) == FULL
        assert await db.run(_synchronous, durable=False) == NORMAL
        assert await db.run(_synchronous) == FULL
    finally:
        await db.close()


async def test_a_batch_with_one_durable_call_commits_durably(tmp_path: Path) -> None:
    db = _Database(tmp_path / "db.sqlite3", ())
    release = threading.Event()
    entered = threading.Event()

    def hold(connection: sqlite3.Connection) -> int:
        entered.set()
        release.wait(10)
        return _synchronous(connection)

    try:
        first = asyncio.ensure_future(db.run(hold, durable=False))
        await asyncio.to_thread(entered.wait, 10)
        # Queued while the worker is busy: these two run as one batch after it.
        lazy = asyncio.ensure_future(db.run(_synchronous, durable=False))
        durable = asyncio.ensure_future(db.run(_synchronous))
        await asyncio.sleep(0.05)
        release.set()
        assert await first == NORMAL
        assert await lazy == FULL
        assert await durable == FULL
        # The next call alone is back to its own level.
        assert await db.run(_synchronous, durable=False) == NORMAL
    finally:
        release.set()
        await db.close()
