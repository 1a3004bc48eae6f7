"""Tests of geodrop.directory.status: the operator's view of regions, fallbacks and links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from geodrop.config import ClusterConfig, load_config
from geodrop.directory.health import RegionHealth
from geodrop.directory.status import cluster_status
from geodrop.metadata.sqlite import SqliteInboxStore

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "dev-cluster.toml"
TIMEOUT = 10.0
WALL = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def config() -> ClusterConfig:
    return load_config(EXAMPLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def health(
    config: ClusterConfig, clock: Clock, tmp_path: Path
) -> AsyncIterator[RegionHealth]:
    store = SqliteInboxStore(tmp_path / "inbox.sqlite3")
    yield RegionHealth(config.region_names, TIMEOUT, store, clock=clock)
    await store.close()


def _regions(config: ClusterConfig, health: RegionHealth) -> dict[str, dict[str, Any]]:
    status = cluster_status(config, health, WALL)
    assert status["generated_at"] == WALL
    assert status["heartbeat_timeout_seconds"] == config.directory.heartbeat_timeout_seconds
    return {region["region"]: region for region in status["regions"]}


def _report(name: str, **figures: object) -> dict[str, object]:
    return {"name": name, "carrier": name, "capacity_mbps": 1000.0, **figures}


async def test_before_any_heartbeat_every_region_is_presumed_up_with_idle_links(
    config: ClusterConfig, health: RegionHealth
) -> None:
    regions = _regions(config, health)
    assert list(regions) == list(config.region_names)
    for name, region in regions.items():
        assert region["alive"] is True
        assert region["clients_sent_to"] == name
        assert (region["heartbeats"], region["last_heartbeat_at"]) == (0, None)
        assert region["fallback"] == list(config.region(name).fallback)
        assert region["access_url"] == config.region(name).access_url
        assert [link["name"] for link in region["links"]] == [
            link.name for link in config.region(name).links
        ]
        for link in region["links"]:
            assert link["reported"] is False
            assert link["active_transfers"] == link["bytes_sent"] == 0
            assert link["rate_bytes_per_second"] == link["load"] == 0.0


async def test_a_silent_region_sends_its_clients_to_its_first_living_fallback(
    config: ClusterConfig, health: RegionHealth, clock: Clock
) -> None:
    # north falls back to east then south; south to east then north.
    assert config.region("north").fallback == ("east", "south")
    assert config.region("south").fallback == ("east", "north")
    clock.now += 1
    await health.beat("north", [_report("telecom", active_transfers=2, bytes_sent=5)])
    await health.beat("east", [])
    await health.beat("south", [])
    clock.now += TIMEOUT + 1
    await health.beat("east", [])
    clock.now += 2

    regions = _regions(config, health)
    north, east, south = regions["north"], regions["east"], regions["south"]
    assert (north["alive"], north["clients_sent_to"]) == (False, "east")
    assert (south["alive"], south["clients_sent_to"]) == (False, "east")
    assert (east["alive"], east["clients_sent_to"]) == (True, "east")
    assert north["seconds_since_heartbeat"] == pytest.approx(TIMEOUT + 3)
    assert north["last_heartbeat_at"] == pytest.approx(WALL - TIMEOUT - 3)
    assert east["heartbeats"] == 2
    # A region that is down keeps its last reported figures, for the operator to see.
    telecom = next(link for link in north["links"] if link["name"] == "telecom")
    assert (telecom["reported"], telecom["active_transfers"], telecom["bytes_sent"]) == (
        True,
        2,
        5,
    )

    clock.now += TIMEOUT + 1
    regions = _regions(config, health)
    assert all(region["alive"] is False for region in regions.values())
    assert all(region["clients_sent_to"] is None for region in regions.values())


@pytest.mark.parametrize("value", [-1, "12", True, None, float("nan"), float("inf"), [3], {"x": 1}])
async def test_malformed_figures_show_as_zero(
    config: ClusterConfig, health: RegionHealth, value: object
) -> None:
    figures = {
        "active_transfers": value,
        "rate_bytes_per_second": value,
        "bytes_sent": value,
        "bytes_received": value,
        "load": value,
    }
    await health.beat("east", [_report("unicom", **figures), "not a link"])  # type: ignore[list-item]
    unicom = next(
        link for link in _regions(config, health)["east"]["links"] if link["name"] == "unicom"
    )
    assert unicom["reported"] is True
    assert [unicom[name] for name in figures] == [0, 0.0, 0, 0, 0.0]
    assert isinstance(unicom["bytes_sent"], int)
