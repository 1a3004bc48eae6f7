"""Which waiting receivers an inbox change wakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from geodrop.directory.inbox import Inboxes
from geodrop.metadata.base import ANY_RECEIVER, InboxEntry
from geodrop.metadata.sqlite import SqliteInboxStore

ID = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"


@pytest.fixture
async def inboxes(tmp_path: Path) -> AsyncIterator[Inboxes]:
    store = SqliteInboxStore(tmp_path / "inbox.sqlite3")
    yield Inboxes(store)
    await store.close()


def _entry(receiver: str) -> InboxEntry:
    return InboxEntry(0, receiver, ID, "alice", "f.txt", 1, "ab" * 32, "north", 0.0)


async def _wait(inboxes: Inboxes, receiver: str) -> asyncio.Task[list[InboxEntry]]:
    task = asyncio.create_task(inboxes.wait_for_entries(receiver, 0, 30))
    await asyncio.sleep(0.05)  # it has looked once and now waits
    assert not task.done()
    return task


async def test_an_add_wakes_that_receivers_waiters_only(inboxes: Inboxes) -> None:
    bob = [await _wait(inboxes, "bob") for _ in range(2)]
    carol = await _wait(inboxes, "carol")
    await inboxes.add(_entry("bob"))
    for task in bob:
        assert [e.receiver for e in await asyncio.wait_for(task, 2)] == ["bob"]
    await asyncio.sleep(0.05)
    assert not carol.done()
    carol.cancel()
    with pytest.raises(asyncio.CancelledError):
        await carol


async def test_an_add_heard_from_another_process_wakes_its_receiver(inboxes: Inboxes) -> None:
    waiting = await _wait(inboxes, "bob")
    # The entry arrives through the store, as another directory process adds it…
    await inboxes.store.add(_entry("bob"))
    # …and the store's notification is what wakes the waiter.
    inboxes.changed("bob")
    assert len(await asyncio.wait_for(waiting, 2)) == 1


async def test_any_receiver_makes_every_waiter_look_again(inboxes: Inboxes) -> None:
    waiting = [await _wait(inboxes, name) for name in ("bob", "carol")]
    await inboxes.store.add(_entry("bob"))
    await inboxes.store.add(_entry("carol"))
    inboxes.changed(ANY_RECEIVER)
    results = await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert [[e.receiver for e in entries] for entries in results] == [["bob"], ["carol"]]


async def test_closing_releases_every_waiter_empty_handed(inboxes: Inboxes) -> None:
    waiting = [await _wait(inboxes, name) for name in ("bob", "carol")]
    await inboxes.close_waiters()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 2) == [[], []]
