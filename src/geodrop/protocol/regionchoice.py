"""Which region serves a located client, given which regions are alive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegionChoice:
    region: str
    fell_back: bool


def choose_region(
    home: str,
    fallbacks: Mapping[str, Sequence[str]],
    is_alive: Callable[[str], bool],
) -> RegionChoice | None:
    """The home region if it is alive, else the first living region of its fallback list.

    Returns:
        The choice, or None when neither the home region nor any of its
        fallbacks is alive.
    """
    if is_alive(home):
        return RegionChoice(home, fell_back=False)
    for region in fallbacks.get(home, ()):
        if region != home and is_alive(region):
            return RegionChoice(region, fell_back=True)
    return None
