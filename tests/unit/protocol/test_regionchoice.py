"""Tests of geodrop.protocol.regionchoice: the home region, else its living fallbacks in order."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from geodrop.protocol.regionchoice import RegionChoice, choose_region

FALLBACKS = {"north": ("east", "south"), "east": ("north", "south"), "south": ("east", "north")}


def alive(*regions: str) -> Callable[[str], bool]:
    living = set(regions)
    return lambda region: region in living


def test_home_region_when_alive() -> None:
    assert choose_region("north", FALLBACKS, alive("north", "east")) == RegionChoice(
        "north", fell_back=False
    )


def test_first_living_fallback_in_order() -> None:
    assert choose_region("north", FALLBACKS, alive("east", "south")) == RegionChoice(
        "east", fell_back=True
    )
    assert choose_region("north", FALLBACKS, alive("south")) == RegionChoice(
        "south", fell_back=True
    )
    assert choose_region("south", FALLBACKS, alive("north", "east")) == RegionChoice(
        "east", fell_back=True
    )


def test_none_when_nothing_is_alive() -> None:
    assert choose_region("north", FALLBACKS, alive()) is None


def test_regions_outside_the_fallback_list_are_not_used() -> None:
    fallbacks = {"north": ("east",)}
    assert choose_region("north", fallbacks, alive("south", "west")) is None


def test_region_without_fallbacks() -> None:
    assert choose_region("west", FALLBACKS, alive("north")) is None
    assert choose_region("west", FALLBACKS, alive("west")) == RegionChoice("west", False)


def test_a_fallback_list_naming_home_does_not_return_a_dead_home() -> None:
    calls: list[str] = []

    def flaky(region: str) -> bool:
        # Home is reported dead on the first ask and alive afterwards.
        calls.append(region)
        return region == "north" and len(calls) > 1

    assert choose_region("north", {"north": ("north",)}, flaky) is None


region_names = st.sampled_from(["north", "east", "south", "west", "central"])


@given(
    region_names,
    st.dictionaries(region_names, st.lists(region_names, max_size=5)),
    st.sets(region_names),
)
def test_matches_the_rule(home: str, fallbacks: dict[str, list[str]], living: set[str]) -> None:
    choice = choose_region(home, fallbacks, living.__contains__)
    if home in living:
        assert choice == RegionChoice(home, fell_back=False)
        return
    candidates = [r for r in fallbacks.get(home, []) if r in living and r != home]
    if candidates:
        assert choice == RegionChoice(candidates[0], fell_back=True)
    else:
        assert choice is None
