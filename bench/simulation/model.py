"""The simulated country: regions, carriers, client groups, path rates, deployments.

Pure: no I/O. Every address comes from 198.18.0.0/15 (RFC 2544's benchmarking range)
and lives only inside the network namespaces the simulation creates.

Addresses:

| what | address |
| --- | --- |
| directory (in the core router's namespace) | 198.18.0.1:7700 |
| region *i* access unit (i: 1 north, 2 east, 3 south) | 198.18.*i*.1:7701 |
| region *i* link *k* (k from 1) | 198.18.*i*.(10 + *k*):7701 |
| clients of region *i*, carrier *j* (1 telecom, 2 unicom, 3 mobile) | 198.19.(10*i* + *j*).1 |
| veth transit /30s | 198.19.255.0/24 |
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

REGIONS: Final = ("north", "east", "south")
CARRIERS: Final = ("telecom", "unicom", "mobile")
DIRECTORY_ADDRESS: Final = "198.18.0.1"
DIRECTORY_PORT: Final = 7700
SERVER_PORT: Final = 7701
TRANSIT_PREFIX: Final = "198.19.255"


@dataclass(frozen=True, slots=True)
class PathRates:
    """Mbit/s a client reaches a link at, by path class (issue 7 item 6; DESIGN.md §3)."""

    same_region_same_carrier: float = 100.0
    same_region_other_carrier: float = 40.0
    other_region_same_carrier: float = 50.0
    other_region_other_carrier: float = 20.0

    def rate(self, group: Group, link: LinkSpec) -> float:
        """The path rate between clients of ``group`` and ``link`` (``any`` links match all)."""
        same_region = group.region == link.region
        same_carrier = link.carrier in (group.carrier, "any")
        if same_region:
            return self.same_region_same_carrier if same_carrier else self.same_region_other_carrier
        return self.other_region_same_carrier if same_carrier else self.other_region_other_carrier

    def table(self) -> list[list[str]]:
        """Rows for the report: path class and rate."""
        return [
            ["same region, same carrier", f"{self.same_region_same_carrier:g} Mbit/s"],
            ["same region, other carrier", f"{self.same_region_other_carrier:g} Mbit/s"],
            ["other region, same carrier", f"{self.other_region_same_carrier:g} Mbit/s"],
            ["other region, other carrier", f"{self.other_region_other_carrier:g} Mbit/s"],
        ]


@dataclass(frozen=True, slots=True)
class Group:
    """The clients of one region on one carrier: one source address, one /24."""

    region: str
    carrier: str

    @property
    def name(self) -> str:
        return f"{self.region}/{self.carrier}"

    @property
    def octet(self) -> int:
        return 10 * (REGIONS.index(self.region) + 1) + CARRIERS.index(self.carrier) + 1

    @property
    def address(self) -> str:
        return f"198.19.{self.octet}.1"

    @property
    def subnet(self) -> str:
        return f"198.19.{self.octet}.0/24"

    @property
    def tag(self) -> str:
        """A short name for interfaces: ``g11`` … ``g33``."""
        return f"g{self.octet}"


ALL_GROUPS: Final = tuple(Group(r, c) for r in REGIONS for c in CARRIERS)


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One carrier link of a region's file server."""

    region: str
    index: int  # from 1
    name: str
    carrier: str
    capacity_mbps: float | None  # None: only the path rates limit it

    @property
    def region_index(self) -> int:
        return REGIONS.index(self.region) + 1

    @property
    def address(self) -> str:
        return f"198.18.{self.region_index}.{10 + self.index}"

    @property
    def key(self) -> str:
        return f"{self.region}/{self.name}"

    @property
    def tag(self) -> str:
        """A short name for interfaces: ``r1l2`` is region 1's second link."""
        return f"r{self.region_index}l{self.index}"


@dataclass(frozen=True, slots=True)
class RegionSpec:
    name: str
    links: tuple[LinkSpec, ...]

    @property
    def index(self) -> int:
        return REGIONS.index(self.name) + 1

    @property
    def access_address(self) -> str:
        return f"198.18.{self.index}.1"

    @property
    def tag(self) -> str:
        return f"r{self.index}"


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the servers stand and where the directory sends each client group."""

    key: str
    label: str
    regions: tuple[RegionSpec, ...]
    groups: tuple[Group, ...]

    @property
    def links(self) -> tuple[LinkSpec, ...]:
        return tuple(link for region in self.regions for link in region.links)

    def home_region(self, group: Group) -> str:
        """The region the directory hands ``group``: its own if deployed, else the only one."""
        names = [r.name for r in self.regions]
        return group.region if group.region in names else names[0]

    def region(self, name: str) -> RegionSpec:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def link(self, region: str, name: str) -> LinkSpec:
        for link in self.region(region).links:
            if link.name == name:
                return link
        raise KeyError(f"{region}/{name}")

    def expected_link(self, region: str, group: Group) -> LinkSpec:
        """The link of ``region`` geodrop's rule gives ``group`` when one carrier matches."""
        links = self.region(region).links
        same = [link for link in links if link.carrier == group.carrier]
        return (same or list(links))[0]

    def ideal_seconds(self, size: int, sender: Group, receiver: Group, rates: PathRates) -> float:
        """Upload + download time from the path rates alone, along this deployment's paths.

        The upload goes to the sender's home region; the download comes from that region
        (the file's owner), on the link matching the receiver's carrier where there is one.
        """
        owner = self.home_region(sender)
        up = self.expected_link(owner, sender)
        down = self.expected_link(owner, receiver)
        bits = size * 8
        return bits / (rates.rate(sender, up) * 1e6) + bits / (rates.rate(receiver, down) * 1e6)


def _carrier_links(region: str, carriers: Sequence[str], capacity: float | None) -> RegionSpec:
    links = tuple(
        LinkSpec(region, k + 1, carrier, carrier, capacity) for k, carrier in enumerate(carriers)
    )
    return RegionSpec(region, links)


def claim_deployments(capacity_mbps: float | None = None) -> tuple[Deployment, ...]:
    """Prior art 1, prior art 2 and geodrop (issue 7 item 6), all serving every group."""
    return (
        Deployment(
            "prior-art-1",
            "prior art 1: one region (north), one telecom IP",
            (_carrier_links("north", ("telecom",), capacity_mbps),),
            ALL_GROUPS,
        ),
        Deployment(
            "prior-art-2",
            "prior art 2: one region (north), an IP per carrier",
            (_carrier_links("north", CARRIERS, capacity_mbps),),
            ALL_GROUPS,
        ),
        Deployment(
            "geodrop",
            "geodrop: 3 regions × 3 carrier links",
            tuple(_carrier_links(r, CARRIERS, capacity_mbps) for r in REGIONS),
            ALL_GROUPS,
        ),
    )


def link_choice_deployment(links: int, capacity_mbps: float) -> Deployment:
    """One region (north) with ``links`` multi-carrier (``any``) links of equal capacity.

    Every link is eligible for every client, so the choice among them is all load.
    """
    specs = tuple(
        LinkSpec("north", k + 1, f"bgp{k + 1}", "any", capacity_mbps) for k in range(links)
    )
    groups = tuple(Group("north", c) for c in CARRIERS)
    return Deployment(
        "link-choice",
        f"north: {links} multi-carrier links × {capacity_mbps:g} Mbit/s",
        (RegionSpec("north", specs),),
        groups,
    )


# -- figures --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0–1) with linear interpolation; +inf counts as a value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if low == high or ordered[high] == ordered[low]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def seconds(value: float) -> str:
    """A duration for a table: ``1.23 s``; unfinished transfers make it ``> run``."""
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "unfinished"
    return f"{value:.2f} s"
