"""Choosing one of a file server's links for a client (DESIGN.md §3).

Eligibility by carrier first: links of the client's carrier, else multi-carrier
(``any``) links, else every link; unhealthy links only when nothing else is left.
Among the eligible, the power of two choices: draw two distinct links
(weighted by capacity) and keep the less loaded. Always taking the minimum herds
every new transfer onto one link while load figures are stale; two random
choices stay robust to staleness (Mitzenmacher, 2000).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkLoad:
    """A link as the chooser sees it."""

    name: str
    carrier: str
    capacity_mbps: float
    load: float
    healthy: bool = True


def eligible_links(links: Sequence[LinkLoad], carrier: str) -> list[LinkLoad]:
    """The links a client of ``carrier`` may be sent to, best tier first.

    Raises:
        ValueError: ``links`` is empty.
    """
    if not links:
        raise ValueError("a file server has at least one link")
    healthy = [link for link in links if link.healthy] or list(links)
    if carrier != "any":
        same = [link for link in healthy if link.carrier == carrier]
        if same:
            return same
    multi = [link for link in healthy if link.carrier == "any"]
    return multi or healthy


def choose_link(
    links: Sequence[LinkLoad], carrier: str, rng: random.Random | None = None
) -> LinkLoad:
    """Pick the link for a client of ``carrier`` by the power of two choices."""
    rng = rng or random.SystemRandom()
    candidates = eligible_links(links, carrier)
    if len(candidates) == 1:
        return candidates[0]
    first = _weighted_pick(candidates, rng)
    rest = [link for link in candidates if link is not first]
    second = _weighted_pick(rest, rng)
    # Ties go to the bigger link: equal load is less strain on it.
    return min((first, second), key=lambda link: (link.load, -link.capacity_mbps))


def _weighted_pick(links: Sequence[LinkLoad], rng: random.Random) -> LinkLoad:
    return rng.choices(list(links), weights=[link.capacity_mbps for link in links], k=1)[0]
