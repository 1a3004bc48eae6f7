"""Tests of the metadata stores, run against every backend: SQLite and PostgreSQL.

The tests use only the ``TransferStore``/``InboxStore`` interfaces through the
``transfer_store``/``inbox_store`` fixtures; the PostgreSQL cases run on a real server
(each on a database of its own) and carry the ``postgres`` mark. What matters only when
several processes share a PostgreSQL database is in ``test_postgres_shared.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

import geodrop.metadata.postgres_transfers
import geodrop.metadata.sqlite
from geodrop.errors import Locked, QuotaExceeded
from geodrop.metadata.base import (
    Delivery,
    InboxEntry,
    InboxStore,
    Tombstone,
    Transfer,
    TransferState,
    TransferStore,
    Usage,
)
from geodrop.metadata.postgres_inbox import PostgresInboxStore
from geodrop.metadata.postgres_transfers import PostgresTransferStore
from geodrop.metadata.sqlite import SqliteInboxStore, SqliteTransferStore

NOW = 1_700_000_000.0
SHA = "ab" * 32
ID = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"
ID2 = "north.bbbbbbbbbbbbbbbbbbbbbbbbbb"
ID3 = "north.cccccccccccccccccccccccccc"
ID4 = "north.dddddddddddddddddddddddddd"

TransferOpener = Callable[[], TransferStore]
InboxOpener = Callable[[], InboxStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def openers(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[TransferOpener, InboxOpener]:
    """Open the same stores again each call (to test persistence)."""
    if backend == "sqlite":
        return (
            lambda: SqliteTransferStore(tmp_path / "region" / "metadata.sqlite3"),
            lambda: SqliteInboxStore(tmp_path / "directory" / "inbox.sqlite3"),
        )
    # Asked for only here, so that the SQLite cases never start a PostgreSQL server.
    dsn: str = request.getfixturevalue("postgres_dsn")
    return (
        lambda: PostgresTransferStore(dsn, pool_size=4),
        lambda: PostgresInboxStore(dsn, pool_size=4),
    )


@pytest.fixture
def open_transfer_store(openers: tuple[TransferOpener, InboxOpener]) -> TransferOpener:
    return openers[0]


@pytest.fixture
def open_inbox_store(openers: tuple[TransferOpener, InboxOpener]) -> InboxOpener:
    return openers[1]


@pytest.fixture
async def transfer_store(open_transfer_store: TransferOpener) -> AsyncIterator[TransferStore]:
    store = open_transfer_store()
    yield store
    await store.close()


@pytest.fixture
async def inbox_store(open_inbox_store: InboxOpener) -> AsyncIterator[InboxStore]:
    store = open_inbox_store()
    yield store
    await store.close()


@pytest.fixture
def short_lock_wait(backend: str, monkeypatch: pytest.MonkeyPatch) -> float:
    """Make a blocked upload_lock give up after this many seconds."""
    wait = 0.05
    module = {"sqlite": geodrop.metadata.sqlite, "postgres": geodrop.metadata.postgres_transfers}
    monkeypatch.setattr(module[backend], "LOCK_WAIT_SECONDS", wait)
    return wait


def transfer(transfer_id: str = ID, **changes: object) -> Transfer:
    base = Transfer(
        id=transfer_id,
        sender="alice",
        receivers=("bob", "carol"),
        filename="报告 final.pdf",
        size=1234,
        sha256=None,
        created_at=NOW,
        expires_at=NOW + 86400,
        content_type="application/pdf",
        tus_metadata={"filename": "报告 final.pdf", "filetype": "application/pdf"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def pairs(entries: list[tuple[Transfer, str]]) -> set[tuple[str, str]]:
    return {(t.id, receiver) for t, receiver in entries}


# ---------------------------------------------------------------------------
# Transfers


async def test_create_and_get(transfer_store: TransferStore) -> None:
    original = transfer()
    await transfer_store.create(original)
    loaded = await transfer_store.get(ID)
    assert loaded == original
    assert loaded is not None
    assert loaded.state is TransferState.UPLOADING
    assert loaded.receivers == ("bob", "carol")
    assert dict(loaded.tus_metadata) == {
        "filename": "报告 final.pdf",
        "filetype": "application/pdf",
    }


async def test_get_unknown_is_none(transfer_store: TransferStore) -> None:
    assert await transfer_store.get(ID) is None


async def test_receiver_order_is_kept(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(receivers=("zed", "amy", "mo")))
    loaded = await transfer_store.get(ID)
    assert loaded is not None
    assert loaded.receivers == ("zed", "amy", "mo")


async def test_complete(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(sha256=None))
    done = await transfer_store.complete(ID, SHA, NOW + 10, NOW + 7 * 86400)
    assert done.state is TransferState.COMPLETE
    assert done.sha256 == SHA
    assert done.completed_at == NOW + 10
    assert done.expires_at == NOW + 7 * 86400
    assert done.created_at == NOW
    assert done.receivers == ("bob", "carol")
    assert await transfer_store.get(ID) == done


async def test_a_transfer_created_complete_is_announced_as_one_completed(
    transfer_store: TransferStore,
) -> None:
    """A whole small file is recorded complete in one step (uploads.create_whole)."""
    whole = transfer(state=TransferState.COMPLETE, completed_at=NOW + 1, expires_at=NOW + 86400)
    await transfer_store.create(whole)
    assert await transfer_store.get(ID) == whole
    unannounced = await transfer_store.unannounced()
    assert pairs(unannounced) == {(ID, "bob"), (ID, "carol")}
    assert all(t == whole for t, _ in unannounced)


async def test_deliveries_start_unannounced_and_unreceived(
    transfer_store: TransferStore,
) -> None:
    await transfer_store.create(transfer())
    assert await transfer_store.deliveries(ID) == [
        Delivery(ID, "bob", announced=False, received_at=None),
        Delivery(ID, "carol", announced=False, received_at=None),
    ]
    assert await transfer_store.deliveries(ID2) == []


async def test_only_completed_transfers_are_announced(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(ID))
    await transfer_store.create(transfer(ID2, receivers=("dave",)))
    assert await transfer_store.unannounced() == []

    done = await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    unannounced = await transfer_store.unannounced()
    assert pairs(unannounced) == {(ID, "bob"), (ID, "carol")}
    assert all(t == done for t, _ in unannounced)


async def test_mark_announced(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer())
    await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    await transfer_store.mark_announced(ID, "bob")
    assert pairs(await transfer_store.unannounced()) == {(ID, "carol")}
    deliveries = {d.receiver: d for d in await transfer_store.deliveries(ID)}
    assert deliveries["bob"].announced
    assert not deliveries["carol"].announced
    await transfer_store.mark_announced(ID, "carol")
    await transfer_store.mark_announced(ID, "carol")
    assert await transfer_store.unannounced() == []


async def test_mark_announced_many(transfer_store: TransferStore) -> None:
    for transfer_id in (ID, ID2):
        await transfer_store.create(transfer(transfer_id))
        await transfer_store.complete(transfer_id, SHA, NOW, NOW + 100)
    await transfer_store.mark_announced_many([(ID, "bob"), (ID2, "carol"), (ID2, "carol")])
    assert pairs(await transfer_store.unannounced()) == {(ID, "carol"), (ID2, "bob")}
    await transfer_store.mark_announced_many([(ID, "carol"), (ID2, "bob"), (ID3, "bob")])
    assert await transfer_store.unannounced() == []


async def test_unannounced_limit(transfer_store: TransferStore) -> None:
    for transfer_id in (ID, ID2, ID3):
        await transfer_store.create(transfer(transfer_id))
        await transfer_store.complete(transfer_id, SHA, NOW, NOW + 100)
    everything = pairs(await transfer_store.unannounced(limit=100))
    assert len(everything) == 6
    some = pairs(await transfer_store.unannounced(limit=4))
    assert len(some) == 4
    assert some <= everything


async def test_mark_received_keeps_the_first_time(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer())
    await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    await transfer_store.mark_received(ID, "carol", NOW + 5, grace_seconds=10)
    await transfer_store.mark_received(ID, "carol", NOW + 50, grace_seconds=10)
    await transfer_store.mark_received(ID, "mallory", NOW + 5, grace_seconds=10)
    deliveries = {d.receiver: d for d in await transfer_store.deliveries(ID)}
    assert set(deliveries) == {"bob", "carol"}
    assert deliveries["carol"].received_at == NOW + 5
    assert deliveries["bob"].received_at is None


async def test_expired(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(ID, expires_at=NOW + 10))
    await transfer_store.create(transfer(ID2, expires_at=NOW + 20))
    await transfer_store.create(transfer(ID3, expires_at=NOW + 30))
    await transfer_store.complete(ID3, SHA, NOW, NOW + 15)  # retention replaces upload expiry

    assert await transfer_store.expired(NOW + 10) == []  # expiring at `now` is not yet expired
    assert {t.id for t in await transfer_store.expired(NOW + 10.5)} == {ID}
    assert {t.id for t in await transfer_store.expired(NOW + 16)} == {ID, ID3}
    assert {t.id for t in await transfer_store.expired(NOW + 100)} == {ID, ID2, ID3}
    assert len(await transfer_store.expired(NOW + 100, limit=2)) == 2
    expired = {t.id: t for t in await transfer_store.expired(NOW + 100)}
    assert expired[ID3].state is TransferState.COMPLETE
    assert expired[ID] == transfer(ID, expires_at=NOW + 10)


async def test_delete_cascades_to_deliveries(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(ID))
    await transfer_store.create(transfer(ID2))
    await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    await transfer_store.complete(ID2, SHA, NOW, NOW + 100)

    await transfer_store.delete(ID)

    assert await transfer_store.get(ID) is None
    assert await transfer_store.deliveries(ID) == []
    assert pairs(await transfer_store.unannounced()) == {(ID2, "bob"), (ID2, "carol")}
    assert {t.id for t in await transfer_store.expired(NOW + 1000)} == {ID2}
    # The id is free again, with no deliveries left over.
    await transfer_store.create(transfer(ID, receivers=("dave",)))
    assert [d.receiver for d in await transfer_store.deliveries(ID)] == ["dave"]


async def test_delete_unknown_is_not_an_error(transfer_store: TransferStore) -> None:
    await transfer_store.delete(ID)
    assert await transfer_store.get(ID) is None


async def test_data_survives_close_and_reopen(open_transfer_store: TransferOpener) -> None:
    store = open_transfer_store()
    await store.create(transfer(ID))
    await store.create(transfer(ID2))
    await store.complete(ID, SHA, NOW, NOW + 100)
    await store.mark_announced(ID, "bob")
    done = await store.mark_received(ID, "bob", NOW + 1, grace_seconds=10)
    await store.create(transfer(ID3))
    await store.retire(ID3, NOW + 2)
    await store.close()

    reopened = open_transfer_store()
    try:
        assert await reopened.get(ID) == done
        assert await reopened.get(ID2) == transfer(ID2)
        assert await reopened.deliveries(ID) == [
            Delivery(ID, "bob", announced=True, received_at=NOW + 1),
            Delivery(ID, "carol", announced=False, received_at=None),
        ]
        assert pairs(await reopened.unannounced()) == {(ID, "carol")}
        assert await reopened.tombstone(ID3) == Tombstone(
            ID3, "alice", ("bob", "carol"), NOW, NOW + 2
        )
    finally:
        await reopened.close()


async def test_sqlite_bookkeeping_commits_do_not_wait_for_the_disk(tmp_path: Path) -> None:
    """Announcement marks and receipts no download limit depends on are not durable;
    the record of an upload and a counted download under a limit are."""
    store = SqliteTransferStore(tmp_path / "transfers.sqlite3")
    try:
        await store.create(transfer(ID))
        await store.complete(ID, SHA, NOW + 1, NOW + 5000)
        assert store._db._durable_commits

        await store.mark_announced_many([(ID, "bob"), (ID, "carol")])
        assert not store._db._durable_commits

        await store.mark_received(ID, "bob", NOW + 2, grace_seconds=60, max_downloads=2)
        assert store._db._durable_commits

        await store.mark_received(ID, "carol", NOW + 3, grace_seconds=60)
        assert not store._db._durable_commits
        deliveries = await store.deliveries(ID)
        assert [(d.announced, d.received_at) for d in deliveries] == [
            (True, NOW + 2),
            (True, NOW + 3),
        ]
    finally:
        await store.close()


# ---------------------------------------------------------------------------
# Upload locks


async def test_upload_lock_is_exclusive(transfer_store: TransferStore) -> None:
    events: list[str] = []
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with transfer_store.upload_lock(ID):
            events.append("first in")
            first_inside.set()
            await release_first.wait()
            events.append("first out")

    async def second() -> None:
        async with transfer_store.upload_lock(ID):
            events.append("second in")

    first_task = asyncio.create_task(first())
    await first_inside.wait()
    second_task = asyncio.create_task(second())
    await asyncio.sleep(0.02)
    assert events == ["first in"]  # the second acquirer is waiting
    release_first.set()
    await asyncio.gather(first_task, second_task)
    assert events == ["first in", "first out", "second in"]


async def test_upload_locks_of_different_uploads_are_independent(
    transfer_store: TransferStore,
) -> None:
    async with transfer_store.upload_lock(ID):
        async with asyncio.timeout(1):
            async with transfer_store.upload_lock(ID2):
                pass


async def test_blocked_upload_lock_raises_locked(
    transfer_store: TransferStore, short_lock_wait: float
) -> None:
    async with transfer_store.upload_lock(ID):
        started = asyncio.get_running_loop().time()
        with pytest.raises(Locked) as raised:
            async with transfer_store.upload_lock(ID):
                pytest.fail("acquired a held lock")
        waited = asyncio.get_running_loop().time() - started
        assert raised.value.status == 423
        assert short_lock_wait * 0.9 <= waited < 2
    # The lock is free again afterwards.
    async with asyncio.timeout(1):
        async with transfer_store.upload_lock(ID):
            pass


async def test_upload_lock_is_released_on_error(transfer_store: TransferStore) -> None:
    with pytest.raises(RuntimeError):
        async with transfer_store.upload_lock(ID):
            raise RuntimeError("write failed")
    async with asyncio.timeout(1):
        async with transfer_store.upload_lock(ID):
            pass


async def test_upload_lock_stays_exclusive_when_a_newcomer_arrives_at_hand_over(
    transfer_store: TransferStore,
) -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def hold(name: str) -> None:
        async with transfer_store.upload_lock(ID):
            inside.append(name)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            await asyncio.sleep(0.01)
            inside.remove(name)

    async with transfer_store.upload_lock(ID):
        waiter = asyncio.create_task(hold("waiter"))
        await asyncio.sleep(0.01)  # the waiter is queued on the lock
    # Released: the waiter is woken but has not run yet when a newcomer asks.
    newcomer = asyncio.create_task(hold("newcomer"))
    await asyncio.gather(waiter, newcomer)
    assert overlaps == []


async def test_upload_lock_under_contention(transfer_store: TransferStore) -> None:
    inside = 0
    most_inside = 0
    entries = 0

    async def hold(delay: float) -> None:
        nonlocal inside, most_inside, entries
        await asyncio.sleep(delay)
        async with transfer_store.upload_lock(ID):
            inside += 1
            entries += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(hold((i % 5) * 0.001) for i in range(30)))
    assert entries == 30
    assert most_inside == 1


# ---------------------------------------------------------------------------
# Inboxes


def entry(file_id: str = ID, receiver: str = "bob", **changes: object) -> InboxEntry:
    base = InboxEntry(
        cursor=0,
        receiver=receiver,
        file_id=file_id,
        sender="alice",
        filename="报告.pdf",
        size=1234,
        sha256=SHA,
        region="north",
        created_at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_add_assigns_increasing_cursors(inbox_store: InboxStore) -> None:
    first = await inbox_store.add(entry(ID, "bob"))
    second = await inbox_store.add(entry(ID2, "bob"))
    third = await inbox_store.add(entry(ID, "carol"))
    assert 0 < first.cursor < second.cursor < third.cursor
    assert first == entry(ID, "bob", cursor=first.cursor)


async def test_add_is_idempotent_per_file_and_receiver(inbox_store: InboxStore) -> None:
    first = await inbox_store.add(entry(ID, "bob"))
    again = await inbox_store.add(entry(ID, "bob", filename="renamed.pdf", created_at=NOW + 9))
    assert again == first
    assert await inbox_store.list("bob", 0, 100) == [first]


async def test_add_many_stores_a_batch_in_order(inbox_store: InboxStore) -> None:
    before = await inbox_store.add(entry(ID3, "bob"))
    batch = [entry(ID, "bob"), entry(ID, "carol"), entry(ID2, "bob"), entry(ID3, "bob")]
    stored = await inbox_store.add_many(batch)
    assert [(e.file_id, e.receiver) for e in stored] == [(e.file_id, e.receiver) for e in batch]
    assert before.cursor < stored[0].cursor < stored[1].cursor < stored[2].cursor
    assert stored[3] == before  # already there: answered as stored
    assert await inbox_store.list("bob", 0, 100) == [before, stored[0], stored[2]]
    assert await inbox_store.list("carol", 0, 100) == [stored[1]]
    assert await inbox_store.add_many(batch) == stored


async def test_list_after_cursor(inbox_store: InboxStore) -> None:
    added = [await inbox_store.add(entry(file_id, "bob")) for file_id in (ID, ID2, ID3)]
    await inbox_store.add(entry(ID, "carol"))

    assert await inbox_store.list("bob", 0, 100) == added
    assert await inbox_store.list("bob", added[0].cursor, 100) == added[1:]
    assert await inbox_store.list("bob", added[2].cursor, 100) == []
    assert await inbox_store.list("bob", 0, 2) == added[:2]
    assert [e.file_id for e in await inbox_store.list("carol", 0, 100)] == [ID]
    assert await inbox_store.list("dave", 0, 100) == []


async def test_remove_drops_every_receivers_entry(inbox_store: InboxStore) -> None:
    await inbox_store.add(entry(ID, "bob"))
    await inbox_store.add(entry(ID, "carol"))
    kept = await inbox_store.add(entry(ID2, "bob"))

    await inbox_store.remove(ID)
    await inbox_store.remove(ID)
    await inbox_store.remove(ID3)

    assert await inbox_store.list("bob", 0, 100) == [kept]
    assert await inbox_store.list("carol", 0, 100) == []


async def test_cursors_are_never_reused(inbox_store: InboxStore) -> None:
    # A client that has read up to a cursor must never miss a later entry.
    gone = await inbox_store.add(entry(ID3, "bob"))
    await inbox_store.remove(ID3)
    later = await inbox_store.add(entry(ID, "bob"))
    assert later.cursor > gone.cursor
    assert await inbox_store.list("bob", gone.cursor, 100) == [later]


async def test_inbox_survives_close_and_reopen(open_inbox_store: InboxOpener) -> None:
    store = open_inbox_store()
    added = await store.add(entry(ID, "bob"))
    await store.close()
    reopened = open_inbox_store()
    try:
        assert await reopened.list("bob", 0, 100) == [added]
        assert (await reopened.add(entry(ID, "bob"))).cursor == added.cursor
        assert (await reopened.add(entry(ID2, "bob"))).cursor > added.cursor
    finally:
        await reopened.close()


async def test_usage_counts_bytes_held_and_recent_uploads(transfer_store: TransferStore) -> None:
    for i, (created, size) in enumerate([(100.0, 10), (200.0, 20), (300.0, 30)]):
        await transfer_store.create(
            Transfer(
                id=f"north.{'a' * 25}{i}",
                sender="quota-user",
                receivers=("bob",),
                filename="f",
                size=size,
                sha256=None,
                created_at=created,
                expires_at=10_000.0,
            )
        )
    usage = await transfer_store.usage("quota-user", since=150.0)
    assert usage == Usage(bytes_held=60, uploads_since=2, oldest_since=200.0)
    assert await transfer_store.usage("nobody", since=0.0) == Usage(0, 0)


# ---------------------------------------------------------------------------
# Retention: downloads, delivery, tombstones


async def test_mark_received_counts_downloads_and_waits_for_every_receiver(
    transfer_store: TransferStore,
) -> None:
    await transfer_store.create(transfer())
    await transfer_store.complete(ID, SHA, NOW, NOW + 1000)

    first = await transfer_store.mark_received(ID, "bob", NOW + 5, grace_seconds=60)
    assert first is not None
    assert first.downloads == 1
    assert first.expires_at == NOW + 1000  # carol has not got it yet
    again = await transfer_store.mark_received(ID, "bob", NOW + 6, grace_seconds=60)
    assert again is not None
    assert again.downloads == 2
    assert again.expires_at == NOW + 1000

    last = await transfer_store.mark_received(ID, "carol", NOW + 10, grace_seconds=60)
    assert last is not None
    assert last.downloads == 3
    assert last.expires_at == NOW + 70  # every receiver has it: gone after the grace
    assert await transfer_store.get(ID) == last
    # A later download never moves the end later again.
    later = await transfer_store.mark_received(ID, "bob", NOW + 20, grace_seconds=60)
    assert later is not None
    assert later.expires_at == NOW + 70


async def test_grace_never_extends_retention(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(receivers=("bob",)))
    await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    done = await transfer_store.mark_received(ID, "bob", NOW + 90, grace_seconds=3600)
    assert done is not None
    assert done.expires_at == NOW + 100


async def test_non_receivers_change_nothing(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(receivers=("bob",)))
    before = await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    after = await transfer_store.mark_received(
        ID, "alice", NOW + 1, grace_seconds=0, max_downloads=1
    )
    assert after == before
    assert after is not None
    assert after.downloads == 0
    assert await transfer_store.mark_received(ID2, "bob", NOW, grace_seconds=0) is None


async def test_max_downloads_brings_the_end_forward(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer())
    await transfer_store.complete(ID, SHA, NOW, NOW + 1000)
    first = await transfer_store.mark_received(ID, "bob", NOW + 1, grace_seconds=5, max_downloads=2)
    assert first is not None
    assert first.expires_at == NOW + 1000
    second = await transfer_store.mark_received(
        ID, "bob", NOW + 2, grace_seconds=5, max_downloads=2
    )
    assert second is not None
    assert second.downloads == 2
    assert second.expires_at == NOW + 7  # carol never downloaded, but the limit is reached


async def test_retire_leaves_only_a_tombstone(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(ID, receivers=("bob", "carol")))
    await transfer_store.complete(ID, SHA, NOW + 1, NOW + 100)
    await transfer_store.mark_announced(ID, "bob")

    tombstone = await transfer_store.retire(ID, NOW + 200)

    assert tombstone == Tombstone(ID, "alice", ("bob", "carol"), NOW, NOW + 200)
    assert await transfer_store.tombstone(ID) == tombstone
    assert await transfer_store.get(ID) is None
    assert await transfer_store.deliveries(ID) == []
    assert await transfer_store.expired(NOW + 10_000) == []
    assert await transfer_store.unannounced() == []
    assert tombstone is not None
    assert tombstone.may_access("alice")
    assert tombstone.may_access("carol")
    assert not tombstone.may_access("mallory")
    # Retiring again keeps the first tombstone; an unknown id has none.
    assert await transfer_store.retire(ID, NOW + 300) == tombstone
    assert await transfer_store.retire(ID2, NOW) is None
    assert await transfer_store.tombstone(ID2) is None


async def test_retired_complete_files_queue_inbox_removal(transfer_store: TransferStore) -> None:
    await transfer_store.create(transfer(ID))
    await transfer_store.complete(ID, SHA, NOW, NOW + 100)
    await transfer_store.create(transfer(ID2))  # never completed: never announced
    await transfer_store.retire(ID, NOW + 1)
    await transfer_store.retire(ID2, NOW + 1)

    assert await transfer_store.pending_inbox_removals() == [ID]
    await transfer_store.mark_inbox_removed(ID)
    assert await transfer_store.pending_inbox_removals() == []


async def test_tombstones_are_forgotten_once_old_and_withdrawn(
    transfer_store: TransferStore,
) -> None:
    for transfer_id, retired_at in ((ID, NOW + 10), (ID2, NOW + 20), (ID3, NOW + 30)):
        await transfer_store.create(transfer(transfer_id))
        await transfer_store.complete(transfer_id, SHA, NOW, NOW + 5)
        await transfer_store.retire(transfer_id, retired_at)
    await transfer_store.mark_inbox_removed(ID)
    await transfer_store.mark_inbox_removed(ID3)

    assert await transfer_store.forget_tombstones(NOW + 10) == 0  # none retired before
    # ID2's inbox entries are not yet withdrawn: its tombstone stays until they are.
    assert await transfer_store.forget_tombstones(NOW + 25) == 1
    assert await transfer_store.tombstone(ID) is None
    assert await transfer_store.tombstone(ID2) is not None
    assert await transfer_store.tombstone(ID3) is not None
    await transfer_store.mark_inbox_removed(ID2)
    assert await transfer_store.forget_tombstones(NOW + 1000) == 2
    assert await transfer_store.tombstone(ID2) is None
    assert await transfer_store.tombstone(ID3) is None


async def test_tombstones_hold_no_bytes_but_count_as_uploads(
    transfer_store: TransferStore,
) -> None:
    await transfer_store.create(transfer(ID, sender="quota-user", size=100, created_at=300.0))
    await transfer_store.create(transfer(ID2, sender="quota-user", size=50, created_at=200.0))
    await transfer_store.retire(ID2, 400.0)
    usage = await transfer_store.usage("quota-user", since=150.0)
    assert usage == Usage(bytes_held=100, uploads_since=2, oldest_since=200.0)
    assert (await transfer_store.usage("quota-user", since=250.0)).uploads_since == 1


async def test_bytes_held_follow_each_senders_transfers_as_they_come_and_go(
    transfer_store: TransferStore,
) -> None:
    await transfer_store.create(transfer(ID, sender="quota-user", size=5 * 1024**3))
    await transfer_store.create(transfer(ID2, sender="quota-user", size=7))
    await transfer_store.create(transfer(ID3, sender="other-user", size=11))
    assert (await transfer_store.usage("quota-user", since=0.0)).bytes_held == 5 * 1024**3 + 7
    await transfer_store.complete(ID, "ab" * 32, NOW, NOW + 100)  # no change in size
    assert (await transfer_store.usage("quota-user", since=0.0)).bytes_held == 5 * 1024**3 + 7
    await transfer_store.retire(ID, NOW + 1)
    assert (await transfer_store.usage("quota-user", since=0.0)).bytes_held == 7
    await transfer_store.retire(ID2, NOW + 1)
    gone = await transfer_store.usage("quota-user", since=0.0)
    assert gone == Usage(bytes_held=0, uploads_since=2, oldest_since=NOW)
    # Another sender's figure never moved; a sender seen again starts from nothing.
    assert (await transfer_store.usage("other-user", since=0.0)).bytes_held == 11
    await transfer_store.create(transfer(ID4, sender="quota-user", size=3))
    assert (await transfer_store.usage("quota-user", since=0.0)).bytes_held == 3


async def test_uploads_since_counts_exactly_the_window_however_it_cuts_the_hours(
    transfer_store: TransferStore,
) -> None:
    hour = 3600.0
    start = 400_000 * hour  # on the hour
    times = [
        start + 10,  # before the window
        start + 30,  # the window's first, partial hour
        start + 0.5 * hour,
        start + hour,  # whole hours
        start + 5 * hour + 1,
        start + 30 * hour,
    ]
    for n, created in enumerate(times):
        await transfer_store.create(
            transfer(f"north.{n:026d}", sender="hourly", created_at=created)
        )
    await transfer_store.retire(f"north.{2:026d}", start + 40 * hour)  # a tombstone still counts
    since = start + 20
    usage = await transfer_store.usage("hourly", since=since)
    assert (usage.uploads_since, usage.oldest_since) == (5, start + 30)
    assert (await transfer_store.usage("hourly", since=start + hour)).uploads_since == 3
    assert (await transfer_store.usage("hourly", since=start + hour + 1)).uploads_since == 2
    assert (await transfer_store.usage("hourly", since=start + 31 * hour)).uploads_since == 0
    assert (await transfer_store.usage("someone-else", since=since)).uploads_since == 0


class _RoomFor:
    """An admission rule: at most ``limit`` bytes held; records each usage it saw."""

    def __init__(self, limit: int, size: int) -> None:
        self.limit, self.size = limit, size
        self.seen: list[Usage] = []

    def __call__(self, usage: Usage) -> None:
        self.seen.append(usage)
        if usage.bytes_held + self.size > self.limit:
            raise QuotaExceeded("no room")


async def test_concurrent_admitted_creations_never_share_one_usage(
    transfer_store: TransferStore,
) -> None:
    admit = _RoomFor(limit=300, size=100)
    ids = [f"north.{n:026d}" for n in range(8)]
    outcomes = await asyncio.gather(
        *(
            transfer_store.create_admitted(transfer(i, sender="racer", size=100), admit, NOW)
            for i in ids
        ),
        return_exceptions=True,
    )
    admitted = [i for i, outcome in zip(ids, outcomes, strict=True) if outcome is None]
    assert len(admitted) == 3
    assert all(isinstance(o, QuotaExceeded) for o in outcomes if o is not None)
    # Each admission saw the ones before it; the refused left nothing behind.
    assert sorted(u.bytes_held for u in admit.seen)[:4] == [0, 100, 200, 300]
    assert (await transfer_store.usage("racer", since=0.0)).bytes_held == 300
    stored = [await transfer_store.get(i) for i in ids]
    assert [t.id for t in stored if t is not None] == admitted


async def test_bytes_stored_counts_files_and_unfinished_uploads_of_every_sender(
    transfer_store: TransferStore,
) -> None:
    assert await transfer_store.bytes_stored() == 0
    await transfer_store.create(transfer(ID, size=100))
    await transfer_store.create(transfer(ID2, sender="carol", size=5 * 1024**3))
    await transfer_store.create(transfer(ID3, size=7))
    await transfer_store.complete(ID, "ab" * 32, NOW, NOW + 100)
    # A complete file and two unfinished uploads at their declared sizes, beyond 32 bits.
    assert await transfer_store.bytes_stored() == 100 + 5 * 1024**3 + 7
    await transfer_store.retire(ID, NOW + 1)
    await transfer_store.retire(ID3, NOW + 1)
    assert await transfer_store.bytes_stored() == 5 * 1024**3
