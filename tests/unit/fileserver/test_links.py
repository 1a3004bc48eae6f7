"""Tests of geodrop.fileserver.links: per-link load under an injected clock."""

from __future__ import annotations

import math

import pytest

from geodrop.config import LinkConfig, ListenAddress
from geodrop.fileserver.links import (
    NOMINAL_TRANSFER_MBPS,
    RATE_TIME_CONSTANT_SECONDS,
    LinkMeters,
)
from geodrop.metadata.base import UnitLinkLoad

TAU = RATE_TIME_CONSTANT_SECONDS
BYTES_PER_MBPS = 125_000  # 1 Mbit/s is 125,000 bytes/s


def link(name: str, host: str, *, carrier: str = "any", capacity: float = 1000.0) -> LinkConfig:
    return LinkConfig(
        name=name,
        url=f"http://{host}:7701",
        listen=ListenAddress(host, 7701),
        carrier=carrier,
        capacity_mbps=capacity,
    )


LINKS = (
    link("telecom", "127.1.1.1", carrier="telecom"),
    link("unicom", "127.1.2.1", carrier="unicom", capacity=100.0),
    link("v6", "2001:db8::1", carrier="any", capacity=10_000.0),
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def meters(clock: FakeClock) -> LinkMeters:
    return LinkMeters(LINKS, clock=clock)


def load_of(meters: LinkMeters, name: str) -> float:
    return {entry.name: entry.load for entry in meters.loads()}[name]


def rate_of(meters: LinkMeters, name: str) -> float:
    return {r.name: r.rate_bytes_per_second for r in meters.reports()}[name]


def active_of(meters: LinkMeters, name: str) -> int:
    return {r.name: r.active_transfers for r in meters.reports()}[name]


def test_idle_links_have_no_load(meters: LinkMeters) -> None:
    loads = meters.loads()
    assert [entry.name for entry in loads] == ["telecom", "unicom", "v6"]
    assert [entry.carrier for entry in loads] == ["telecom", "unicom", "any"]
    assert [entry.capacity_mbps for entry in loads] == [1000.0, 100.0, 10_000.0]
    assert all(entry.load == 0 and entry.healthy for entry in loads)


def test_active_transfers_are_counted_while_the_block_runs(meters: LinkMeters) -> None:
    with meters.transfer("telecom"):
        assert active_of(meters, "telecom") == 1
        with meters.transfer("telecom"):
            assert active_of(meters, "telecom") == 2
            assert load_of(meters, "telecom") == pytest.approx(2 * NOMINAL_TRANSFER_MBPS / 1000)
        assert active_of(meters, "telecom") == 1
    assert active_of(meters, "telecom") == 0
    assert active_of(meters, "unicom") == 0
    assert load_of(meters, "telecom") == 0


def test_a_failed_transfer_stops_counting(meters: LinkMeters) -> None:
    with pytest.raises(ConnectionResetError), meters.transfer("unicom"):
        raise ConnectionResetError
    assert active_of(meters, "unicom") == 0


def test_one_transfer_weighs_more_on_a_smaller_link(meters: LinkMeters) -> None:
    with meters.transfer("telecom"), meters.transfer("unicom"):
        assert load_of(meters, "unicom") == pytest.approx(NOMINAL_TRANSFER_MBPS / 100)
        assert load_of(meters, "unicom") == pytest.approx(10 * load_of(meters, "telecom"))


def test_byte_rate_right_after_a_burst(meters: LinkMeters) -> None:
    meters.received("telecom", 1_000_000)
    assert rate_of(meters, "telecom") == pytest.approx(1_000_000 / TAU)
    assert load_of(meters, "telecom") == pytest.approx(1_000_000 / TAU / (1000 * BYTES_PER_MBPS))


@pytest.mark.parametrize(
    ("elapsed", "factor"),
    [(0.0, 1.0), (TAU * math.log(2), 0.5), (2 * TAU * math.log(2), 0.25), (TAU, math.exp(-1))],
)
def test_byte_rate_decays_exponentially(
    meters: LinkMeters, clock: FakeClock, elapsed: float, factor: float
) -> None:
    meters.sent("unicom", 2_000_000)
    clock.now += elapsed
    expected = 2_000_000 / TAU * factor
    assert rate_of(meters, "unicom") == pytest.approx(expected, abs=0.1)
    assert load_of(meters, "unicom") == pytest.approx(expected / (100 * BYTES_PER_MBPS))


def test_bursts_accumulate_with_decay(meters: LinkMeters, clock: FakeClock) -> None:
    meters.sent("telecom", 1_000_000)
    clock.now += 3.0
    meters.received("telecom", 500_000)
    clock.now += 2.0
    decayed = (1_000_000 * math.exp(-3.0 / TAU) + 500_000) * math.exp(-2.0 / TAU)
    assert rate_of(meters, "telecom") == pytest.approx(decayed / TAU, abs=0.1)
    # The cumulative counters do not decay.
    report = {r.name: r for r in meters.reports()}["telecom"]
    assert report.bytes_sent == 1_000_000
    assert report.bytes_received == 500_000


def test_long_idle_forgets_the_burst(meters: LinkMeters, clock: FakeClock) -> None:
    meters.sent("telecom", 10**9)
    clock.now += 60 * TAU
    assert load_of(meters, "telecom") < 1e-12


def test_a_clock_that_steps_back_does_not_inflate_the_rate(
    meters: LinkMeters, clock: FakeClock
) -> None:
    meters.sent("telecom", 1_000_000)
    clock.now -= 10.0
    assert rate_of(meters, "telecom") == pytest.approx(1_000_000 / TAU)


def test_load_adds_utilisation_and_active_transfers(meters: LinkMeters, clock: FakeClock) -> None:
    meters.sent("v6", 50_000_000)
    clock.now += 1.0
    with meters.transfer("v6"), meters.transfer("v6"), meters.transfer("v6"):
        rate = 50_000_000 * math.exp(-1.0 / TAU) / TAU
        expected = rate / (10_000 * BYTES_PER_MBPS) + 3 * NOMINAL_TRANSFER_MBPS / 10_000
        assert load_of(meters, "v6") == pytest.approx(expected)


def test_loads_order_links_by_traffic(meters: LinkMeters, clock: FakeClock) -> None:
    meters.sent("telecom", 30_000_000)
    meters.sent("v6", 30_000_000)
    meters.sent("unicom", 3_000_000)
    clock.now += 0.5
    by_load = sorted(meters.loads(), key=lambda entry: entry.load)
    # The same bytes weigh ten times more on a link with a tenth of the capacity.
    assert [entry.name for entry in by_load] == ["v6", "telecom", "unicom"]
    assert by_load[1].load == pytest.approx(10 * by_load[0].load)
    assert by_load[2].load == pytest.approx(by_load[1].load)


def test_reports_are_rounded_for_publishing(meters: LinkMeters, clock: FakeClock) -> None:
    meters.received("telecom", 1_234_567)
    clock.now += 0.123
    report = {r.name: r for r in meters.reports()}["telecom"]
    rate = 1_234_567 * math.exp(-0.123 / TAU) / TAU
    assert report.rate_bytes_per_second == round(rate, 1)
    assert report.load == round(rate / (1000 * BYTES_PER_MBPS), 6)
    assert report.capacity_mbps == 1000.0
    assert report.carrier == "telecom"


def test_unknown_link_is_a_key_error(meters: LinkMeters) -> None:
    with pytest.raises(KeyError):
        meters.sent("mobile", 1)
    with pytest.raises(KeyError), meters.transfer("mobile"):
        pass
    with pytest.raises(KeyError):
        meters.config("mobile")


def test_config_of_a_link(meters: LinkMeters) -> None:
    assert meters.config("unicom") is LINKS[1]


@pytest.mark.parametrize(
    ("sockname", "name"),
    [
        (("127.1.1.1", 7701), "telecom"),
        (("127.1.2.1", 7701), "unicom"),
        (("::ffff:127.1.2.1", 7701, 0, 0), "unicom"),
        (("::ffff:127.1.1.1", 7701), "telecom"),
        (("2001:db8::1", 7701, 0, 0), "v6"),
        (("127.1.1.1", 7702), None),
        (("127.1.3.1", 7701), None),
        (("::ffff:127.1.3.1", 7701, 0, 0), None),
        (("2001:db8::2", 7701, 0, 0), None),
        ("/run/geodrop.sock", None),
        (None, None),
        ((), None),
        (("127.1.1.1",), None),
    ],
)
def test_link_at(meters: LinkMeters, sockname: object, name: str | None) -> None:
    assert meters.link_at(sockname) == name


def test_default_clock_is_monotonic_time() -> None:
    meters = LinkMeters(LINKS)
    meters.sent("telecom", 1_000_000)
    assert 0 < load_of(meters, "telecom") <= 1_000_000 / TAU / (1000 * BYTES_PER_MBPS)


def test_link_at_matches_any_spelling_of_an_ipv6_listen_address() -> None:
    meters = LinkMeters((link("v6", "::0001"), link("v4", "127.1.1.1")))
    assert meters.link_at(("::1", 7701, 0, 0)) == "v6"
    assert meters.link_at(("0:0:0:0:0:0:0:1", 7701)) == "v6"
    assert meters.link_at(("::ffff:127.1.1.1", 7701)) == "v4"
    assert meters.link_at(("not-an-address", 7701)) is None


def test_other_units_figures_add_to_the_region_view(meters: LinkMeters) -> None:
    with meters.transfer("telecom"):
        meters.received("telecom", 1000)
        own = {load.link: load for load in meters.own_loads()}
        meters.set_other_units(
            [
                UnitLinkLoad("telecom", 4, 2_000_000.0, 10, 20),
                UnitLinkLoad("gone-link", 9, 9.0, 9, 9),  # a link this unit does not have
            ]
        )

        report = {r.name: r for r in meters.reports()}["telecom"]
        assert own["telecom"].active_transfers == 1
        assert report.active_transfers == 5
        assert report.bytes_received == 1020
        assert report.bytes_sent == 10
        assert report.rate_bytes_per_second == pytest.approx(
            own["telecom"].rate_bytes_per_second + 2_000_000.0, abs=0.1
        )
        expected = (
            report.rate_bytes_per_second / (1000 * BYTES_PER_MBPS)
            + 5 * NOMINAL_TRANSFER_MBPS / 1000
        )
        assert load_of(meters, "telecom") == pytest.approx(expected, rel=1e-6)
        # What this unit publishes stays its own.
        assert {load.link: load for load in meters.own_loads()}["telecom"].active_transfers == 1


def test_a_busy_other_unit_steers_choice_away_from_its_link(meters: LinkMeters) -> None:
    assert load_of(meters, "telecom") == 0.0
    meters.set_other_units([UnitLinkLoad("telecom", 3, 0.0, 0, 0)])
    assert load_of(meters, "telecom") == pytest.approx(3 * NOMINAL_TRANSFER_MBPS / 1000)
    meters.set_other_units([])
    assert load_of(meters, "telecom") == 0.0
