"""7. Metadata at scale: 1,000,000 files on SQLite and on PostgreSQL, side by side.

Each backend gets the same generated population — 1,000,000 complete transfers from
10,000 senders to 10,000 receivers, and 1,000,000 inbox entries (100 per receiver) —
loaded in bulk after the store has created its schema through its own migrations.
Then, through geodrop's own store classes (the calls the services make), one at a
time, on random targets:

- download negotiation: ``TransferStore.get`` of a file (what ``POST /v1/downloads``
  asks the metadata before it signs a URL);
- upload negotiation: ``usage`` (the early quota look) + ``create_admitted`` (the quota
  checked and the upload recorded in one step: what ``POST /v1/uploads`` does to the
  metadata; each sample records a new upload);
- inbox listing: ``InboxStore.list`` of a receiver's first page (100 entries).

SQLite runs as geodrop runs it (WAL, ``synchronous=FULL``, checkpoints off the commit
path); its bulk load is checkpointed and synced to the disk before the samples.
PostgreSQL 15 runs on this machine over TCP loopback with its defaults for durability
(fsync on); a ``CHECKPOINT`` follows its bulk load.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Final

import asyncpg

from bench.context import BenchContext
from bench.report import Section, Target, markdown_table
from geodrop.config import LimitsConfig
from geodrop.fileserver import quota
from geodrop.metadata.base import InboxStore, Transfer, TransferState, TransferStore
from geodrop.metadata.postgres_inbox import PostgresInboxStore
from geodrop.metadata.postgres_transfers import PostgresTransferStore
from geodrop.metadata.sqlite import SqliteInboxStore, SqliteTransferStore
from geodrop.protocol.fileid import new_file_id

REPO: Final = Path(__file__).resolve().parent.parent
FILES: Final = 1_000_000
QUICK_FILES: Final = 100_000
USERS: Final = 10_000
SAMPLES: Final = 3000
QUICK_SAMPLES: Final = 600
BATCH: Final = 50_000
P99_GOAL_MS: Final = 10.0
OPERATIONS: Final = ("download negotiation", "upload negotiation", "inbox listing")
# The quota rule runs in full but never refuses: every sample records its upload.
_UNLIMITED: Final = LimitsConfig(
    max_file_size=2**60,
    upload_expiry_seconds=86400,
    retention_seconds=86400,
    signed_url_ttl_seconds=3600,
    max_receivers=50,
    min_free_bytes=0,
    user_quota_bytes=2**60,
    user_uploads_per_day=2**60,
    requests_per_minute_per_user=2**30,
    requests_per_minute_per_ip=2**30,
    received_grace_seconds=0,
    max_downloads=0,
)

Operation = Callable[[random.Random], Awaitable[None]]


def _tests_support() -> None:
    # The benchmark starts PostgreSQL exactly as the tests do (tests/support/postgres.py).
    path = str(REPO / "tests")
    if path not in sys.path:
        sys.path.insert(0, path)


def _population(file_ids: list[str], seed: int = 7) -> Iterator[tuple[str, str, str, int]]:
    """(file id, sender, receiver, size) of every generated file."""
    rng = random.Random(seed)
    for i, file_id in enumerate(file_ids):
        yield file_id, f"s{i % USERS}", f"r{rng.randrange(USERS)}", 4096 + i


def _transfer_rows(files: list[str], now: float) -> Iterator[tuple[object, ...]]:
    for file_id, sender, _, size in _population(files):
        yield (
            file_id,
            sender,
            f"{file_id}.bin",
            size,
            "0" * 64,
            now - 3600,
            now + 7 * 86400,
            TransferState.COMPLETE.value,
            now - 3500,
            "application/octet-stream",
            "{}",
        )


def _batches(rows: Iterator[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    batch: list[tuple[object, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _inbox_rows(files: list[str], now: float) -> Iterator[tuple[object, ...]]:
    for i, (file_id, sender, _, size) in enumerate(_population(files)):
        receiver = f"r{i % USERS}"
        yield receiver, file_id, sender, f"{file_id}.bin", size, "0" * 64, "north", now


def _load_sqlite(transfers: Path, inbox: Path, files: list[str], now: float) -> None:
    with sqlite3.connect(transfers) as db:
        db.execute("PRAGMA synchronous=OFF")
        for batch in _batches(_transfer_rows(files, now)):
            db.executemany(
                "INSERT INTO transfers (id, sender, filename, size, sha256, created_at,"
                " expires_at, state, completed_at, content_type, tus_metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
        rows = ((f, r, 0, 1) for f, _, r, _ in _population(files))
        for batch in _batches(rows):
            db.executemany(
                "INSERT INTO deliveries (transfer_id, receiver, position, announced)"
                " VALUES (?, ?, ?, ?)",
                batch,
            )
        db.execute("ANALYZE")
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(inbox) as db:
        db.execute("PRAGMA synchronous=OFF")
        for batch in _batches(_inbox_rows(files, now)):
            db.executemany(
                "INSERT INTO inbox (receiver, file_id, sender, filename, size, sha256, region,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
        db.execute("ANALYZE")
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def _load_postgres(transfers_dsn: str, inbox_dsn: str, files: list[str], now: float) -> None:
    connection = await asyncpg.connect(transfers_dsn)
    try:
        for batch in _batches(_transfer_rows(files, now)):
            await connection.copy_records_to_table(
                "transfers",
                records=batch,
                columns=[
                    "id",
                    "sender",
                    "filename",
                    "size",
                    "sha256",
                    "created_at",
                    "expires_at",
                    "state",
                    "completed_at",
                    "content_type",
                    "tus_metadata",
                ],
            )
        rows = ((f, r, 0, True) for f, _, r, _ in _population(files))
        for batch in _batches(rows):
            await connection.copy_records_to_table(
                "deliveries",
                records=batch,
                columns=["transfer_id", "receiver", "position", "announced"],
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    connection = await asyncpg.connect(inbox_dsn)
    try:
        for batch in _batches(_inbox_rows(files, now)):
            await connection.copy_records_to_table(
                "inbox",
                records=batch,
                columns=[
                    "receiver",
                    "file_id",
                    "sender",
                    "filename",
                    "size",
                    "sha256",
                    "region",
                    "created_at",
                ],
            )
        await connection.execute("ANALYZE")
        # The load's WAL written back now, as an operator would after a bulk load, so
        # that no checkpoint of it is still spreading its writes over the samples.
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def _operations(
    transfers: TransferStore, inbox: InboxStore, file_ids: list[str]
) -> dict[str, Operation]:
    async def download_negotiation(rng: random.Random) -> None:
        transfer = await transfers.get(rng.choice(file_ids))
        assert transfer is not None

    async def upload_negotiation(rng: random.Random) -> None:
        sender = f"s{rng.randrange(USERS)}"
        now = time.time()
        admit = partial(quota.admit, _UNLIMITED, 1024, now)
        admit(await transfers.usage(sender, quota.window_start(now)))
        upload = Transfer(
            id=str(new_file_id("north")),
            sender=sender,
            receivers=(f"r{rng.randrange(USERS)}",),
            filename="new.bin",
            size=1024,
            sha256=None,
            created_at=now,
            expires_at=now + 86400,
        )
        await transfers.create_admitted(upload, admit, quota.window_start(now))

    page = min(100, len(file_ids) // USERS)  # every receiver has len(file_ids) / USERS

    async def inbox_listing(rng: random.Random) -> None:
        entries = await inbox.list(f"r{rng.randrange(USERS)}", 0, 100)
        assert len(entries) == page

    return dict(
        zip(OPERATIONS, (download_negotiation, upload_negotiation, inbox_listing), strict=True)
    )


async def _measure(operation: Operation, samples: int) -> list[float]:
    """Milliseconds of ``samples`` calls, one at a time, after a short warm-up."""
    rng = random.Random(11)
    for _ in range(min(200, samples // 5)):
        await operation(rng)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await operation(rng)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _run_backend(
    transfers: TransferStore, inbox: InboxStore, file_ids: list[str], samples: int
) -> dict[str, list[float]]:
    try:
        return {
            name: await _measure(operation, samples)
            for name, operation in _operations(transfers, inbox, file_ids).items()
        }
    finally:
        await transfers.close()
        await inbox.close()


async def _prepare(transfers: TransferStore, inbox: InboxStore) -> None:
    """Let each store create its schema through its own migrations."""
    await transfers.get("north.AAAAAAAAAAAAAAAAAAAAAAAAAA")
    await inbox.list("nobody", 0, 1)
    await transfers.close()
    await inbox.close()


@contextmanager
def _postgres() -> Iterator[tuple[str, str]]:
    _tests_support()
    from support.postgres import running_postgres

    with running_postgres(durable=True) as server:
        yield server.create_database(), server.create_database()


def run(ctx: BenchContext) -> Section:
    files = QUICK_FILES if ctx.quick else FILES
    samples = QUICK_SAMPLES if ctx.quick else SAMPLES
    now = time.time()
    file_ids = [str(new_file_id("north")) for _ in range(files)]
    results: dict[str, dict[str, list[float]]] = {}
    load_seconds: dict[str, float] = {}

    sqlite_transfers = ctx.work_dir / "north.sqlite3"
    sqlite_inbox = ctx.work_dir / "inbox.sqlite3"
    asyncio.run(_prepare(SqliteTransferStore(sqlite_transfers), SqliteInboxStore(sqlite_inbox)))
    started = time.monotonic()
    _load_sqlite(sqlite_transfers, sqlite_inbox, file_ids, now)
    load_seconds["SQLite"] = time.monotonic() - started
    # The load ran without fsyncs: its pages go to the disk now, not in the background
    # while the samples' commits wait for their own fsyncs (as PostgreSQL's CHECKPOINT).
    os.sync()
    ctx.log(f"metadata: SQLite loaded with {files:,} files in {load_seconds['SQLite']:.0f} s")
    results["SQLite"] = asyncio.run(
        _run_backend(
            SqliteTransferStore(sqlite_transfers), SqliteInboxStore(sqlite_inbox), file_ids, samples
        )
    )

    with _postgres() as (transfers_dsn, inbox_dsn):
        asyncio.run(
            _prepare(
                PostgresTransferStore(transfers_dsn, pool_size=4),
                PostgresInboxStore(inbox_dsn, pool_size=4),
            )
        )
        started = time.monotonic()
        asyncio.run(_load_postgres(transfers_dsn, inbox_dsn, file_ids, now))
        load_seconds["PostgreSQL"] = time.monotonic() - started
        ctx.log(f"metadata: PostgreSQL loaded in {load_seconds['PostgreSQL']:.0f} s")
        results["PostgreSQL"] = asyncio.run(
            _run_backend(
                PostgresTransferStore(transfers_dsn, pool_size=4),
                PostgresInboxStore(inbox_dsn, pool_size=4),
                file_ids,
                samples,
            )
        )
    return _section(results, load_seconds, files, samples)


def _section(
    results: dict[str, dict[str, list[float]]],
    load_seconds: dict[str, float],
    files: int,
    samples: int,
) -> Section:
    rows = []
    targets = []
    for operation in OPERATIONS:
        cells = [operation]
        for backend in ("SQLite", "PostgreSQL"):
            times = results[backend][operation]
            cells += [f"{_percentile(times, 50):.3f}", f"{_percentile(times, 99):.3f}"]
            p99 = _percentile(times, 99)
            targets.append(
                Target(
                    f"Metadata, {files:,} files, {backend}: {operation} p99",
                    f"{p99:.2f} ms",
                    f"≤ {P99_GOAL_MS:.0f} ms",
                    passed=p99 <= P99_GOAL_MS,
                )
            )
        rows.append(cells)
    table = markdown_table(
        ["operation", "SQLite p50 ms", "SQLite p99 ms", "PostgreSQL p50 ms", "PostgreSQL p99 ms"],
        rows,
    )
    loads = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in load_seconds.items())
    body = (
        f"{__doc__.split(chr(10), 2)[2] if __doc__ else ''}\n"
        f"{files:,} files, {samples:,} samples per operation and backend; bulk load: {loads}.\n\n"
        f"{table}\n"
    )
    return Section("8. Metadata at scale", body, targets)
