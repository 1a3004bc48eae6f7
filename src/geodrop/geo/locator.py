"""IP address → (region, carrier), from the operator's tables and MaxMind databases.

Three sources, in order of authority (DESIGN.md §2, §5):

1. the operator's CIDR override table — the operator knows their own networks
   better than any database, so it decides region *and* carrier;
2. a City or Country database for the region (``country`` and the first of
   ``subdivisions``, matched against the region rules) and an ASN or ISP database
   for the carrier (``autonomous_system_number`` through the AS-number table);
3. the configured default region and carrier.

Whether the chosen region is healthy is not asked here: the directory applies the
regions' fallback lists to the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import maxminddb
from maxminddb.types import Record

from geodrop.config import GeoConfig, OverrideRule
from geodrop.errors import ConfigError

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address


class Match(StrEnum):
    """How a location was reached; the directory reports it to the client."""

    OVERRIDE = "override"
    GEO = "geo"
    FALLBACK = "fallback"  # set by the directory when it moves off a down region
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a client is: the region that serves it and the carrier it is on."""

    region: str
    carrier: str
    match: Match


# How many addresses' answers a locator keeps (least recently asked forgotten first).
LOCATIONS_REMEMBERED: Final = 65536


class Locator:
    """Answers :meth:`locate` from one :class:`~geodrop.config.GeoConfig`.

    The databases are memory-mapped, so a lookup is a few memory reads and is
    safe to make on the event loop. Call :meth:`close` (or use the locator as a
    context manager) to release them.
    """

    def __init__(self, config: GeoConfig) -> None:
        """Build the tables and open the databases the configuration names.

        Args:
            config: the ``[geo]`` section of the cluster configuration.

        Raises:
            ConfigError: a database file is missing, unreadable or not a MaxMind
                DB; the message names ``geo.city_db`` or ``geo.asn_db``.
        """
        self._config = config
        # The tables and databases never change while open, and a client asks again and
        # again from one address: its answer is kept (a few hundred bytes an address).
        self._remembered = lru_cache(maxsize=LOCATIONS_REMEMBERED)(self._look_up)
        self._overrides = _OverrideTable(config.overrides)
        self._regions: dict[tuple[str, str | None], str] = {}
        for rule in config.region_rules:
            # The first rule for a place wins, as a reader of the file would expect.
            subdivision = rule.subdivision.upper() if rule.subdivision else None
            self._regions.setdefault((rule.country.upper(), subdivision), rule.region)
        self._city: _Database | None = None
        self._asn: _Database | None = None
        if config.city_db is not None:
            self._city = _Database("geo.city_db", config.city_db)
        if config.asn_db is not None:
            try:
                self._asn = _Database("geo.asn_db", config.asn_db)
            except ConfigError:
                self.close()
                raise

    def close(self) -> None:
        """Release the databases. Later lookups answer with the defaults."""
        self._remembered.cache_clear()
        for database in (self._city, self._asn):
            if database is not None:
                database.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def locate(self, ip: IPAddress) -> Location:
        """The region and carrier of ``ip``.

        Args:
            ip: the client's address (see :func:`geodrop.geo.clientip.client_ip`).

        Returns:
            The override rule's region and carrier (``Match.OVERRIDE``); else the
            region from the City database (``Match.GEO``) or the default region
            (``Match.DEFAULT``), with the carrier from the ASN database or the
            default carrier. A database that fails is treated as having no answer.
        """
        return self._remembered(ip)

    def _look_up(self, ip: IPAddress) -> Location:
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            # Databases with IPv4 under ::/96 do not answer for ::ffff:a.b.c.d.
            ip = ip.ipv4_mapped
        rule = self._overrides.find(ip)
        if rule is not None:
            return Location(rule.region, rule.carrier, Match.OVERRIDE)
        carrier = self._carrier(ip)
        region = self._region(ip)
        if region is None:
            return Location(self._config.default_region, carrier, Match.DEFAULT)
        return Location(region, carrier, Match.GEO)

    def _region(self, ip: IPAddress) -> str | None:
        record = self._city.get(ip) if self._city is not None else None
        country = _iso_code(_field(record, "country"))
        if country is None:
            return None
        subdivisions = _field(record, "subdivisions")
        if isinstance(subdivisions, list) and subdivisions:
            subdivision = _iso_code(subdivisions[0])
            if subdivision is not None and (country, subdivision) in self._regions:
                return self._regions[(country, subdivision)]
        return self._regions.get((country, None))

    def _carrier(self, ip: IPAddress) -> str:
        record = self._asn.get(ip) if self._asn is not None else None
        # GeoLite2-ASN and GeoIP2-ISP both carry the number under this key.
        asn = _field(record, "autonomous_system_number")
        # bool is an int too, and no AS number.
        if isinstance(asn, int) and not isinstance(asn, bool):
            return self._config.asn_carriers.get(asn, self._config.default_carrier)
        return self._config.default_carrier


class _OverrideTable:
    """The override rules, indexed so the most specific network is found first."""

    def __init__(self, rules: tuple[OverrideRule, ...]) -> None:
        self._by_network: dict[IPv4Network | IPv6Network, OverrideRule] = {}
        for rule in rules:
            self._by_network.setdefault(rule.network, rule)
        # One dictionary probe per prefix length in use, longest first: the cost
        # grows with the number of distinct lengths (≤ 33 or 129), not of rules.
        self._prefixes: dict[int, list[int]] = {
            version: sorted(
                {n.prefixlen for n in self._by_network if n.version == version}, reverse=True
            )
            for version in (4, 6)
        }
        # Per prefix length, longest first: its netmask and the rules by network address.
        self._by_prefix: dict[int, list[tuple[int, dict[int, OverrideRule]]]] = {
            version: [
                (
                    _netmask(32 if version == 4 else 128, prefixlen),
                    {
                        int(n.network_address): rule
                        for n, rule in self._by_network.items()
                        if n.version == version and n.prefixlen == prefixlen
                    },
                )
                for prefixlen in lengths
            ]
            for version, lengths in self._prefixes.items()
        }

    def find(self, ip: IPAddress) -> OverrideRule | None:
        # Masking the address as an integer finds the same network as building
        # ip_network((ip, prefixlen)) would, without building one per prefix length per
        # request (that was 7% of a locate request's time; bench/control.py).
        address = int(ip)
        for mask, rules in self._by_prefix[ip.version]:
            rule = rules.get(address & mask)
            if rule is not None:
                return rule
        return None


def _netmask(bits: int, prefixlen: int) -> int:
    """The netmask of a /``prefixlen`` network of ``bits``-bit addresses, as an integer."""
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)


class _Database:
    """One open MaxMind DB and the configuration key it came from, for messages."""

    def __init__(self, key: str, path: Path) -> None:
        try:
            self._reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise ConfigError(f"{key}: {path} is not a MaxMind DB file: {exc}") from None
        self.key = key
        # Read once: the reader builds a new metadata object on every call.
        self._ipv4_only = self._reader.metadata().ip_version == 4

    def get(self, ip: IPAddress) -> Record | None:
        """The record for ``ip``, or None when there is none or the lookup fails."""
        if ip.version == 6 and self._ipv4_only:
            # An IPv4-only database cannot know an IPv6 client: no answer, no error.
            return None
        try:
            return self._reader.get(ip)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            # A closed or corrupt database must not take locating down with it: the
            # defaults still send the client somewhere that works.
            logger.warning("%s lookup of %s failed, using defaults: %s", self.key, ip, exc)
            return None

    def close(self) -> None:
        self._reader.close()


def _field(record: Record | None, name: str) -> Record | None:
    return record.get(name) if isinstance(record, Mapping) else None


def _iso_code(place: Record | None) -> str | None:
    code = _field(place, "iso_code")
    return code.upper() if isinstance(code, str) and code else None
