"""Per-link load of one file server: active transfers and a decaying byte rate."""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from geodrop.config import LinkConfig
from geodrop.metadata.base import UnitLinkLoad
from geodrop.protocol.linkchoice import LinkLoad

# How quickly the byte-rate average forgets: a burst counts for about this long.
RATE_TIME_CONSTANT_SECONDS: Final = 5.0
# The share of capacity one active transfer is assumed to take before its bytes show up
# in the measured rate; it makes a link with many slow transfers look busy too.
NOMINAL_TRANSFER_MBPS: Final = 10.0


@dataclass(slots=True)
class _Meter:
    config: LinkConfig
    active: int = 0
    decayed_bytes: float = 0.0
    updated_at: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0

    def rate_bytes_per_second(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated_at)
        return (
            self.decayed_bytes
            * math.exp(-elapsed / RATE_TIME_CONSTANT_SECONDS)
            / (RATE_TIME_CONSTANT_SECONDS)
        )

    def add(self, nbytes: int, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        self.decayed_bytes = self.decayed_bytes * math.exp(-elapsed / RATE_TIME_CONSTANT_SECONDS)
        self.decayed_bytes += nbytes
        self.updated_at = now

    def load(self, now: float, others: UnitLinkLoad | None = None) -> float:
        """Utilisation of the link's capacity, counting the other access units' figures too."""
        rate = self.rate_bytes_per_second(now)
        active = self.active
        if others is not None:
            rate += others.rate_bytes_per_second
            active += others.active_transfers
        capacity_bps = self.config.capacity_mbps * 125_000
        return rate / capacity_bps + active * NOMINAL_TRANSFER_MBPS / self.config.capacity_mbps


# Asked for the local address of every request that names its link (access log, link
# figures): the few addresses a server listens on, parsed once.
@functools.lru_cache(maxsize=1024)
def _canonical(host: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 compressed, zone dropped."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One link's figures, as heartbeats and the status endpoint publish them."""

    name: str
    carrier: str
    capacity_mbps: float
    load: float
    active_transfers: int
    rate_bytes_per_second: float
    bytes_sent: int
    bytes_received: int


class LinkMeters:
    """Load figures of every link of one file server.

    Several access-unit processes may serve one region's links together; each counts
    its own transfers and publishes them through the shared metadata, and
    :meth:`set_other_units` adds the others' figures, so link choice, heartbeats and
    the status endpoint all see the region as one.
    """

    def __init__(
        self, links: tuple[LinkConfig, ...], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._meters = {link.name: _Meter(link) for link in links}
        self._by_address = {
            (_canonical(link.listen.host), link.listen.port): link.name for link in links
        }
        self._clock = clock
        self._others: dict[str, UnitLinkLoad] = {}

    def set_other_units(self, loads: list[UnitLinkLoad]) -> None:
        """The other access units' latest figures, per link (replacing the previous ones)."""
        self._others = {load.link: load for load in loads if load.link in self._meters}

    def own_loads(self) -> list[UnitLinkLoad]:
        """This process's own figures, to publish for the region's other access units."""
        now = self._clock()
        return [
            UnitLinkLoad(
                link=name,
                active_transfers=m.active,
                rate_bytes_per_second=m.rate_bytes_per_second(now),
                bytes_sent=m.bytes_sent,
                bytes_received=m.bytes_received,
            )
            for name, m in self._meters.items()
        ]

    def link_at(self, sockname: object) -> str | None:
        """The link a connection arrived on, from the socket's local address."""
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            try:
                host = _canonical(str(sockname[0]))
            except ValueError:
                return None
            return self._by_address.get((host, int(sockname[1])))
        return None

    def config(self, name: str) -> LinkConfig:
        return self._meters[name].config

    @contextmanager
    def transfer(self, name: str) -> Iterator[None]:
        """Count one active transfer on link ``name`` while the block runs."""
        meter = self._meters[name]
        meter.active += 1
        try:
            yield
        finally:
            meter.active -= 1

    def sent(self, name: str, nbytes: int) -> None:
        meter = self._meters[name]
        meter.bytes_sent += nbytes
        meter.add(nbytes, self._clock())

    def received(self, name: str, nbytes: int) -> None:
        meter = self._meters[name]
        meter.bytes_received += nbytes
        meter.add(nbytes, self._clock())

    def loads(self) -> list[LinkLoad]:
        now = self._clock()
        return [
            LinkLoad(
                m.config.name,
                m.config.carrier,
                m.config.capacity_mbps,
                m.load(now, self._others.get(name)),
            )
            for name, m in self._meters.items()
        ]

    def reports(self) -> list[LinkReport]:
        """Every link's figures for the whole region (this unit's plus the others')."""
        now = self._clock()
        reports = []
        for name, m in self._meters.items():
            others = self._others.get(name) or UnitLinkLoad(name, 0, 0.0, 0, 0)
            reports.append(
                LinkReport(
                    name=m.config.name,
                    carrier=m.config.carrier,
                    capacity_mbps=m.config.capacity_mbps,
                    load=round(m.load(now, others), 6),
                    active_transfers=m.active + others.active_transfers,
                    rate_bytes_per_second=round(
                        m.rate_bytes_per_second(now) + others.rate_bytes_per_second, 1
                    ),
                    bytes_sent=m.bytes_sent + others.bytes_sent,
                    bytes_received=m.bytes_received + others.bytes_received,
                )
            )
        return reports
