"""A geodrop cluster for the bench on the 127.x testbed of DESIGN.md §6, on a free port.

Addresses follow the testbed (directory 127.0.0.1, region R's access unit 127.R.0.1,
its carrier links 127.R.C.1; clients of region R and carrier C come from 127.10R.C.x)
but the port is one that is free on all of them, so a running development cluster or a
test suite never collides with the bench. Limits are set far above any load the bench
makes (rate limits, quotas, daily upload counts), so they never throttle a figure.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import jwt

from bench import httpclient
from bench.procs import Service, Services, http_ok
from geodrop import testbed

USER_KEY: Final = "bench-user-token-key-0123456789abcdef-xyz"
PEER_KEY: Final = "bench-peer-key-0123456789abcdef-0123456789"
URL_KEY: Final = "bench-url-signing-key-0123456789abcdef-xyz"
HUGE: Final = 10**12

# Keys of [limits] the bench sets when this geodrop knows them (others add limits
# concurrently; an unknown key would be a configuration error).
_BENCH_LIMITS: Final = {
    "max_file_size": 16 * 1024**3,
    "signed_url_ttl_seconds": 86400,
    "user_quota_bytes": HUGE,
    "user_uploads_per_day": HUGE,
    "requests_per_minute_per_user": HUGE,
    "requests_per_minute_per_ip": HUGE,
    "max_receivers": 50,
}


def token(user: str, lifetime: int = 24 * 3600) -> str:
    """A user token (HS256, no ``kid``: checked against the current key)."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + lifetime}, USER_KEY, algorithm="HS256")


def _known_limits() -> set[str]:
    from geodrop.config import LimitsConfig

    return {f.name for f in dataclasses.fields(LimitsConfig)}


@dataclass
class Cluster:
    """A cluster's configuration in ``root`` and its running processes."""

    root: Path
    services: Services
    heartbeat_interval: float = 1.0
    port: int = 0
    # Extra environment of the geodrop processes (e.g. PYTHONPATH of another source tree,
    # to compare a change with what it replaces).
    env: Mapping[str, str] = field(default_factory=dict)
    label: str = "geodrop"  # process names: LABEL-directory, LABEL-north, …
    # A region's storage as a TOML inline table (e.g. ``{ kind = "s3", … }``); regions
    # not named keep files on the local file system.
    storage: Mapping[str, str] = field(default_factory=dict)
    started: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or testbed.free_port(testbed.hosts())
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "cluster.toml"
        self.config_path.write_text(self.toml())

    @property
    def directory_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_url(self, region: str) -> str:
        return f"http://{testbed.access_host(region)}:{self.port}"

    def link_url(self, region: str, carrier: str) -> str:
        return f"http://{testbed.link_host(region, carrier)}:{self.port}"

    def storage_root(self, region: str) -> Path:
        return self.root / region / "blobs"

    def stored_file(self, file_id: str) -> Path:
        """Where a complete file lies on disk (``files/REGION/XX/ID``)."""
        region, _, rest = file_id.partition(".")
        return self.storage_root(region) / "files" / region / rest[:2] / file_id

    def toml(self) -> str:
        p = self.port
        known = _known_limits()
        limits = "".join(f"{k} = {v}\n" for k, v in _BENCH_LIMITS.items() if k in known)
        out = [
            f"heartbeat_interval_seconds = {self.heartbeat_interval}\n",
            "[directory]\n",
            f'url = "{self.directory_url}"\nlisten = "127.0.0.1:{p}"\n',
            'database = "directory/inbox.sqlite3"\n',
            f"heartbeat_timeout_seconds = {self.heartbeat_interval * 5}\n",
            f'[keys]\nuser_token = "{USER_KEY}"\npeer = "{PEER_KEY}"\nurl_signing = "{URL_KEY}"\n',
            f"[limits]\n{limits}",
            '[geo]\ndefault_region = "north"\ndefault_carrier = "any"\n',
            # wrk and nginx-side clients come from 127.0.0.1: place them (north, telecom)
            # through the override table, as a located client is.
            '[[geo.overrides]]\nnetwork = "127.0.0.1/32"\nregion = "north"\ncarrier = "telecom"\n',
        ]
        out.append(testbed.overrides_toml())
        for name, _, _ in testbed.REGIONS:
            storage = self.storage.get(name, self._local_storage(name))
            metadata = f'{{ kind = "sqlite", path = "{name}/metadata.sqlite3" }}'
            more = f"storage = {storage}\nmetadata = {metadata}\n"
            out.append(testbed.region_toml(name, "http", p, more))
        return "".join(out)

    @staticmethod
    def _local_storage(region: str) -> str:
        return f'{{ kind = "local", path = "{region}/blobs" }}'

    def start(self, names: Sequence[str] = ("directory", "north", "east", "south")) -> None:
        """Start the directory and file servers named, each once it answers /healthz."""
        for name in names:
            role = ["directory"] if name == "directory" else ["fileserver", "--region", name]
            url = self.directory_url if name == "directory" else self.access_url(name)
            argv = [sys.executable, "-m", "geodrop", "--config", str(self.config_path), *role]
            self.services.start(
                f"{self.label}-{name}",
                argv,
                ready=partial(http_ok, url + "/healthz"),
                cwd=self.root,
                env={**os.environ, **self.env},
            )
            self.started[name] = url
        # Regions count as alive only after a heartbeat has reached the directory.
        time.sleep(self.heartbeat_interval * 1.5)

    def service(self, name: str) -> Service:
        """The running process of ``directory`` or a region."""
        for s in self.services.running:
            if s.name == f"{self.label}-{name}":
                return s
        raise KeyError(name)

    # -- the flows the benchmarks drive -------------------------------------------------

    def upload(
        self,
        path: Path,
        *,
        sender: str = "alice",
        receivers: Sequence[str] = ("bob",),
        sha256: str | None = None,
        region: str = "north",
        carrier: str = "telecom",
    ) -> tuple[str, str, float]:
        """Negotiate and send ``path`` with one tus PATCH; ``(file_id, upload_url, seconds)``.

        The seconds are the PATCH's alone (body, verification, fsync, commit).
        """
        payload: dict[str, object] = {
            "name": path.name,
            "size": path.stat().st_size,
            "receivers": list(receivers),
        }
        if sha256 is not None:
            payload["sha256"] = sha256
        source = testbed.client_address(region, carrier)
        answer = httpclient.expect(
            httpclient.json_request(
                "POST",
                self.access_url(region) + "/v1/uploads",
                payload,
                token=token(sender),
                source=source,
            ),
            201,
            what="upload negotiation",
        ).json()
        start = time.perf_counter()
        httpclient.expect(
            httpclient.request(
                "PATCH",
                answer["upload_url"],
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
                file=path,
                source=source,
            ),
            204,
            what="tus PATCH",
        )
        return str(answer["file_id"]), str(answer["upload_url"]), time.perf_counter() - start

    def delete_upload(self, upload_url: str) -> None:
        """tus termination: the file and its record go (keeps the disk from filling)."""
        httpclient.tus_terminate(upload_url)

    def download_url(
        self, file_id: str, *, user: str = "bob", region: str = "north", carrier: str = "telecom"
    ) -> str:
        """A signed link URL, negotiated at ``region``'s access unit by a client there."""
        answer = httpclient.expect(
            httpclient.json_request(
                "POST",
                self.access_url(region) + "/v1/downloads",
                {"file_id": file_id},
                token=token(user),
                source=testbed.client_address(region, carrier),
            ),
            200,
            what="download negotiation",
        ).json()
        return str(answer["url"])
