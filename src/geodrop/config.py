"""The cluster configuration: one TOML file, read by every process.

This module is the only way in for configuration: it parses the file into typed,
frozen objects and rejects anything it does not understand with a
:class:`~geodrop.errors.ConfigError` naming the offending key (``regions[1].links[0].carrier``).
Relative paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from geodrop.errors import ConfigError

CARRIERS: Final = ("telecom", "unicom", "mobile", "any")
REGION_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")
LINK_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}\Z")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A host and port a server binds."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One carrier link of a file server: an address clients reach it on."""

    name: str
    url: str
    listen: ListenAddress
    carrier: str
    capacity_mbps: float


@dataclass(frozen=True, slots=True)
class LocalStorageConfig:
    """Files on this machine's file system (the embedded default)."""

    path: Path
    kind: Literal["local"] = "local"


MIN_S3_PART_SIZE: Final = 5 * 1024 * 1024  # S3's smallest part but the last
MAX_S3_PARTS: Final = 10_000  # S3's limit on the parts of one multipart upload


@dataclass(frozen=True, slots=True)
class S3StorageConfig:
    """Files in an S3-compatible object store (SeaweedFS, MinIO, Ceph, AWS S3)."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region_name: str = "us-east-1"
    # Every object key starts with it, so regions (or clusters) may share a bucket.
    prefix: str = ""
    # Bytes of one multipart part: what an upload buffers before sending a part.
    part_size: int = 8 * 1024 * 1024
    # Parts of one upload sent at once while the next part is received.
    parallel_parts: int = 4
    # "stream": the link serves the bytes from S3; "presign": the link redirects the
    # client to a presigned S3 URL (the store must then be reachable by clients).
    downloads: Literal["stream", "presign"] = "stream"
    create_bucket: bool = False
    kind: Literal["s3"] = "s3"


StorageConfig = LocalStorageConfig | S3StorageConfig


@dataclass(frozen=True, slots=True)
class SqliteMetadataConfig:
    """Metadata in one SQLite file (the embedded default: one process per region)."""

    path: Path
    kind: Literal["sqlite"] = "sqlite"


@dataclass(frozen=True, slots=True)
class PostgresMetadataConfig:
    """Metadata in PostgreSQL, shared by every process of a region (or of the directory)."""

    dsn: str
    pool_size: int = 10
    kind: Literal["postgres"] = "postgres"


MetadataConfig = SqliteMetadataConfig | PostgresMetadataConfig


@dataclass(frozen=True, slots=True)
class RegionConfig:
    """One region: its access unit, its links, where it keeps files and metadata."""

    name: str
    access_url: str
    listen: ListenAddress
    links: tuple[LinkConfig, ...]
    fallback: tuple[str, ...]
    storage: StorageConfig
    metadata: MetadataConfig
    # Access-unit processes serving the region together (SO_REUSEPORT on every
    # address); more than one needs shared storage (s3) and metadata (postgres).
    access_units: int = 1


@dataclass(frozen=True, slots=True)
class OverrideRule:
    network: Network
    region: str
    carrier: str


@dataclass(frozen=True, slots=True)
class RegionRule:
    """A country (and optionally one of its subdivisions) that belongs to a region."""

    country: str
    subdivision: str | None
    region: str


@dataclass(frozen=True, slots=True)
class GeoConfig:
    default_region: str
    default_carrier: str
    city_db: Path | None
    asn_db: Path | None
    overrides: tuple[OverrideRule, ...]
    region_rules: tuple[RegionRule, ...]
    asn_carriers: Mapping[int, str]
    trusted_proxies: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class KeysConfig:
    """Secrets of the cluster (docs/SECURITY.md says what each protects)."""

    user_token: str
    peer: str
    url_signing: str
    # Key id of ``user_token``: new tokens carry it in their ``kid`` header.
    user_token_kid: str = "default"  # noqa: S105 - a key id, not a secret
    # Older user-token keys by key id, still accepted so keys rotate without downtime.
    user_token_previous: Mapping[str, str] = field(default_factory=dict)
    token_audience: str | None = None
    token_issuer: str | None = None

    def user_token_keys(self) -> dict[str, str]:
        """Every key a user token may be signed with, by key id (the current one included)."""
        return {**self.user_token_previous, self.user_token_kid: self.user_token}


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_file_size: int
    upload_expiry_seconds: int
    retention_seconds: int
    signed_url_ttl_seconds: int
    max_receivers: int
    min_free_bytes: int
    user_quota_bytes: int
    user_uploads_per_day: int
    requests_per_minute_per_user: int
    requests_per_minute_per_ip: int
    received_grace_seconds: int
    max_downloads: int  # per file; 0: no limit
    # How often a file server looks for expired transfers to delete.
    sweep_interval_seconds: float = 30.0
    # An upload body that brings no byte for this long ends, what came of it kept, so
    # the upload's lock is let go and its client can resume from a new connection.
    body_idle_seconds: int = 60


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """HTTPS for every listener, and the authority that peers' certificates are checked against."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None

    def server_context(self) -> ssl.SSLContext:
        """What every listener serves HTTPS with: this certificate and key, TLS 1.2 or later.

        Raises:
            ConfigError: a file is missing or does not load; the message names its key.
        """
        _check_readable("tls.cert_file", self.cert_file)
        _check_readable("tls.key_file", self.key_file)
        try:
            # Certificates alone first, so a broken file is blamed on the right key.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=self.cert_file)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls.cert_file: no PEM certificate in {self.cert_file}: {exc}"
            ) from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls.key_file: {self.key_file} is not a PEM private key of tls.cert_file: {exc}"
            ) from None
        return context

    def client_context(self) -> ssl.SSLContext:
        """How servers verify each other's certificates: against ``ca_file``, else the system's.

        Raises:
            ConfigError: ``ca_file`` is missing or holds no certificate.
        """
        if self.ca_file is not None:
            _check_readable("tls.ca_file", self.ca_file)
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(f"tls.ca_file: no PEM certificate in {self.ca_file}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def _check_readable(key: str, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{key}: no such file: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a server.
    raise ConfigError("tls.key_file: the key is encrypted; give geodrop an unencrypted key")


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    url: str
    listen: ListenAddress
    # Inboxes and region health; ``database = "file.sqlite3"`` is short for SQLite.
    metadata: MetadataConfig
    heartbeat_timeout_seconds: float
    # Directory processes serving together; more than one needs postgres metadata.
    instances: int = 1
    # Users (token subjects) who may read the operator status (/status, /v1/status).
    operators: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """What every process logs: one line per request (access log), as text or JSON."""

    format: Literal["text", "json"] = "text"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Everything every process of one geodrop cluster needs to know."""

    directory: DirectoryConfig
    regions: tuple[RegionConfig, ...]
    geo: GeoConfig
    keys: KeysConfig
    limits: LimitsConfig
    heartbeat_interval_seconds: float
    tls: TlsConfig | None = None
    # More web origins allowed to call the access units and links from a browser (CORS),
    # besides the directory's own, which serves the web client.
    web_origins: tuple[str, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = field(default=None, compare=False)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """Origins a browser may call geodrop's APIs from (CORS): the directory's, which
        serves the web client, and ``web_origins``."""
        own = _origin(self.directory.url)
        return (own, *(origin for origin in self.web_origins if origin != own))

    def region(self, name: str) -> RegionConfig:
        """The region called ``name``.

        Raises:
            KeyError: there is no such region.
        """
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)


# ---------------------------------------------------------------------------
# Parsing


class _Table:
    """A TOML table that remembers its own key path, for error messages."""

    def __init__(self, data: Mapping[str, Any], path: str, base: Path) -> None:
        self.data = data
        self.path = path
        self.base = base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                raise ConfigError(f"{self.key(name)}: missing")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(f"{self.key(name)}: expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise ConfigError(
                f"{self.key(name)}: expected {_kind_name(kind)}, got {type(value).__name__}"
            )
        return value

    def string(self, name: str, default: Any = None) -> str:
        value: str = self._get(name, str, _REQUIRED if default is None else default)
        if not value:
            raise ConfigError(f"{self.key(name)}: must not be empty")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, bool, default)
        return value

    def optional_string(self, name: str) -> str | None:
        value: str | None = self._get(name, str, None)
        return value

    def number(self, name: str, default: float | None = None, *, minimum: float = 0) -> float:
        value = float(self._get(name, (int, float), _REQUIRED if default is None else default))
        if value <= minimum:
            raise ConfigError(f"{self.key(name)}: must be greater than {minimum:g}")
        return value

    def integer(self, name: str, default: int | None = None, *, minimum: int = 1) -> int:
        value: int = self._get(name, int, _REQUIRED if default is None else default)
        if value < minimum:
            raise ConfigError(f"{self.key(name)}: must be at least {minimum}")
        return value

    def path_value(self, name: str, default: str | None = None) -> Path:
        return self.base / self.string(name, default)

    def optional_path(self, name: str) -> Path | None:
        value = self.optional_string(name)
        return None if value is None else self.base / value

    def string_list(self, name: str) -> tuple[str, ...]:
        values = self._get(name, list, [])
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ConfigError(f"{self.key(name)}[{i}]: expected a string")
        return tuple(values)

    def table(self, name: str, *, required: bool = True) -> _Table:
        value = self._get(name, dict, _REQUIRED if required else {})
        return _Table(value, self.key(name), self.base)

    def tables(self, name: str) -> list[_Table]:
        values = self._get(name, list, [])
        out = []
        for i, value in enumerate(values):
            if not isinstance(value, dict):
                raise ConfigError(f"{self.key(name)}[{i}]: expected a table")
            out.append(_Table(value, f"{self.key(name)}[{i}]", self.base))
        return out

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


_REQUIRED: Final = object()


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _listen(table: _Table, name: str) -> ListenAddress:
    text = table.string(name)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port_number = int(port)
    except ValueError:
        raise ConfigError(
            f"{table.key(name)}: expected ADDRESS:PORT with a literal IP address, got {text!r}"
        ) from None
    if not sep or not 0 < port_number < 65536:
        raise ConfigError(f"{table.key(name)}: port must be 1-65535, got {text!r}")
    return ListenAddress(host, port_number)


def _url(table: _Table, name: str) -> str:
    text = table.string(name).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(f"{table.key(name)}: expected an http(s) URL, got {text!r}")
    return text


def _origin(url: str) -> str:
    """The web origin (scheme://host[:port]) of an http(s) URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _origin_value(table: _Table, name: str, text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(
            f"{table.key(name)}: expected an origin like https://app.example, got {text!r}"
        )
    return _origin(text)


def _network(table: _Table, name: str, text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{table.key(name)}: not an IP network: {text!r}") from None


def _carrier(table: _Table, name: str) -> str:
    carrier = table.string(name, "any")
    if carrier not in CARRIERS:
        raise ConfigError(f"{table.key(name)}: must be one of {', '.join(CARRIERS)}")
    return carrier


def _parse_link(table: _Table) -> LinkConfig:
    name = table.string("name")
    if not LINK_NAME.match(name):
        raise ConfigError(f"{table.key('name')}: use lowercase letters, digits and '-'")
    link = LinkConfig(
        name=name,
        url=_url(table, "url"),
        listen=_listen(table, "listen"),
        carrier=_carrier(table, "carrier"),
        capacity_mbps=table.number("capacity_mbps", 1000.0),
    )
    table.finish()
    return link


def _parse_region(table: _Table) -> RegionConfig:
    name = table.string("name")
    if not REGION_NAME.match(name):
        raise ConfigError(
            f"{table.key('name')}: a region name is a lowercase letter, then letters, digits, '-'"
        )
    links = tuple(_parse_link(t) for t in table.tables("links"))
    if not links:
        raise ConfigError(f"{table.key('links')}: a region needs at least one link")
    seen: set[str] = set()
    for i, link in enumerate(links):
        if link.name in seen:
            raise ConfigError(f"{table.key('links')}[{i}].name: duplicate link name {link.name!r}")
        seen.add(link.name)
    storage = _parse_storage(table.table("storage"))
    metadata = _parse_metadata(table.table("metadata"))
    access_units = table.integer("access_units", 1)
    if access_units > 1 and (storage.kind != "s3" or metadata.kind != "postgres"):
        raise ConfigError(
            f"{table.key('access_units')}: more than one access unit needs "
            'storage.kind = "s3" and metadata.kind = "postgres"'
        )
    region = RegionConfig(
        name=name,
        access_url=_url(table, "access_url"),
        listen=_listen(table, "listen"),
        links=links,
        fallback=table.string_list("fallback"),
        storage=storage,
        metadata=metadata,
        access_units=access_units,
    )
    table.finish()
    return region


def _parse_storage(table: _Table) -> StorageConfig:
    kind = table.string("kind", "local")
    storage: StorageConfig
    if kind == "local":
        storage = LocalStorageConfig(table.path_value("path"))
    elif kind == "s3":
        endpoint = _url(table, "endpoint_url")
        part_size = table.integer("part_size", 8 * 1024 * 1024, minimum=MIN_S3_PART_SIZE)
        downloads = table.string("downloads", "stream")
        if downloads not in ("stream", "presign"):
            raise ConfigError(f"{table.key('downloads')}: must be stream or presign")
        prefix = table.optional_string("prefix") or ""
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ConfigError(f"{table.key('prefix')}: a relative key prefix like 'north/'")
        create_bucket = table.boolean("create_bucket", False)
        storage = S3StorageConfig(
            endpoint_url=endpoint,
            bucket=table.string("bucket"),
            access_key=table.string("access_key"),
            secret_key=table.string("secret_key"),
            region_name=table.string("region_name", "us-east-1"),
            prefix=prefix,
            part_size=part_size,
            parallel_parts=table.integer("parallel_parts", 4),
            downloads="presign" if downloads == "presign" else "stream",
            create_bucket=create_bucket,
        )
    else:
        raise ConfigError(f"{table.key('kind')}: supported: local, s3")
    table.finish()
    return storage


def _parse_metadata(table: _Table) -> MetadataConfig:
    kind = table.string("kind", "sqlite")
    metadata: MetadataConfig
    if kind == "sqlite":
        metadata = SqliteMetadataConfig(table.path_value("path"))
    elif kind == "postgres":
        dsn = table.string("dsn")
        if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"{table.key('dsn')}: expected a postgresql:// URL")
        metadata = PostgresMetadataConfig(dsn, pool_size=table.integer("pool_size", 10))
    else:
        raise ConfigError(f"{table.key('kind')}: supported: sqlite, postgres")
    table.finish()
    return metadata


def _parse_directory(table: _Table) -> DirectoryConfig:
    metadata: MetadataConfig
    if "database" in table.data:
        if "metadata" in table.data:
            raise ConfigError(f"{table.key('database')}: give database or metadata, not both")
        metadata = SqliteMetadataConfig(table.path_value("database"))
    else:
        metadata = _parse_metadata(table.table("metadata"))
    instances = table.integer("instances", 1)
    if instances > 1 and metadata.kind != "postgres":
        raise ConfigError(
            f"{table.key('instances')}: more than one directory process needs "
            'metadata.kind = "postgres"'
        )
    directory = DirectoryConfig(
        url=_url(table, "url"),
        listen=_listen(table, "listen"),
        metadata=metadata,
        heartbeat_timeout_seconds=table.number("heartbeat_timeout_seconds", 10.0),
        instances=instances,
        operators=table.string_list("operators"),
    )
    table.finish()
    return directory


def _parse_geo(table: _Table, region_names: set[str]) -> GeoConfig:
    def known_region(t: _Table, key: str) -> str:
        value = t.string(key)
        if value not in region_names:
            raise ConfigError(f"{t.key(key)}: no region named {value!r}")
        return value

    overrides = []
    for t in table.tables("overrides"):
        overrides.append(
            OverrideRule(
                _network(t, "network", t.string("network")),
                known_region(t, "region"),
                _carrier(t, "carrier"),
            )
        )
        t.finish()
    rules = []
    for t in table.tables("region_rules"):
        country = t.string("country").upper()
        subdivision = t.optional_string("subdivision")
        rules.append(
            RegionRule(
                country, subdivision.upper() if subdivision else None, known_region(t, "region")
            )
        )
        t.finish()
    carriers_table = table.table("asn_carriers", required=False)
    asn_carriers: dict[int, str] = {}
    for asn_text in list(carriers_table.data):
        if not asn_text.isdigit():
            raise ConfigError(f"{carriers_table.key(asn_text)}: an AS number is digits only")
        asn_carriers[int(asn_text)] = _carrier(carriers_table, asn_text)
    carriers_table.finish()
    trusted = table.string_list("trusted_proxies")
    geo = GeoConfig(
        default_region=known_region(table, "default_region"),
        default_carrier=_carrier(table, "default_carrier"),
        city_db=table.optional_path("city_db"),
        asn_db=table.optional_path("asn_db"),
        overrides=tuple(overrides),
        region_rules=tuple(rules),
        asn_carriers=asn_carriers,
        trusted_proxies=tuple(
            _network(table, f"trusted_proxies[{i}]", t) for i, t in enumerate(trusted)
        ),
    )
    table.finish()
    return geo


def _check_s3_part_count(index: int, storage: StorageConfig, max_file_size: int) -> None:
    """An S3 upload is one multipart upload of at most :data:`MAX_S3_PARTS` parts, so the
    part size bounds the largest file: refuse at start a limit no upload could reach."""
    if not isinstance(storage, S3StorageConfig):
        return
    largest = MAX_S3_PARTS * storage.part_size
    if max_file_size > largest:
        raise ConfigError(
            f"regions[{index}].storage.part_size: parts of {storage.part_size} bytes allow "
            f"files of at most {largest} bytes (S3 takes {MAX_S3_PARTS:,} parts), less than "
            f"limits.max_file_size = {max_file_size}; use a part_size of at least "
            f"{-(-max_file_size // MAX_S3_PARTS)}"
        )


def parse_config(data: Mapping[str, Any], base: Path) -> ClusterConfig:
    """Build a :class:`ClusterConfig` from parsed TOML.

    Args:
        data: the TOML document.
        base: the folder relative paths are taken from.

    Raises:
        ConfigError: the document is invalid; the message names the key.
    """
    root = _Table(data, "", base)
    regions = tuple(_parse_region(t) for t in root.tables("regions"))
    if not regions:
        raise ConfigError("regions: at least one region is required")
    names = [r.name for r in regions]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"regions[{i}].name: duplicate region name {name!r}")
    for i, region in enumerate(regions):
        for j, other in enumerate(region.fallback):
            if other not in names or other == region.name:
                raise ConfigError(f"regions[{i}].fallback[{j}]: {other!r} is not another region")
    directory = _parse_directory(root.table("directory"))
    keys_table = root.table("keys")
    previous_table = keys_table.table("user_token_previous", required=False)
    previous = {kid: previous_table.string(kid) for kid in list(previous_table.data)}
    for kid, secret in previous.items():
        if len(secret) < 32:
            raise ConfigError(f"keys.user_token_previous.{kid}: use at least 32 characters")
    previous_table.finish()
    keys = KeysConfig(
        user_token=keys_table.string("user_token"),
        peer=keys_table.string("peer"),
        url_signing=keys_table.string("url_signing"),
        user_token_kid=keys_table.string("user_token_kid", "default"),
        user_token_previous=previous,
        token_audience=keys_table.optional_string("token_audience"),
        token_issuer=keys_table.optional_string("token_issuer"),
    )
    for name in ("user_token", "peer", "url_signing"):
        if len(getattr(keys, name)) < 32:
            raise ConfigError(f"keys.{name}: use at least 32 characters of secret")
    if keys.user_token_kid in previous:
        raise ConfigError("keys.user_token_kid: also named in keys.user_token_previous")
    keys_table.finish()
    limits_table = root.table("limits", required=False)
    limits = LimitsConfig(
        max_file_size=limits_table.integer("max_file_size", 10 * 1024**3),
        upload_expiry_seconds=limits_table.integer("upload_expiry_seconds", 24 * 3600),
        retention_seconds=limits_table.integer("retention_seconds", 7 * 24 * 3600),
        signed_url_ttl_seconds=limits_table.integer("signed_url_ttl_seconds", 3600),
        max_receivers=limits_table.integer("max_receivers", 50),
        min_free_bytes=limits_table.integer("min_free_bytes", 64 * 1024 * 1024, minimum=0),
        user_quota_bytes=limits_table.integer("user_quota_bytes", 20 * 1024**3),
        user_uploads_per_day=limits_table.integer("user_uploads_per_day", 500),
        requests_per_minute_per_user=limits_table.integer("requests_per_minute_per_user", 1200),
        requests_per_minute_per_ip=limits_table.integer("requests_per_minute_per_ip", 3000),
        received_grace_seconds=limits_table.integer("received_grace_seconds", 3600, minimum=0),
        max_downloads=limits_table.integer("max_downloads", 0, minimum=0),
        sweep_interval_seconds=limits_table.number("sweep_interval_seconds", 30.0),
        body_idle_seconds=limits_table.integer("body_idle_seconds", 60, minimum=1),
    )
    limits_table.finish()
    for i, region in enumerate(regions):
        _check_s3_part_count(i, region.storage, limits.max_file_size)
    tls_table = root.table("tls", required=False)
    tls = None
    if tls_table.data:
        tls = TlsConfig(
            cert_file=tls_table.path_value("cert_file"),
            key_file=tls_table.path_value("key_file"),
            ca_file=tls_table.optional_path("ca_file"),
        )
    tls_table.finish()
    if tls is not None:
        # Load them now, so a bad file stops the process with its key named, not mid-request.
        tls.server_context()
        tls.client_context()
    geo = _parse_geo(root.table("geo"), set(names))
    web_origins = tuple(
        _origin_value(root, f"web_origins[{i}]", text)
        for i, text in enumerate(root.string_list("web_origins"))
    )
    logging_table = root.table("logging", required=False)
    log_format = logging_table.string("format", "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"{logging_table.key('format')}: must be text or json")
    logging = LoggingConfig(
        format="json" if log_format == "json" else "text",
        access_log=logging_table.boolean("access_log", True),
    )
    logging_table.finish()
    config = ClusterConfig(
        directory=directory,
        regions=regions,
        geo=geo,
        keys=keys,
        limits=limits,
        heartbeat_interval_seconds=root.number("heartbeat_interval_seconds", 2.0),
        tls=tls,
        web_origins=web_origins,
        logging=logging,
    )
    root.finish()
    if config.heartbeat_interval_seconds >= directory.heartbeat_timeout_seconds:
        raise ConfigError(
            "directory.heartbeat_timeout_seconds: must exceed heartbeat_interval_seconds"
        )
    return config


def load_config(path: Path) -> ClusterConfig:
    """Read and validate the cluster configuration file at ``path``.

    Raises:
        ConfigError: the file is missing, is not TOML, or is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition (TOML 1.0 "Spec").
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(data, path.resolve().parent)
    return ClusterConfig(
        directory=config.directory,
        regions=config.regions,
        geo=config.geo,
        keys=config.keys,
        limits=config.limits,
        heartbeat_interval_seconds=config.heartbeat_interval_seconds,
        tls=config.tls,
        web_origins=config.web_origins,
        logging=config.logging,
        source=path.resolve(),
    )
