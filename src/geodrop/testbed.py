"""The loopback testbed of DESIGN.md §6, on which the test suite and the bench run clusters.

Region R (north 1, east 2, south 3) has its access unit on ``127.R.0.1`` and its carrier
links on ``127.R.C.1`` (telecom 1, unicom 2, mobile 3); the directory is on
``127.0.0.1``; a client of region R and carrier C comes from ``127.10R.C.x``, which the
override table (:func:`overrides_toml`) places there. A cluster on the testbed listens
on one port free on every one of these addresses (:func:`free_port`), so a running
development cluster, parallel test clusters and the bench never collide.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Final

# Each region: its name, its number in the addresses, and its fallback regions in order.
REGIONS: Final = (
    ("north", 1, ("east", "south")),
    ("east", 2, ("north", "south")),
    ("south", 3, ("east", "north")),
)
# Each carrier: its name and its number in the addresses.
CARRIERS: Final = (("telecom", 1), ("unicom", 2), ("mobile", 3))
DIRECTORY_HOST: Final = "127.0.0.1"

_REGION_NUMBERS: Final = {name: number for name, number, _ in REGIONS}
_CARRIER_NUMBERS: Final = dict(CARRIERS)


def client_address(region: str, carrier: str, host: int = 5) -> str:
    """A source address the override table places in ``region`` / ``carrier``."""
    return f"127.10{_REGION_NUMBERS[region]}.{_CARRIER_NUMBERS[carrier]}.{host}"


def access_host(region: str) -> str:
    """The address of ``region``'s access unit."""
    return f"127.{_REGION_NUMBERS[region]}.0.1"


def link_host(region: str, carrier: str) -> str:
    """The address of ``region``'s link on ``carrier``."""
    return f"127.{_REGION_NUMBERS[region]}.{_CARRIER_NUMBERS[carrier]}.1"


def hosts() -> list[str]:
    """Every address a cluster's servers listen on: the directory, access units, links."""
    regions = [name for name, _, _ in REGIONS]
    return (
        [DIRECTORY_HOST]
        + [access_host(r) for r in regions]
        + [link_host(r, c) for r in regions for c, _ in CARRIERS]
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(on_hosts: Sequence[str]) -> int:
    """A TCP port free on every one of ``on_hosts`` (loopback addresses).

    Raises:
        RuntimeError: none found in 200 tries.
    """
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((DIRECTORY_HOST, 0))
            port = int(probe.getsockname()[1])
        if all(_port_free(host, port) for host in on_hosts):
            return port
    raise RuntimeError("no port is free on every testbed address")


def overrides_toml() -> str:
    """The ``[[geo.overrides]]`` entries placing each client range in its region and carrier."""
    return "".join(
        f'[[geo.overrides]]\nnetwork = "127.10{r}.{c}.0/24"\n'
        f'region = "{name}"\ncarrier = "{carrier}"\n'
        for name, r, _ in REGIONS
        for carrier, c in CARRIERS
    )


def region_toml(region: str, scheme: str, port: int, more: str = "") -> str:
    """``region``'s ``[[regions]]`` entry (``more``: further lines of it) and its links."""
    fallback = next(regions for name, _, regions in REGIONS if name == region)
    fallbacks = ", ".join(f'"{name}"' for name in fallback)
    host = access_host(region)
    lines = [
        f'[[regions]]\nname = "{region}"\naccess_url = "{scheme}://{host}:{port}"\n'
        f'listen = "{host}:{port}"\nfallback = [{fallbacks}]\n{more}'
    ]
    for carrier, _ in CARRIERS:
        link = link_host(region, carrier)
        lines.append(
            f'[[regions.links]]\nname = "{carrier}"\ncarrier = "{carrier}"\n'
            f'url = "{scheme}://{link}:{port}"\nlisten = "{link}:{port}"\n'
        )
    return "".join(lines)
