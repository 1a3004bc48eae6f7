"""Real geodrop processes on the 127.x testbed, on a port of their own.

Addresses follow DESIGN.md §6 (north 127.1.x.1, east 127.2.x.1, south 127.3.x.1,
directory 127.0.0.1) but every cluster picks a free port, so a running
development cluster and parallel test clusters never collide.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from geodrop.testbed import (
    CARRIERS,
    REGIONS,
    access_host,
    client_address,
    free_port,
    hosts,
    link_host,
    overrides_toml,
    region_toml,
)
from support.certs import TlsFiles

# With the testbed's own names, for the tests that import them from here.
__all__ = [
    "CARRIERS",
    "PEER_KEY",
    "REGIONS",
    "URL_KEY",
    "USER_KEY",
    "Cluster",
    "ExtraLink",
    "RegionLayout",
    "client_address",
    "free_port",
    "running_cluster",
    "user_token",
]

USER_KEY = "test-user-token-key-0123456789abcdef-xyz"
PEER_KEY = "test-peer-key-0123456789abcdef-0123456789"
URL_KEY = "test-url-signing-key-0123456789abcdef-xyz"


def user_token(user: str, lifetime: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + lifetime}, USER_KEY, algorithm="HS256")


@dataclass
class ExtraLink:
    region: str
    name: str
    carrier: str
    host: str
    capacity_mbps: float = 1000.0


@dataclass(frozen=True)
class RegionLayout:
    """Where one region keeps files and metadata, and how many access units serve it.

    The tables are TOML inline tables, e.g. ``{ kind = "s3", endpoint_url = "…", … }``.
    """

    storage: str
    metadata: str
    access_units: int = 1


@dataclass
class Cluster:
    """A cluster's configuration on disk and its running processes."""

    root: Path
    port: int = 0
    heartbeat_interval: float = 0.3
    heartbeat_timeout: float = 1.5
    extra_links: Sequence[ExtraLink] = ()
    extra_toml: str = ""
    # More keys of the [limits] table (TOML lines).
    limits_toml: str = ""
    # More lines of the ``[keys]`` table (key ids, previous keys, audience, issuer).
    keys_toml: str = ""
    # HTTPS on every listener with this certificate (valid for every address of ``hosts``).
    tls: TlsFiles | None = None
    # Regions not named here keep files on local FS and metadata in SQLite, one unit each.
    layouts: Mapping[str, RegionLayout] = field(default_factory=dict)
    # The directory's metadata table (TOML inline table); None: SQLite.
    directory_metadata: str | None = None
    directory_instances: int = 1
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or free_port(self.hosts(self.extra_links))
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text(self.toml())

    @staticmethod
    def hosts(extra_links: Sequence[ExtraLink] = ()) -> list[str]:
        """Every address a cluster's servers listen on."""
        return hosts() + [link.host for link in extra_links]

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the cluster's CA (None for plain HTTP)."""
        return None if self.tls is None else ssl.create_default_context(cafile=self.tls.ca)

    # -- addresses -------------------------------------------------------------
    access_host = staticmethod(access_host)
    link_host = staticmethod(link_host)

    @property
    def directory_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def access_url(self, region: str) -> str:
        return f"{self.scheme}://{self.access_host(region)}:{self.port}"

    def link_url(self, region: str, carrier: str) -> str:
        return f"{self.scheme}://{self.link_host(region, carrier)}:{self.port}"

    # -- configuration ---------------------------------------------------------
    def toml(self) -> str:
        p = self.port
        out = [
            f"heartbeat_interval_seconds = {self.heartbeat_interval}\n",
            "[directory]\n",
            f'url = "{self.directory_url}"\nlisten = "127.0.0.1:{p}"\n',
            (
                f"metadata = {self.directory_metadata}\ninstances = {self.directory_instances}\n"
                if self.directory_metadata
                else 'database = "directory/inbox.sqlite3"\n'
            ),
            f"heartbeat_timeout_seconds = {self.heartbeat_timeout}\n",
            f'[keys]\nuser_token = "{USER_KEY}"\npeer = "{PEER_KEY}"\nurl_signing = "{URL_KEY}"\n',
            self.keys_toml,
            "[limits]\nmax_file_size = 209715200\nsigned_url_ttl_seconds = 600\n",
            self.limits_toml,
            self.tls_toml(),
            '[geo]\ndefault_region = "north"\ndefault_carrier = "any"\n',
        ]
        out.append(overrides_toml())
        for name, _, _ in REGIONS:
            layout = self.layout(name)
            out.append(
                region_toml(
                    name,
                    self.scheme,
                    p,
                    f"storage = {layout.storage}\nmetadata = {layout.metadata}\n"
                    f"access_units = {layout.access_units}\n",
                )
            )
            for link in self.extra_links:
                if link.region == name:
                    out.append(
                        f'[[regions.links]]\nname = "{link.name}"\ncarrier = "{link.carrier}"\n'
                        f'url = "{self.scheme}://{link.host}:{p}"\nlisten = "{link.host}:{p}"\n'
                        f"capacity_mbps = {link.capacity_mbps}\n"
                    )
        return "".join(out) + self.extra_toml

    def layout(self, region: str) -> RegionLayout:
        return self.layouts.get(region) or RegionLayout(
            storage=f'{{ kind = "local", path = "{region}/blobs" }}',
            metadata=f'{{ kind = "sqlite", path = "{region}/metadata.sqlite3" }}',
        )

    def quiet_seconds(self, region: str) -> float:
        """How long a region's links must look idle before it surely is (support.e2e_flows):
        several access units see each other's figures up to a second or so late."""
        return 1.5 if self.layout(region).access_units > 1 else 0.0

    def units(self, name: str) -> list[str]:
        """Process names of ``directory`` or of a region's access units: north, north#2, …"""
        count = self.directory_instances if name == "directory" else self.layout(name).access_units
        return [name if i == 0 else f"{name}#{i + 1}" for i in range(count)]

    def tls_toml(self, ca_file: Path | None = None) -> str:
        """The ``[tls]`` table (empty without TLS); ``ca_file`` replaces the cluster's CA."""
        if self.tls is None:
            return ""
        return (
            f'[tls]\ncert_file = "{self.tls.cert}"\nkey_file = "{self.tls.key}"\n'
            f'ca_file = "{ca_file or self.tls.ca}"\n'
        )

    # -- processes -------------------------------------------------------------
    def command(self, *role: str, config: Path | None = None) -> list[str]:
        path = config or self.config_path
        return [sys.executable, "-m", "geodrop", "--config", str(path), *role]

    def start(self, name: str, *, config: Path | None = None) -> None:
        """Start ``directory`` or a region's file server and wait until it answers.

        ``name`` may number one of several units: ``north#2`` is north's second access unit.
        ``config`` runs the process from another configuration file than the cluster's.
        """
        role_name = name.partition("#")[0]
        role = ["directory"] if role_name == "directory" else ["fileserver", "--region", role_name]
        log_path = self.root / f"{name}.log"
        ready_lines = log_path.read_bytes().count(b" ready\n") if log_path.exists() else 0
        with log_path.open("ab") as log:
            self.processes[name] = subprocess.Popen(
                self.command(*role, config=config),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )
        url = self.directory_url if role_name == "directory" else self.access_url(role_name)
        self._wait_healthy(name, url + "/healthz", log_path, ready_lines)

    def _wait_healthy(
        self, name: str, url: str, log_path: Path, ready_lines: int, timeout: float = 30.0
    ) -> None:
        """Wait for the process's own "ready" line, then for its address to answer.

        Units sharing an address (SO_REUSEPORT) would let an older unit answer for a new
        one: the ready line is what proves this process listens.
        """
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)}")
            if log_path.read_bytes().count(b" ready\n") > ready_lines:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(url, timeout=1, context=context) as answer,  # noqa: S310 - loopback
                ):
                    if answer.status == 200:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not become healthy: {self.log(name)}")

    def start_all(self) -> None:
        for unit in self.units("directory"):
            self.start(unit)
        for name, _, _ in REGIONS:
            for unit in self.units(name):
                self.start(unit)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@contextlib.contextmanager
def running_cluster(root: Path, **options: object) -> Iterator[Cluster]:
    cluster = Cluster(root, **options)  # type: ignore[arg-type]
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
