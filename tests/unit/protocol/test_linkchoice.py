"""Tests of geodrop.protocol.linkchoice: carrier tiers, then the power of two choices."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.protocol.linkchoice import LinkLoad, choose_link, eligible_links

TELECOM = LinkLoad("telecom", "telecom", 1000, 0.5)
UNICOM = LinkLoad("unicom", "unicom", 1000, 0.1)
MOBILE = LinkLoad("mobile", "mobile", 1000, 0.2)
BGP_A = LinkLoad("bgp-a", "any", 1000, 0.3)
BGP_B = LinkLoad("bgp-b", "any", 1000, 0.4)


def down(link: LinkLoad) -> LinkLoad:
    return LinkLoad(link.name, link.carrier, link.capacity_mbps, link.load, healthy=False)


def names(links: Sequence[LinkLoad]) -> list[str]:
    return [link.name for link in links]


def expected_shares(links: Sequence[LinkLoad]) -> dict[str, float]:
    """Each link's exact chance of being chosen, by summing over every ordered draw of two."""
    total = sum(link.capacity_mbps for link in links)
    shares = dict.fromkeys(names(links), 0.0)
    for first in links:
        rest = total - first.capacity_mbps
        for second in links:
            if second is first:
                continue
            p = first.capacity_mbps / total * second.capacity_mbps / rest
            winner = min((first, second), key=lambda link: (link.load, -link.capacity_mbps))
            shares[winner.name] += p
    return shares


def observed_shares(links: Sequence[LinkLoad], draws: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    counts = Counter(choose_link(links, "mobile", rng).name for _ in range(draws))
    return {link.name: counts[link.name] / draws for link in links}


# ---------------------------------------------------------------------------
# Eligibility


def test_matching_carrier_first() -> None:
    links = [TELECOM, UNICOM, BGP_A]
    assert names(eligible_links(links, "telecom")) == ["telecom"]
    assert names(eligible_links(links, "unicom")) == ["unicom"]


def test_multi_carrier_links_when_no_carrier_matches() -> None:
    links = [TELECOM, UNICOM, BGP_A, BGP_B]
    assert names(eligible_links(links, "mobile")) == ["bgp-a", "bgp-b"]


def test_unknown_carrier_client_goes_to_multi_carrier_links() -> None:
    assert names(eligible_links([TELECOM, BGP_A], "any")) == ["bgp-a"]


def test_every_link_when_neither_tier_has_one() -> None:
    assert names(eligible_links([TELECOM, UNICOM], "mobile")) == ["telecom", "unicom"]
    assert names(eligible_links([TELECOM, UNICOM], "any")) == ["telecom", "unicom"]


def test_unhealthy_matching_link_falls_through_to_multi_carrier() -> None:
    links = [down(TELECOM), UNICOM, BGP_A]
    assert names(eligible_links(links, "telecom")) == ["bgp-a"]


def test_unhealthy_links_are_never_in_the_last_tier_while_healthy_ones_exist() -> None:
    links = [down(TELECOM), UNICOM, down(BGP_A), MOBILE]
    assert names(eligible_links(links, "telecom")) == ["unicom", "mobile"]


def test_unhealthy_links_when_none_is_healthy() -> None:
    links = [down(TELECOM), down(UNICOM)]
    assert names(eligible_links(links, "unicom")) == ["unicom"]
    assert names(eligible_links(links, "mobile")) == ["telecom", "unicom"]
    assert choose_link(links, "unicom", random.Random(1)).name == "unicom"


def test_no_links_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one link"):
        eligible_links([], "telecom")
    with pytest.raises(ValueError, match="at least one link"):
        choose_link([], "telecom", random.Random(0))


# ---------------------------------------------------------------------------
# Power of two choices


def test_single_eligible_link_is_chosen_whatever_its_load() -> None:
    busy = LinkLoad("telecom", "telecom", 1000, 50.0)
    assert choose_link([busy, UNICOM, BGP_A], "telecom", random.Random(0)) is busy


def test_default_random_source_picks_an_eligible_link() -> None:
    assert choose_link([TELECOM, BGP_A, BGP_B], "mobile").name in {"bgp-a", "bgp-b"}


@given(
    st.floats(0, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
    st.floats(1, 10_000),
    st.floats(1, 10_000),
    st.integers(0, 2**32),
)
def test_two_eligible_links_always_the_less_loaded(
    load_a: float, load_b: float, capacity_a: float, capacity_b: float, seed: int
) -> None:
    a = LinkLoad("a", "any", capacity_a, load_a)
    b = LinkLoad("b", "any", capacity_b, load_b)
    chosen = choose_link([a, b, TELECOM], "mobile", random.Random(seed))
    assert chosen in (a, b)
    # Less loaded wins; on equal load the bigger link; a full tie may go either way.
    assert (chosen.load, -chosen.capacity_mbps) == min(
        (link.load, -link.capacity_mbps) for link in (a, b)
    )


def test_equal_load_goes_to_the_bigger_link() -> None:
    small = LinkLoad("small", "any", 100, 0.25)
    big = LinkLoad("big", "any", 10_000, 0.25)
    rng = random.Random(7)
    assert {choose_link([small, big], "mobile", rng).name for _ in range(200)} == {"big"}


@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=2, max_size=12, unique=True),
    st.lists(st.floats(1, 10_000), min_size=12, max_size=12),
    st.integers(0, 2**32),
)
def test_most_loaded_link_is_never_chosen(
    loads: list[float], capacities: list[float], seed: int
) -> None:
    links = [LinkLoad(f"l{i}", "any", capacities[i], load) for i, load in enumerate(loads)]
    busiest = max(links, key=lambda link: link.load)
    rng = random.Random(seed)
    for _ in range(50):
        assert choose_link(links, "mobile", rng) is not busiest


def test_shares_follow_two_choices_not_the_minimum() -> None:
    # Four equal links: the k-th least loaded wins every pair with a busier link,
    # so it is chosen with probability 2·(busier links)/(n·(n-1)): 1/2, 1/3, 1/6, 0.
    links = [LinkLoad(f"l{i}", "any", 1000, load) for i, load in enumerate((0.1, 0.2, 0.3, 0.4))]
    assert expected_shares(links) == pytest.approx({"l0": 1 / 2, "l1": 1 / 3, "l2": 1 / 6, "l3": 0})
    observed = observed_shares(links, draws=6000, seed=2000)
    for name, share in expected_shares(links).items():
        assert observed[name] == pytest.approx(share, abs=0.03), name
    # Not herding: the apparently least-loaded link gets only about half the new transfers.
    assert observed["l0"] < 0.6


def test_draws_are_weighted_by_capacity() -> None:
    # A big link shares its pair with the idle small link less often than uniform draws
    # would pair it (1/3); weighting makes it win its pair with the busy one ≈ 49% of the time.
    big = LinkLoad("big", "any", 8000, 0.5)
    idle = LinkLoad("idle", "any", 1000, 0.2)
    busy = LinkLoad("busy", "any", 1000, 0.9)
    links = [big, idle, busy]
    expected = expected_shares(links)
    assert expected["big"] == pytest.approx(0.8 * 0.5 + 0.1 * 8 / 9)
    assert expected["busy"] == 0
    observed = observed_shares(links, draws=6000, seed=99)
    assert observed["big"] == pytest.approx(expected["big"], abs=0.03)
    assert observed["idle"] == pytest.approx(expected["idle"], abs=0.03)
    assert observed["busy"] == 0
    assert observed["big"] > 0.4  # uniform draws would give about 1/3
