"""Tests of geodrop.config: the example cluster parses, and bad input names its key."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import tomllib
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Final

import pytest

from geodrop.cli import main
from geodrop.cli.exitcodes import CONFIG as EXIT_CONFIG
from geodrop.config import (
    ClusterConfig,
    ListenAddress,
    LocalStorageConfig,
    PostgresMetadataConfig,
    S3StorageConfig,
    SqliteMetadataConfig,
    load_config,
    parse_config,
)
from geodrop.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dev-cluster.toml"
REGIONS = ("north", "east", "south")
CARRIERS = ("telecom", "unicom", "mobile")
FALLBACKS = {"north": ("east", "south"), "east": ("north", "south"), "south": ("east", "north")}

Document = dict[str, Any]


@pytest.fixture(scope="module")
def example() -> ClusterConfig:
    return load_config(EXAMPLE)


@pytest.fixture
def document() -> Document:
    """The example's parsed TOML, for one test to break."""
    return copy.deepcopy(_EXAMPLE_DOCUMENT)


_EXAMPLE_DOCUMENT: Document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------
# The example cluster


def test_example_has_three_regions_of_three_carrier_links(example: ClusterConfig) -> None:
    assert example.region_names == REGIONS
    for number, region in enumerate(example.regions, start=1):
        assert tuple(link.name for link in region.links) == CARRIERS
        assert tuple(link.carrier for link in region.links) == CARRIERS
        assert region.fallback == FALLBACKS[region.name]
        assert region.access_url == f"http://127.{number}.0.1:7701"
        assert region.listen == ListenAddress(f"127.{number}.0.1", 7701)
        for c, link in enumerate(region.links, start=1):
            assert link.url == f"http://127.{number}.{c}.1:7701"
            assert link.listen == ListenAddress(f"127.{number}.{c}.1", 7701)
            assert link.capacity_mbps == 1000.0


def test_example_directory_keys_limits_and_geo(example: ClusterConfig) -> None:
    assert example.directory.url == "http://127.0.0.1:7700"
    assert str(example.directory.listen) == "127.0.0.1:7700"
    assert example.heartbeat_interval_seconds == 1.0
    assert example.directory.heartbeat_timeout_seconds == 4.0
    assert example.keys.peer == "dev-only-peer-key-0123456789abcdef-0123"
    assert example.limits.max_file_size == 10 * 1024**3
    assert example.limits.max_receivers == 50
    assert example.limits.min_free_bytes == 64 * 1024 * 1024
    assert example.geo.default_region == "north"
    assert example.geo.default_carrier == "any"
    assert example.geo.city_db is None
    assert example.geo.asn_db is None
    assert dict(example.geo.asn_carriers) == {4134: "telecom", 4837: "unicom", 9808: "mobile"}
    assert len(example.geo.overrides) == 9
    assert example.geo.overrides[4].network == ip_network("127.102.2.0/24")
    assert example.geo.overrides[4].region == "east"
    assert example.geo.overrides[4].carrier == "unicom"
    assert [(r.country, r.subdivision, r.region) for r in example.geo.region_rules] == [
        ("CN", "BJ", "north"),
        ("CN", "SH", "east"),
        ("CN", "GD", "south"),
    ]


def test_region_lookup(example: ClusterConfig) -> None:
    assert example.region("east").name == "east"
    with pytest.raises(KeyError):
        example.region("west")


def test_config_objects_are_frozen(example: ClusterConfig) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.regions[0].links[0].carrier = "mobile"  # type: ignore[misc]


def test_relative_paths_are_taken_from_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "geodrop"
    folder.mkdir(parents=True)
    (folder / "cluster.toml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(Path("..") / "etc" / "geodrop" / "cluster.toml")

    var = (tmp_path / "etc" / "var").resolve()
    assert config.source == (folder / "cluster.toml").resolve()
    assert isinstance(config.directory.metadata, SqliteMetadataConfig)
    assert config.directory.metadata.path.is_absolute()
    assert config.directory.metadata.path.resolve() == var / "directory" / "inbox.sqlite3"
    north = config.region("north")
    assert isinstance(north.storage, LocalStorageConfig)
    assert north.storage.path.resolve() == var / "north" / "blobs"
    assert isinstance(north.metadata, SqliteMetadataConfig)
    assert north.metadata.path.resolve() == var / "north" / "metadata.sqlite3"


def test_optional_sections_take_their_defaults(document: Document) -> None:
    del document["limits"]
    del document["heartbeat_interval_seconds"]
    del document["directory"]["heartbeat_timeout_seconds"]
    del document["regions"][0]["links"][0]["capacity_mbps"]
    del document["regions"][0]["links"][0]["carrier"]

    config = parse_config(document, Path("/srv"))

    assert config.limits.max_file_size == 10 * 1024**3
    assert config.limits.retention_seconds == 7 * 24 * 3600
    assert config.limits.body_idle_seconds == 60
    assert config.heartbeat_interval_seconds == 2.0
    assert config.directory.heartbeat_timeout_seconds == 10.0
    assert config.regions[0].links[0].capacity_mbps == 1000.0
    assert config.regions[0].links[0].carrier == "any"


# ---------------------------------------------------------------------------
# Bad configurations name their key


def _set(path: str, value: object) -> Callable[[Document], None]:
    """A mutation setting the value at a dotted path (``regions.0.links.1.carrier``)."""

    def mutate(document: Document) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() and isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() and isinstance(node, list) else node[part]
        del node[last]

    return mutate


def _strip_links(document: Document) -> None:
    document["regions"][1]["links"] = []


def _duplicate_link(document: Document) -> None:
    document["regions"][0]["links"][1]["name"] = "telecom"


# An s3 storage table without its endpoint, for cases to complete or break.
_S3: dict[str, object] = {"kind": "s3", "bucket": "geodrop", "access_key": "k", "secret_key": "s"}
_PART: Final = 5 * 1024 * 1024
# S3 takes 10,000 parts: 5 MiB parts hold files of 10,000 × 5 MiB at the most.
_LARGEST_WITH_PART: Final = 10_000 * _PART


def _s3_parts(max_file_size: int) -> Callable[[Document], None]:
    """Region 1 on S3 with 5 MiB parts, and files of up to ``max_file_size`` bytes."""

    def mutate(document: Document) -> None:
        document["regions"][1]["storage"] = {
            **_S3,
            "endpoint_url": "http://127.0.0.1:9000",
            "part_size": _PART,
        }
        document.setdefault("limits", {})["max_file_size"] = max_file_size

    return mutate


BAD_CONFIGS: list[tuple[str, Callable[[Document], None], str]] = [
    ("missing [keys]", _delete("keys"), "keys"),
    ("missing [directory]", _delete("directory"), "directory"),
    ("missing [geo]", _delete("geo"), "geo"),
    ("missing key", _delete("keys.url_signing"), "keys.url_signing"),
    ("short key", _set("keys.peer", "too-short-a-secret"), "keys.peer"),
    ("empty key", _set("keys.user_token", ""), "keys.user_token"),
    ("unknown top-level key", _set("colour", "blue"), "colour"),
    ("unknown link key", _set("regions.0.links.2.bandwidth", 5), "regions[0].links[2].bandwidth"),
    ("unknown limits key", _set("limits.max_speed", 5), "limits.max_speed"),
    ("bad carrier", _set("regions.0.links.1.carrier", "satellite"), "regions[0].links[1].carrier"),
    ("bad link name", _set("regions.2.links.0.name", "Tele Com"), "regions[2].links[0].name"),
    ("duplicate link", _duplicate_link, "regions[0].links[1].name"),
    ("no links", _strip_links, "regions[1].links"),
    ("host name listen", _set("regions.1.listen", "localhost:7701"), "regions[1].listen"),
    ("listen without port", _set("regions.1.listen", "127.2.0.1"), "regions[1].listen"),
    ("listen port 0", _set("directory.listen", "127.0.0.1:0"), "directory.listen"),
    ("listen port too big", _set("directory.listen", "127.0.0.1:65536"), "directory.listen"),
    ("listen port not a number", _set("directory.listen", "127.0.0.1:http"), "directory.listen"),
    ("ftp URL", _set("regions.2.access_url", "ftp://127.3.0.1"), "regions[2].access_url"),
    (
        "URL without scheme",
        _set("regions.0.links.0.url", "127.1.1.1:7701"),
        "regions[0].links[0].url",
    ),
    ("URL with query", _set("directory.url", "http://127.0.0.1:7700/?x=1"), "directory.url"),
    ("URL without host", _set("directory.url", "http://"), "directory.url"),
    ("duplicate region", _set("regions.1.name", "north"), "regions[1].name"),
    ("bad region name", _set("regions.1.name", "East"), "regions[1].name"),
    ("region name with newline", _set("regions.1.name", "east\n"), "regions[1].name"),
    (
        "link name with newline",
        _set("regions.1.links.0.name", "telecom\n"),
        "regions[1].links[0].name",
    ),
    (
        "fallback to unknown region",
        _set("regions.0.fallback", ["east", "west"]),
        "regions[0].fallback[1]",
    ),
    ("fallback to itself", _set("regions.2.fallback", ["south"]), "regions[2].fallback[0]"),
    ("fallback not a list", _set("regions.2.fallback", "east"), "regions[2].fallback"),
    ("fallback of numbers", _set("regions.2.fallback", [1]), "regions[2].fallback[0]"),
    ("storage kind", _set("regions.0.storage.kind", "ftp"), "regions[0].storage.kind"),
    ("metadata kind", _set("regions.0.metadata.kind", "mysql"), "regions[0].metadata.kind"),
    ("s3 without endpoint", _set("regions.0.storage", _S3), "regions[0].storage.endpoint_url"),
    (
        "s3 part too small",
        _set("regions.0.storage", {**_S3, "endpoint_url": "http://127.0.0.1:9000", "part_size": 1}),
        "regions[0].storage.part_size",
    ),
    (
        "s3 parts too small for max_file_size",
        _s3_parts(_LARGEST_WITH_PART + 1),
        "regions[1].storage.part_size",
    ),
    (
        "s3 downloads mode",
        _set(
            "regions.0.storage", {**_S3, "endpoint_url": "http://127.0.0.1:9000", "downloads": "x"}
        ),
        "regions[0].storage.downloads",
    ),
    (
        "postgres without dsn",
        _set("regions.0.metadata", {"kind": "postgres"}),
        "regions[0].metadata.dsn",
    ),
    (
        "postgres dsn not a URL",
        _set("regions.0.metadata", {"kind": "postgres", "dsn": "host=db"}),
        "regions[0].metadata.dsn",
    ),
    ("two units on local storage", _set("regions.0.access_units", 2), "regions[0].access_units"),
    ("origin with a path", _set("web_origins", ["https://a.example/app"]), "web_origins[0]"),
    ("log format", _set("logging", {"format": "xml"}), "logging.format"),
    ("operators not a list", _set("directory.operators", "ops"), "directory.operators"),
    ("two directories on sqlite", _set("directory.instances", 2), "directory.instances"),
    (
        "directory database and metadata",
        _set("directory.metadata", {"kind": "sqlite", "path": "x.sqlite3"}),
        "directory.database",
    ),
    (
        "create_bucket not a boolean",
        _set(
            "regions.0.storage",
            {**_S3, "endpoint_url": "http://127.0.0.1:9000", "create_bucket": 1},
        ),
        "regions[0].storage.create_bucket",
    ),
    ("storage without path", _delete("regions.0.storage.path"), "regions[0].storage.path"),
    ("override region unknown", _set("geo.overrides.4.region", "west"), "geo.overrides[4].region"),
    ("override carrier", _set("geo.overrides.0.carrier", "cable"), "geo.overrides[0].carrier"),
    (
        "override network",
        _set("geo.overrides.0.network", "127.101.1.0/33"),
        "geo.overrides[0].network",
    ),
    ("region rule region", _set("geo.region_rules.1.region", "west"), "geo.region_rules[1].region"),
    ("default region unknown", _set("geo.default_region", "west"), "geo.default_region"),
    ("default carrier", _set("geo.default_carrier", "cable"), "geo.default_carrier"),
    ("trusted proxy", _set("geo.trusted_proxies", ["not-a-net"]), "geo.trusted_proxies[0]"),
    ("non-digit ASN", _set("geo.asn_carriers.AS4134", "telecom"), "geo.asn_carriers.AS4134"),
    ("ASN carrier", _set("geo.asn_carriers.4134", "cable"), "geo.asn_carriers.4134"),
    (
        "timeout equals interval",
        _set("heartbeat_interval_seconds", 4.0),
        "directory.heartbeat_timeout_seconds",
    ),
    (
        "timeout below interval",
        _set("directory.heartbeat_timeout_seconds", 0.5),
        "directory.heartbeat_timeout_seconds",
    ),
    ("zero interval", _set("heartbeat_interval_seconds", 0), "heartbeat_interval_seconds"),
    ("bool interval", _set("heartbeat_interval_seconds", True), "heartbeat_interval_seconds"),
    ("bool size", _set("limits.max_file_size", True), "limits.max_file_size"),
    (
        "bool capacity",
        _set("regions.0.links.0.capacity_mbps", False),
        "regions[0].links[0].capacity_mbps",
    ),
    (
        "string capacity",
        _set("regions.0.links.0.capacity_mbps", "1000"),
        "regions[0].links[0].capacity_mbps",
    ),
    (
        "zero capacity",
        _set("regions.0.links.0.capacity_mbps", 0),
        "regions[0].links[0].capacity_mbps",
    ),
    ("float count", _set("limits.max_receivers", 2.5), "limits.max_receivers"),
    ("zero count", _set("limits.max_receivers", 0), "limits.max_receivers"),
    ("no body idle time", _set("limits.body_idle_seconds", 0), "limits.body_idle_seconds"),
    ("negative headroom", _set("limits.min_free_bytes", -1), "limits.min_free_bytes"),
    ("number as key", _set("keys.peer", 12345678901234567890123456789012345), "keys.peer"),
    ("table as string", _set("directory", "http://127.0.0.1:7700"), "directory"),
    ("no regions", _set("regions", []), "regions"),
    ("region not a table", _set("regions", ["north"]), "regions[0]"),
]


@pytest.mark.parametrize(
    ("mutate", "key"),
    [pytest.param(mutate, key, id=name) for name, mutate, key in BAD_CONFIGS],
)
def test_bad_config_names_the_key(
    document: Document, mutate: Callable[[Document], None], key: str
) -> None:
    mutate(document)
    with pytest.raises(ConfigError) as raised:
        parse_config(document, Path("/srv"))
    assert raised.value.message.startswith(f"{key}: "), raised.value.message


def test_s3_part_size_bounds_the_largest_file(document: Document) -> None:
    _s3_parts(_LARGEST_WITH_PART + 1)(document)
    with pytest.raises(ConfigError) as raised:
        parse_config(document, Path("/srv"))
    assert f"files of at most {_LARGEST_WITH_PART} bytes" in raised.value.message
    assert f"at least {_PART + 1}" in raised.value.message  # the part size that would do
    _s3_parts(_LARGEST_WITH_PART)(document)
    assert parse_config(document, Path("/srv")).regions[1].storage.kind == "s3"


def test_bad_config_error_is_not_an_http_error(document: Document) -> None:
    _set("regions.0.links.1.carrier", "satellite")(document)
    with pytest.raises(ConfigError) as raised:
        parse_config(document, Path("/srv"))
    assert raised.value.code == "config"
    assert "telecom, unicom, mobile, any" in raised.value.message


def test_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text("[keys\nuser_token = = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.message.startswith(f"{path}: not valid TOML")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.message.startswith(f"{path}: cannot read")


def test_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_bytes(b"heartbeat_interval_seconds = 1.0 # \xff\xfe\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.message.startswith(str(path))


# ---------------------------------------------------------------------------
# The command line


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geodrop", "--config", str(path), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    # The first unicom link is the north region's second link.
    broken = text.replace('carrier = "unicom"\nurl', 'carrier = "satellite"\nurl', 1)
    assert broken != text
    path = tmp_path / "cluster.toml"
    path.write_text(broken, encoding="utf-8")

    result = _check_config(path)

    assert result.returncode == EXIT_CONFIG == 78
    assert "regions[0].links[1].carrier" in result.stderr
    assert result.stdout == ""


def test_check_config_accepts_the_example() -> None:
    result = _check_config(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "ok (3 regions)" in result.stdout


def test_missing_config_option_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == EXIT_CONFIG
    assert "--config" in capsys.readouterr().err


def test_s3_and_postgres_sections_parse(document: Document) -> None:
    document["regions"][0]["storage"] = {
        **_S3,
        "endpoint_url": "http://127.0.0.1:8333/",
        "prefix": "north/",
        "part_size": 16 * 1024 * 1024,
        "downloads": "presign",
        "create_bucket": True,
    }
    document["regions"][0]["metadata"] = {"kind": "postgres", "dsn": "postgresql://g@db/north"}
    document["regions"][0]["access_units"] = 3
    del document["directory"]["database"]
    document["directory"]["metadata"] = {"kind": "postgres", "dsn": "postgresql://g@db/dir"}
    document["directory"]["instances"] = 2

    config = parse_config(document, Path("/etc/geodrop"))

    north = config.region("north")
    assert north.storage == S3StorageConfig(
        endpoint_url="http://127.0.0.1:8333",
        bucket="geodrop",
        access_key="k",
        secret_key="s",
        prefix="north/",
        part_size=16 * 1024 * 1024,
        downloads="presign",
        create_bucket=True,
    )
    assert north.metadata == PostgresMetadataConfig("postgresql://g@db/north")
    assert north.access_units == 3
    assert config.directory.metadata == PostgresMetadataConfig("postgresql://g@db/dir")
    assert config.directory.instances == 2


def test_web_origins_add_to_the_directorys_own(example: ClusterConfig, document: Document) -> None:
    assert example.allowed_origins == ("http://127.0.0.1:7700",)
    document["web_origins"] = ["https://chat.example/", "http://127.0.0.1:7700"]
    config = parse_config(document, Path("/etc/geodrop"))
    assert config.allowed_origins == ("http://127.0.0.1:7700", "https://chat.example")
