"""Region health: answered from a copy of the store's heartbeats, on a wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from geodrop.directory.health import RegionHealth
from geodrop.metadata.sqlite import SqliteInboxStore

TIMEOUT = 10.0
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteInboxStore]:
    opened = SqliteInboxStore(tmp_path / "inbox.sqlite3")
    yield opened
    await opened.close()


def _entry(health: RegionHealth, region: str) -> dict[str, object]:
    return next(entry for entry in health.snapshot() if entry["region"] == region)


async def test_every_region_is_presumed_alive_for_one_timeout_after_start(
    store: SqliteInboxStore,
) -> None:
    clock = Clock()
    health = RegionHealth(["north", "south"], TIMEOUT, store, clock)
    clock.now += TIMEOUT
    assert health.is_alive("north")
    assert not health.is_alive("atlantis")
    clock.now += 0.5
    assert not health.is_alive("north")
    assert _entry(health, "north") == {
        "region": "north",
        "alive": False,
        "seconds_since_heartbeat": TIMEOUT + 0.5,
        "heartbeats": 0,
        "links": [],
    }


async def test_a_beat_counts_at_once_and_is_recorded_in_the_store(
    store: SqliteInboxStore,
) -> None:
    clock = Clock()
    health = RegionHealth(["north", "south"], TIMEOUT, store, clock)
    clock.now += 30
    await health.beat("north", [{"name": "telecom"}])
    assert health.is_alive("north")
    assert not health.is_alive("south")
    assert _entry(health, "north")["heartbeats"] == 1
    [recorded] = await store.heartbeats()
    assert (recorded.region, recorded.last_beat, recorded.links) == (
        "north",
        clock.now,
        [{"name": "telecom"}],
    )


async def test_beats_another_process_recorded_count_after_a_refresh(
    store: SqliteInboxStore,
) -> None:
    clock = Clock()
    health = RegionHealth(["north", "south"], TIMEOUT, store, clock)
    clock.now += 30
    # As another directory process sharing the store would record it.
    await store.record_heartbeat("south", [{"name": "mobile"}], clock.now - 1)
    assert not health.is_alive("south")
    await health.refresh()
    assert health.is_alive("south")
    assert _entry(health, "south")["links"] == [{"name": "mobile"}]
    assert _entry(health, "south")["seconds_since_heartbeat"] == 1.0


async def test_a_refresh_read_before_a_local_beat_does_not_take_it_back(
    store: SqliteInboxStore,
) -> None:
    clock = Clock()
    health = RegionHealth(["north"], TIMEOUT, store, clock)
    clock.now += 30
    await store.record_heartbeat("north", [], clock.now - 20)
    stale = await store.heartbeats()
    await health.beat("north", [{"name": "late"}])
    health._merge(stale)  # the copy of a refresh that read the store before the beat
    assert health.is_alive("north")
    assert _entry(health, "north")["links"] == [{"name": "late"}]
