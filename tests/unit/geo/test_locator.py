"""Locating clients against generated MaxMind databases and the operator's tables."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from geodrop.config import GeoConfig, OverrideRule, RegionRule
from geodrop.errors import ConfigError
from geodrop.geo.locator import Location, Locator, Match
from support.geodata import write_asn_db, write_city_db

CITY: Mapping[str, tuple[str, str | None]] = {
    "127.0.0.0/8": ("CN", None),
    "127.1.0.0/16": ("CN", "BJ"),
    "127.3.0.0/16": ("CN", "GD"),
    "127.4.0.0/16": ("CN", "SH"),  # a subdivision no rule names
    "127.9.0.0/16": ("US", None),  # a country no rule names
    "2001:db8::/32": ("JP", None),
    "2001:db8:13::/48": ("JP", "13"),
}
ASN: Mapping[str, int] = {
    "127.0.0.0/8": 4134,
    "127.1.2.0/24": 4837,
    "127.1.3.0/24": 9808,
    "127.5.0.0/16": 64512,  # an AS the carrier table does not know
    "192.0.2.0/24": 9808,  # known to the ASN database only
    "2001:db8::/32": 4837,
}
RULES = (
    RegionRule("CN", None, "east"),
    RegionRule("CN", "BJ", "north"),
    RegionRule("CN", "GD", "south"),
    RegionRule("JP", None, "north"),
    RegionRule("JP", "13", "south"),
)
OVERRIDES = (
    OverrideRule(ip_network("127.64.0.0/10"), "north", "telecom"),
    OverrideRule(ip_network("127.103.0.0/16"), "east", "mobile"),
    OverrideRule(ip_network("127.103.2.0/24"), "south", "unicom"),
    OverrideRule(ip_network("127.3.3.0/24"), "north", "mobile"),
    OverrideRule(ip_network("2001:db8:2::/48"), "east", "telecom"),
)
CARRIERS = {4134: "telecom", 4837: "unicom", 9808: "mobile"}


def geo_config(
    *,
    city_db: Path | None = None,
    asn_db: Path | None = None,
    overrides: tuple[OverrideRule, ...] = OVERRIDES,
) -> GeoConfig:
    return GeoConfig(
        default_region="central",
        default_carrier="any",
        city_db=city_db,
        asn_db=asn_db,
        overrides=overrides,
        region_rules=RULES,
        asn_carriers=CARRIERS,
        trusted_proxies=(),
    )


def config_with(key: str, path: Path) -> GeoConfig:
    return geo_config(city_db=path) if key == "city_db" else geo_config(asn_db=path)


@pytest.fixture
def databases(tmp_path: Path) -> tuple[Path, Path]:
    city, asn = tmp_path / "city.mmdb", tmp_path / "asn.mmdb"
    write_city_db(city, CITY)
    write_asn_db(asn, ASN)
    return city, asn


@pytest.fixture
def locator(databases: tuple[Path, Path]) -> Iterator[Locator]:
    city, asn = databases
    with Locator(geo_config(city_db=city, asn_db=asn)) as located:
        yield located


def locate(locator: Locator, ip: str) -> Location:
    return locator.locate(ip_address(ip))


def test_override_beats_geo(locator: Locator) -> None:
    # The City database puts 127.3.0.0/16 in south; the operator says north.
    assert locate(locator, "127.3.1.1") == Location("south", "telecom", Match.GEO)
    assert locate(locator, "127.3.3.7") == Location("north", "mobile", Match.OVERRIDE)


@pytest.mark.parametrize("reverse", [False, True], ids=["as-listed", "reversed"])
@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.103.2.9", Location("south", "unicom", Match.OVERRIDE)),
        ("127.103.9.9", Location("east", "mobile", Match.OVERRIDE)),
        ("127.70.0.1", Location("north", "telecom", Match.OVERRIDE)),
    ],
)
def test_most_specific_override_wins(
    databases: tuple[Path, Path], ip: str, expected: Location, reverse: bool
) -> None:
    city, asn = databases
    overrides = OVERRIDES[::-1] if reverse else OVERRIDES
    with Locator(geo_config(city_db=city, asn_db=asn, overrides=overrides)) as located:
        assert locate(located, ip) == expected


def test_country_rule(locator: Locator) -> None:
    assert locate(locator, "127.2.0.1") == Location("east", "telecom", Match.GEO)


def test_subdivision_rule_beats_country_rule(locator: Locator) -> None:
    assert locate(locator, "127.1.0.1").region == "north"
    assert locate(locator, "127.3.0.1").region == "south"


def test_subdivision_without_rule_uses_country_rule(locator: Locator) -> None:
    assert locate(locator, "127.4.0.1") == Location("east", "telecom", Match.GEO)


def test_lowercase_rules_match(databases: tuple[Path, Path]) -> None:
    city, _ = databases
    rules = (RegionRule("cn", None, "east"), RegionRule("cn", "gd", "south"))
    with Locator(replace(geo_config(city_db=city), region_rules=rules)) as located:
        assert locate(located, "127.3.0.1").region == "south"


@pytest.mark.parametrize(
    ("ip", "carrier"),
    [("127.2.0.1", "telecom"), ("127.1.2.3", "unicom"), ("127.1.3.4", "mobile")],
)
def test_asn_gives_carrier(locator: Locator, ip: str, carrier: str) -> None:
    assert locate(locator, ip).carrier == carrier


def test_unknown_asn_gives_default_carrier(locator: Locator) -> None:
    assert locate(locator, "127.5.0.1") == Location("east", "any", Match.GEO)


def test_unknown_ip_gives_defaults(locator: Locator) -> None:
    assert locate(locator, "198.51.100.1") == Location("central", "any", Match.DEFAULT)


def test_country_without_rule_gives_default_region(locator: Locator) -> None:
    assert locate(locator, "127.9.0.1") == Location("central", "telecom", Match.DEFAULT)


def test_no_region_but_known_carrier(locator: Locator) -> None:
    assert locate(locator, "192.0.2.1") == Location("central", "mobile", Match.DEFAULT)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("2001:db8::1", Location("north", "unicom", Match.GEO)),
        ("2001:db8:13::1", Location("south", "unicom", Match.GEO)),
        ("2001:db8:2::1", Location("east", "telecom", Match.OVERRIDE)),
        ("2001:db9::1", Location("central", "any", Match.DEFAULT)),
    ],
)
def test_ipv6(locator: Locator, ip: str, expected: Location) -> None:
    assert locate(locator, ip) == expected


def test_ipv4_mapped_address_is_looked_up_as_ipv4(locator: Locator) -> None:
    assert locate(locator, "::ffff:127.1.2.3") == Location("north", "unicom", Match.GEO)
    assert locate(locator, "::ffff:127.3.3.7").match is Match.OVERRIDE


def test_ipv6_against_ipv4_only_databases(tmp_path: Path) -> None:
    city, asn = tmp_path / "city4.mmdb", tmp_path / "asn4.mmdb"
    write_city_db(city, {"127.0.0.0/8": ("CN", None)}, ip_version=4)
    write_asn_db(asn, {"127.0.0.0/8": 4134}, ip_version=4)
    with Locator(geo_config(city_db=city, asn_db=asn)) as located:
        assert locate(located, "127.0.0.1") == Location("east", "telecom", Match.GEO)
        assert locate(located, "2001:db8::1") == Location("central", "any", Match.DEFAULT)


def test_without_databases_only_overrides_and_defaults() -> None:
    with Locator(geo_config()) as located:
        assert locate(located, "127.103.2.9") == Location("south", "unicom", Match.OVERRIDE)
        assert locate(located, "127.1.2.3") == Location("central", "any", Match.DEFAULT)


@pytest.mark.parametrize("key", ["city_db", "asn_db"])
def test_missing_database_is_config_error(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^geo\.{key}: .*missing\.mmdb"):
        Locator(config_with(key, tmp_path / "missing.mmdb"))


@pytest.mark.parametrize("key", ["city_db", "asn_db"])
def test_file_that_is_not_a_database_is_config_error(tmp_path: Path, key: str) -> None:
    bogus = tmp_path / "bogus.mmdb"
    bogus.write_bytes(b"not a MaxMind database\n" * 10)
    with pytest.raises(ConfigError, match=rf"^geo\.{key}: "):
        Locator(config_with(key, bogus))


def test_closed_databases_degrade_to_defaults(
    locator: Locator, caplog: pytest.LogCaptureFixture
) -> None:
    locator.close()
    with caplog.at_level(logging.WARNING, logger="geodrop.geo.locator"):
        assert locate(locator, "127.1.2.3") == Location("central", "any", Match.DEFAULT)
    assert any("geo.city_db" in r.getMessage() for r in caplog.records)
    assert any("geo.asn_db" in r.getMessage() for r in caplog.records)
    # The operator's table needs no database.
    assert locate(locator, "127.103.2.9").match is Match.OVERRIDE


def test_match_values_are_the_wire_names() -> None:
    assert [m.value for m in Match] == ["override", "geo", "fallback", "default"]
    assert f"{Match.GEO}" == "geo"
