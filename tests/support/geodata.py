"""Build small MaxMind DB files for tests, so no test depends on real GeoIP data.

The files have the same record shape as MaxMind's own databases (GeoLite2-City and
GeoLite2-ASN), which is all :class:`geodrop.geo.locator.Locator` reads.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import netaddr
from mmdb_writer import MmdbU32, MMDBWriter


def write_city_db(
    path: Path,
    networks: Mapping[str, tuple[str, str | None]],
    *,
    ip_version: Literal[4, 6] = 6,
) -> None:
    """Write a City-format database.

    Args:
        path: the file to write.
        networks: CIDR → (country ISO code, subdivision ISO code or None).
        ip_version: 6 (the default, as MaxMind ships) holds IPv4 and IPv6 networks;
            4 makes an IPv4-only database.
    """
    records: dict[str, dict[str, Any]] = {}
    for cidr, (country, subdivision) in networks.items():
        record: dict[str, Any] = {
            "country": {"iso_code": country, "names": {"en": f"Country {country}"}},
        }
        if subdivision is not None:
            record["subdivisions"] = [
                {"iso_code": subdivision, "names": {"en": f"Subdivision {subdivision}"}}
            ]
        records[cidr] = record
    _write(path, "GeoLite2-City", records, ip_version)


def write_asn_db(
    path: Path,
    networks: Mapping[str, int],
    *,
    ip_version: Literal[4, 6] = 6,
) -> None:
    """Write an ASN-format database (the GeoLite2-ASN record shape).

    Args:
        path: the file to write.
        networks: CIDR → autonomous system number.
        ip_version: as for :func:`write_city_db`.
    """
    records = {
        cidr: {
            # MaxMind stores the AS number as uint32; the writer would otherwise pick
            # the smallest integer type, which no real database has.
            "autonomous_system_number": MmdbU32(asn),
            "autonomous_system_organization": f"Test AS{asn} Network",
        }
        for cidr, asn in networks.items()
    }
    _write(path, "GeoLite2-ASN", records, ip_version)


def _write(
    path: Path,
    database_type: str,
    records: Mapping[str, dict[str, Any]],
    ip_version: Literal[4, 6],
) -> None:
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        languages=["en"],
        description=f"geodrop test {database_type}",
        # IPv4 networks in an IPv6 database live under ::/96, where readers look
        # IPv4 addresses up; the writer refuses them without this flag.
        ipv4_compatible=ip_version == 6,
    )

    # The writer replaces a whole subtree when a wider network arrives after a
    # narrower one inside it, so insert the widest networks first (IPv4 prefixes
    # count as their ::/96 position, as the writer stores them).
    def tree_depth(cidr: str) -> int:
        network = ipaddress.ip_network(cidr)
        return network.prefixlen + (96 if network.version == 4 and ip_version == 6 else 0)

    for cidr in sorted(records, key=tree_depth):
        writer.insert_network(netaddr.IPSet([cidr]), records[cidr])
    writer.to_db_file(str(path))
