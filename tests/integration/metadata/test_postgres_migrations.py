"""PostgreSQL schema versions: applied once on first use, by one process at a time."""

from __future__ import annotations

import asyncio
from typing import Final

import asyncpg
import pytest

from geodrop.errors import ConfigError
from geodrop.metadata.base import InboxEntry, Transfer
from geodrop.metadata.postgres_inbox import PostgresInboxStore
from geodrop.metadata.postgres_schema import INBOX_MIGRATIONS, TRANSFER_MIGRATIONS
from geodrop.metadata.postgres_transfers import PostgresTransferStore

pytestmark = pytest.mark.postgres

NOW: Final = 1_700_000_000.0
ID: Final = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"


async def _query(dsn: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def _script(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _versions(dsn: str) -> dict[str, int]:
    rows = await _query(dsn, "SELECT component, version FROM schema_version")
    return {row["component"]: row["version"] for row in rows}


async def _tables(dsn: str) -> set[str]:
    rows = await _query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def _transfer(transfer_id: str = ID) -> Transfer:
    return Transfer(transfer_id, "alice", ("bob",), "f", 1, None, NOW, NOW + 10)


async def test_a_new_database_gets_the_latest_schema_on_first_use(postgres_dsn: str) -> None:
    transfers = PostgresTransferStore(postgres_dsn)
    inbox = PostgresInboxStore(postgres_dsn)
    assert await _tables(postgres_dsn) == set()  # constructing connects to nothing
    try:
        assert await transfers.get(ID) is None
        assert await inbox.heartbeats() == []
    finally:
        await transfers.close()
        await inbox.close()
    assert await _versions(postgres_dsn) == {
        "transfers": len(TRANSFER_MIGRATIONS),
        "inbox": len(INBOX_MIGRATIONS),
    }
    assert await _tables(postgres_dsn) == {
        "schema_version",
        "transfers",
        "deliveries",
        "tombstones",
        "unit_link_loads",
        "sender_bytes",
        "sender_uploads",
        "inbox",
        "region_heartbeats",
    }


async def test_reopening_keeps_the_data_and_runs_nothing_twice(postgres_dsn: str) -> None:
    store = PostgresTransferStore(postgres_dsn)
    try:
        await store.create(_transfer())
    finally:
        await store.close()
    again = PostgresTransferStore(postgres_dsn)
    try:
        assert await again.get(ID) == _transfer()
    finally:
        await again.close()
    assert await _versions(postgres_dsn) == {"transfers": len(TRANSFER_MIGRATIONS)}


async def test_a_version_1_database_gets_its_senders_totals_from_the_rows_it_holds(
    postgres_dsn: str,
) -> None:
    # As geodrop with only version 1 left it: two transfers of alice's, one of carol's.
    await _script(
        postgres_dsn,
        ";\n".join(TRANSFER_MIGRATIONS[0])
        + ";\nCREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        + ";\nINSERT INTO schema_version VALUES ('transfers', 1)",
    )
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.executemany(
            "INSERT INTO transfers (id, sender, filename, size, created_at, expires_at, state,"
            " content_type, tus_metadata) VALUES ($1, $2, 'f', $3, $4, $5, 'uploading',"
            " 'application/octet-stream', '{}')",
            [
                (ID, "alice", 10, NOW, NOW + 10),
                ("north.bbbbbbbbbbbbbbbbbbbbbbbbbb", "alice", 5 * 1024**3, NOW, NOW + 10),
                ("north.cccccccccccccccccccccccccc", "carol", 7, NOW, NOW + 10),
            ],
        )
    finally:
        await connection.close()
    store = PostgresTransferStore(postgres_dsn)
    try:
        usage = await store.usage("alice", since=0.0)
        assert (usage.bytes_held, usage.uploads_since) == (10 + 5 * 1024**3, 2)
        assert (await store.usage("carol", since=0.0)).bytes_held == 7
        await store.retire(ID, NOW + 1)
        assert (await store.usage("alice", since=0.0)).bytes_held == 5 * 1024**3
    finally:
        await store.close()
    assert await _versions(postgres_dsn) == {"transfers": len(TRANSFER_MIGRATIONS)}


async def test_a_database_of_a_newer_geodrop_is_refused_untouched(postgres_dsn: str) -> None:
    await _script(
        postgres_dsn,
        "CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
        " INSERT INTO schema_version VALUES ('transfers', 99)",
    )
    store = PostgresTransferStore(postgres_dsn)
    try:
        with pytest.raises(ConfigError, match="version 99 of 'transfers' is newer") as raised:
            await store.get(ID)
        assert "geodrop@" not in raised.value.message  # no credentials in the message
        # Every later call is refused the same way (nothing half-open stays behind).
        with pytest.raises(ConfigError):
            await store.create(_transfer())
    finally:
        await store.close()
    assert await _versions(postgres_dsn) == {"transfers": 99}
    assert await _tables(postgres_dsn) == {"schema_version"}


async def test_a_failed_migration_leaves_the_version_before(postgres_dsn: str) -> None:
    # Something in the way of version 1's tables: its step must fail as a whole.
    await _script(postgres_dsn, "CREATE TABLE tombstones (unrelated TEXT)")
    store = PostgresTransferStore(postgres_dsn)
    try:
        with pytest.raises(asyncpg.DuplicateTableError):
            await store.get(ID)
        assert await _versions(postgres_dsn) == {}
        assert await _tables(postgres_dsn) == {"schema_version", "tombstones"}
        # Once the way is clear, the same store migrates on its next use.
        await _script(postgres_dsn, "DROP TABLE tombstones")
        await store.create(_transfer())
        assert await store.get(ID) == _transfer()
    finally:
        await store.close()
    assert await _versions(postgres_dsn) == {"transfers": len(TRANSFER_MIGRATIONS)}


async def test_processes_starting_at_once_migrate_once(postgres_dsn: str) -> None:
    stores = [PostgresTransferStore(postgres_dsn, pool_size=2) for _ in range(4)]
    inboxes = [PostgresInboxStore(postgres_dsn, pool_size=2) for _ in range(4)]
    try:
        await asyncio.gather(
            *(store.create(_transfer(f"north.{i:026d}")) for i, store in enumerate(stores)),
            *(
                inbox.add(InboxEntry(0, "bob", f"north.{i:026d}", "a", "f", 1, "s", "north", NOW))
                for i, inbox in enumerate(inboxes)
            ),
        )
        assert len(await inboxes[0].list("bob", 0, 10)) == 4
        assert all([await stores[0].get(f"north.{i:026d}") for i in range(4)])
    finally:
        for store in stores:
            await store.close()
        for inbox in inboxes:
            await inbox.close()
    assert await _versions(postgres_dsn) == {
        "transfers": len(TRANSFER_MIGRATIONS),
        "inbox": len(INBOX_MIGRATIONS),
    }
