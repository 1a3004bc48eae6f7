"""What matters only when several processes share one PostgreSQL database.

Each store instance below stands for one process: it has its own pool, its own lock
session and its own listening connection, exactly as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
import pytest

import geodrop.metadata.postgres_transfers
from geodrop.errors import Locked
from geodrop.metadata.base import (
    ANY_RECEIVER,
    InboxEntry,
    RegionBeat,
    Tombstone,
    Transfer,
    UnitLinkLoad,
)
from geodrop.metadata.postgres_inbox import PostgresInboxStore
from geodrop.metadata.postgres_transfers import PostgresTransferStore

pytestmark = pytest.mark.postgres

NOW: Final = 1_700_000_000.0
SHA: Final = "ab" * 32
ID: Final = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"
SHORT_WAIT: Final = 0.2


@pytest.fixture
async def transfer_stores(postgres_dsn: str) -> AsyncIterator[list[PostgresTransferStore]]:
    """Two transfer stores on one database, as two access units of a region hold them."""
    stores = [PostgresTransferStore(postgres_dsn, pool_size=3) for _ in range(2)]
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
async def inbox_stores(postgres_dsn: str) -> AsyncIterator[list[PostgresInboxStore]]:
    """Two inbox stores on one database, as two directory processes hold them."""
    stores = [PostgresInboxStore(postgres_dsn, pool_size=3) for _ in range(2)]
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(geodrop.metadata.postgres_transfers, "LOCK_WAIT_SECONDS", SHORT_WAIT)
    return SHORT_WAIT


async def _terminate_lock_sessions(dsn: str) -> int:
    """Kill every session of the database holding an advisory lock (a lost connection)."""
    admin = await asyncpg.connect(dsn)
    try:
        killed: int = await admin.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) AND pid <> pg_backend_pid()"
        )
        return killed
    finally:
        await admin.close()


async def _still_waiting(task: asyncio.Task[object], seconds: float = 0.15) -> bool:
    await asyncio.sleep(seconds)
    return not task.done()


# ---------------------------------------------------------------------------
# Locks across processes


async def test_an_upload_lock_blocks_another_process_then_gives_locked(
    transfer_stores: list[PostgresTransferStore], short_lock_wait: float
) -> None:
    first, second = transfer_stores
    loop = asyncio.get_running_loop()
    async with first.upload_lock(ID):
        started = loop.time()
        with pytest.raises(Locked) as raised:
            async with second.upload_lock(ID):
                pytest.fail("two processes wrote one upload at once")
        waited = loop.time() - started
        assert raised.value.status == 423
        assert short_lock_wait * 0.9 <= waited < short_lock_wait + 1
    async with asyncio.timeout(2), second.upload_lock(ID):
        pass


async def test_a_waiting_process_gets_the_upload_lock_once_released(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    order: list[str] = []

    async def later() -> None:
        async with second.upload_lock(ID):
            order.append("second in")

    async with first.upload_lock(ID):
        waiting = asyncio.create_task(later())
        assert await _still_waiting(waiting)
        order.append("first out")
    await asyncio.wait_for(waiting, 2)
    assert order == ["first out", "second in"]


async def test_a_sender_lock_waits_as_long_as_it_takes_across_processes(
    transfer_stores: list[PostgresTransferStore], short_lock_wait: float
) -> None:
    first, second = transfer_stores
    entered = asyncio.Event()

    async def negotiate() -> None:
        async with second.sender_lock("alice"):
            entered.set()

    async with first.sender_lock("alice"):
        waiting = asyncio.create_task(negotiate())
        # Well past the upload lock's wait: a sender lock never gives up.
        assert await _still_waiting(waiting, short_lock_wait * 2)
        # Another sender is not held up.
        async with asyncio.timeout(2), second.sender_lock("bob"):
            pass
    await asyncio.wait_for(waiting, 2)
    assert entered.is_set()


async def test_try_exclusive_across_processes_never_waits(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    async with first.try_exclusive("expiry") as mine:
        assert mine
        async with asyncio.timeout(1):
            async with second.try_exclusive("expiry") as theirs:
                assert not theirs
            # Nor twice within one process.
            async with first.try_exclusive("expiry") as again:
                assert not again
            async with second.try_exclusive("announce") as other_job:
                assert other_job
    async with second.try_exclusive("expiry") as theirs:
        assert theirs


async def test_upload_sender_and_job_locks_of_one_name_are_distinct(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    async with (
        first.upload_lock("x"),
        first.sender_lock("x"),
        asyncio.timeout(2),
        second.try_exclusive("x") as mine,
    ):
        assert mine


async def test_a_cancelled_waiter_leaves_no_lock_behind(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores

    async def wait_for_it() -> None:
        async with second.upload_lock(ID):
            pytest.fail("acquired a held lock")

    async with first.upload_lock(ID):
        waiters = [asyncio.create_task(wait_for_it()) for _ in range(3)]
        await asyncio.sleep(0.05)
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
    # Neither process holds it now: each takes it in turn at once.
    for store in (second, first, second):
        async with asyncio.timeout(2), store.upload_lock(ID):
            pass


async def test_a_holder_cancelled_inside_its_block_releases_the_lock(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    inside = asyncio.Event()

    async def hold_forever() -> None:
        async with first.upload_lock(ID):
            inside.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold_forever())
    await inside.wait()
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with asyncio.timeout(2), second.upload_lock(ID):
        pass


async def test_a_lost_connection_releases_its_locks(
    transfer_stores: list[PostgresTransferStore], postgres_dsn: str
) -> None:
    first, second = transfer_stores
    async with first.upload_lock(ID):
        assert await _terminate_lock_sessions(postgres_dsn) == 1
        # The other process no longer waits for a holder whose session died.
        async with asyncio.timeout(2), second.upload_lock(ID):
            pass
    # The first process reconnects and locks again as usual.
    async with asyncio.timeout(2), first.upload_lock(ID):
        waiting = asyncio.create_task(_enter(second, ID))
        assert await _still_waiting(waiting)
    await asyncio.wait_for(waiting, 2)


async def _enter(store: PostgresTransferStore, upload: str) -> None:
    async with store.upload_lock(upload):
        pass


# ---------------------------------------------------------------------------
# One transfer changed by two processes at once


def _transfer(receivers: tuple[str, ...], transfer_id: str = ID) -> Transfer:
    return Transfer(
        id=transfer_id,
        sender="alice",
        receivers=receivers,
        filename="f.bin",
        size=10,
        sha256=None,
        created_at=NOW,
        expires_at=NOW + 1000,
    )


async def test_the_last_two_receivers_at_once_still_end_the_retention(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    for round_ in range(5):
        transfer_id = f"north.{round_:026d}"
        await first.create(_transfer(("bob", "carol"), transfer_id))
        await first.complete(transfer_id, SHA, NOW, NOW + 1000)
        await asyncio.gather(
            first.mark_received(transfer_id, "bob", NOW + 1, grace_seconds=60),
            second.mark_received(transfer_id, "carol", NOW + 1, grace_seconds=60),
        )
        done = await first.get(transfer_id)
        assert done is not None
        assert (done.downloads, done.expires_at) == (2, NOW + 61)


async def test_two_processes_retiring_one_transfer_agree_on_its_tombstone(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    await first.create(_transfer(("bob",)))
    results = await asyncio.gather(first.retire(ID, NOW + 5), second.retire(ID, NOW + 5))
    expected = Tombstone(ID, "alice", ("bob",), NOW, NOW + 5)
    assert list(results) == [expected, expected]
    assert await second.get(ID) is None


# ---------------------------------------------------------------------------
# Link loads


def _load(link: str, active: int, rate: float, sent: int = 0, received: int = 0) -> UnitLinkLoad:
    return UnitLinkLoad(link, active, rate, sent, received)


async def test_link_loads_are_summed_over_the_other_units(
    transfer_stores: list[PostgresTransferStore],
) -> None:
    first, second = transfer_stores
    await first.publish_link_loads("a", [_load("telecom", 5, 100.0, 1, 2)], NOW)
    await second.publish_link_loads(
        "b", [_load("telecom", 2, 10.0, 10, 20), _load("unicom", 1, 1.5, 5, 6)], NOW
    )
    await second.publish_link_loads("c", [_load("telecom", 3, 20.0, 100, 200)], NOW)
    await first.publish_link_loads("stale", [_load("telecom", 1000, 1e9)], NOW - 60)

    seen_by_a = await first.other_units_link_loads("a", fresh_after=NOW - 10)
    assert seen_by_a == [_load("telecom", 5, 30.0, 110, 220), _load("unicom", 1, 1.5, 5, 6)]
    seen_by_b = await first.other_units_link_loads("b", fresh_after=NOW - 10)
    assert seen_by_b == [_load("telecom", 8, 120.0, 101, 202)]

    # A unit's new figures replace its old ones (they are not added to them).
    await second.publish_link_loads("c", [_load("telecom", 0, 0.0, 150, 250)], NOW + 1)
    assert await second.other_units_link_loads("a", fresh_after=NOW - 10) == [
        _load("telecom", 2, 10.0, 160, 270),
        _load("unicom", 1, 1.5, 5, 6),
    ]
    # Once older than ``fresh_after``, a unit counts no more.
    assert await second.other_units_link_loads("a", fresh_after=NOW + 0.5) == [
        _load("telecom", 0, 0.0, 150, 250)
    ]


# ---------------------------------------------------------------------------
# Inboxes and heartbeats


def _entry(file_id: str, receiver: str) -> InboxEntry:
    return InboxEntry(0, receiver, file_id, "alice", "f.bin", 1, SHA, "north", NOW)


@contextlib.asynccontextmanager
async def _listening(
    store: PostgresInboxStore,
) -> AsyncIterator[asyncio.Queue[str]]:
    """``store.listen`` running in a task; yields the receivers it reports."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(store.listen(heard.put_nowait))
    try:
        # Listening once it has said so (the first call is the wildcard).
        assert await asyncio.wait_for(heard.get(), 5) == ANY_RECEIVER
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_entry_added_by_one_process_is_heard_by_another(
    inbox_stores: list[PostgresInboxStore],
) -> None:
    first, second = inbox_stores
    async with _listening(second) as heard:
        await first.add(_entry("north.aaaaaaaaaaaaaaaaaaaaaaaaaa", "bob"))
        assert await asyncio.wait_for(heard.get(), 2) == "bob"
        await second.add(_entry("north.bbbbbbbbbbbbbbbbbbbbbbbbbb", "carol"))
        assert await asyncio.wait_for(heard.get(), 2) == "carol"
    assert [e.receiver for e in await second.list("bob", 0, 10)] == ["bob"]


async def test_each_receiver_of_a_batch_is_heard_once_by_another_process(
    inbox_stores: list[PostgresInboxStore],
) -> None:
    first, second = inbox_stores
    async with _listening(second) as heard:
        await first.add_many(
            [
                _entry("north.cccccccccccccccccccccccccc", "dave"),
                _entry("north.dddddddddddddddddddddddddd", "erin"),
                _entry("north.eeeeeeeeeeeeeeeeeeeeeeeeee", "dave"),
            ]
        )
        told = {await asyncio.wait_for(heard.get(), 2) for _ in range(2)}
        assert told == {"dave", "erin"}
        assert heard.empty()
    assert len(await second.list("dave", 0, 10)) == 2


async def test_listening_resumes_after_the_connection_is_lost(
    inbox_stores: list[PostgresInboxStore], postgres_dsn: str
) -> None:
    first, second = inbox_stores
    async with _listening(second) as heard:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await admin.close()
        assert killed == 1
        # Anything may have been missed meanwhile: every waiter is told to look again.
        assert await asyncio.wait_for(heard.get(), 5) == ANY_RECEIVER
        await first.add(_entry("north.aaaaaaaaaaaaaaaaaaaaaaaaaa", "bob"))
        assert await asyncio.wait_for(heard.get(), 2) == "bob"


async def test_concurrent_adds_never_let_a_reader_skip_a_cursor(
    inbox_stores: list[PostgresInboxStore],
) -> None:
    first, second = inbox_stores
    count = 40
    seen: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        # A receiver reading after its last cursor, as the long-poll does.
        after = 0
        while True:
            finished = done.is_set()
            entries = await first.list("bob", after, 1000)
            seen.extend(e.cursor for e in entries)
            after = entries[-1].cursor if entries else after
            if finished and not entries:
                return

    async def add(store: PostgresInboxStore, i: int) -> None:
        await store.add(_entry(f"north.{i:026d}", "bob"))

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(add(inbox_stores[i % 2], i) for i in range(count)))
    done.set()
    await asyncio.wait_for(reader, 10)
    assert sorted(seen) == seen
    assert len(seen) == count
    assert seen == [e.cursor for e in await second.list("bob", 0, 1000)]


async def test_a_later_add_is_not_visible_before_an_earlier_one(
    inbox_stores: list[PostgresInboxStore], postgres_dsn: str
) -> None:
    first, second = inbox_stores
    early, late = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa", "north.bbbbbbbbbbbbbbbbbbbbbbbbbb"
    await first.list("bob", 0, 1)  # both stores connected and migrated
    await second.list("bob", 0, 1)
    blocker = await asyncpg.connect(postgres_dsn)
    try:
        # An uncommitted row of the same file and receiver holds the first add up *after*
        # it has drawn its cursor, for as long as this transaction stays open.
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            "INSERT INTO inbox (receiver, file_id, sender, filename, size, sha256, region,"
            " created_at) VALUES ('bob', $1, 'alice', 'f', 1, $2, 'north', 0)",
            early,
            SHA,
        )
        adding_early = asyncio.create_task(first.add(_entry(early, "bob")))
        await asyncio.sleep(0.2)
        adding_late = asyncio.create_task(second.add(_entry(late, "bob")))
        await asyncio.sleep(0.3)
        visible_before = await first.list("bob", 0, 100)
        await holding.rollback()
        added = await asyncio.wait_for(asyncio.gather(adding_early, adding_late), 5)
    finally:
        await blocker.close()
    # A reader that saw the late entry first would never ask for the early one again.
    assert visible_before == []
    assert [e.file_id for e in await second.list("bob", 0, 100)] == [early, late]
    assert added[0].cursor < added[1].cursor


async def test_heartbeats_are_shared(inbox_stores: list[PostgresInboxStore]) -> None:
    first, second = inbox_stores
    assert await second.heartbeats() == []
    await first.record_heartbeat("north", [{"name": "telecom", "load": 0.5}], NOW)
    assert await second.heartbeats() == [
        RegionBeat("north", NOW, 1, [{"name": "telecom", "load": 0.5}])
    ]
    await second.record_heartbeat("north", [{"name": "telecom", "load": 0.25}], NOW + 1)
    await second.record_heartbeat("south", [], NOW + 2)
    assert await first.heartbeats() == [
        RegionBeat("north", NOW + 1, 2, [{"name": "telecom", "load": 0.25}]),
        RegionBeat("south", NOW + 2, 1, []),
    ]


# ---------------------------------------------------------------------------
# Commits that do not wait for the disk


async def test_a_lazy_commit_is_lazy_for_its_own_transaction_only(postgres_dsn: str) -> None:
    """``durable=False`` turns synchronous_commit off inside its transaction, and the
    pooled connection's next transactions wait for the disk again."""
    # The tests' server commits without waiting for the disk (it runs without fsync);
    # this test's database waits, as a production one does.
    admin = await asyncpg.connect(postgres_dsn)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    finally:
        await admin.close()
    store = PostgresTransferStore(postgres_dsn, pool_size=1)
    database = store._db
    show = "SHOW synchronous_commit"
    try:
        async with database.transaction() as c:
            assert await c.fetchval(show) == "on"
        async with database.transaction(durable=False) as c:
            assert await c.fetchval(show) == "off"
        # The pool has one connection: the same one, back to the server's setting.
        async with database.transaction() as c:
            assert await c.fetchval(show) == "on"
        async with database.connection() as c:
            assert await c.fetchval(show) == "on"
    finally:
        await store.close()
