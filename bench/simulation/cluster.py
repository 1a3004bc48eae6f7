"""A real geodrop cluster inside the simulated network: its config, processes and users."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.simulation.model import (
    DIRECTORY_ADDRESS,
    DIRECTORY_PORT,
    SERVER_PORT,
    Deployment,
)
from bench.simulation.netns import Topology

HERE: Final = Path(__file__).resolve().parent
HEARTBEAT_SECONDS: Final = 1.0
STOP_SECONDS: Final = 5.0
# Limits high enough that only the network shapes the figures. Keys the running
# geodrop does not know are left out (its config rejects unknown keys).
LIMITS: Final[dict[str, int]] = {
    "max_file_size": 1024**3,
    "upload_expiry_seconds": 3600,
    "retention_seconds": 3600,
    "signed_url_ttl_seconds": 3600,
    "max_receivers": 50,
    "min_free_bytes": 0,
    "user_quota_bytes": 1024**4,
    "user_uploads_per_day": 1_000_000,
    "requests_per_minute_per_user": 1_000_000,
    "requests_per_minute_per_ip": 1_000_000,
    "received_grace_seconds": 3600,
    "max_downloads": 0,
}


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII used here
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _known_limit_keys() -> set[str]:
    from geodrop.config import LimitsConfig

    return {f.name for f in dataclasses.fields(LimitsConfig)}


def write_config(deployment: Deployment, work_dir: Path, data_dir: Path) -> Path:
    """Write the cluster's TOML file for ``deployment``; returns its path.

    The TOML goes to ``work_dir``; stored files, metadata and the directory's database to
    ``data_dir`` (a tmpfs: the simulation measures network paths, not disks).
    """
    directory_url = f"http://{DIRECTORY_ADDRESS}:{DIRECTORY_PORT}"
    lines = [
        f"heartbeat_interval_seconds = {HEARTBEAT_SECONDS}",
        "",
        "[directory]",
        f"url = {_toml_value(directory_url)}",
        f"listen = {_toml_value(f'{DIRECTORY_ADDRESS}:{DIRECTORY_PORT}')}",
        f"database = {_toml_value(str(data_dir / 'directory.sqlite3'))}",
        f"heartbeat_timeout_seconds = {4 * HEARTBEAT_SECONDS}",
        "",
        "[keys]",
        *(f"{name} = {_toml_value(secrets.token_hex(24))}" for name in _key_names()),
        "",
        "[limits]",
    ]
    known = _known_limit_keys()
    lines += [f"{k} = {v}" for k, v in LIMITS.items() if k in known]
    names = [r.name for r in deployment.regions]
    lines += [
        "",
        "[geo]",
        f"default_region = {_toml_value(names[0])}",
        'default_carrier = "any"',
        "trusted_proxies = []",
    ]
    for group in deployment.groups:
        lines += [
            "",
            "[[geo.overrides]]",
            f"network = {_toml_value(group.subnet)}",
            f"region = {_toml_value(deployment.home_region(group))}",
            f"carrier = {_toml_value(group.carrier)}",
        ]
    for region in deployment.regions:
        url = f"http://{region.access_address}:{SERVER_PORT}"
        lines += [
            "",
            "[[regions]]",
            f"name = {_toml_value(region.name)}",
            f"access_url = {_toml_value(url)}",
            f"listen = {_toml_value(f'{region.access_address}:{SERVER_PORT}')}",
            f"fallback = {_toml_value([n for n in names if n != region.name])}",
            "storage = "
            + _toml_value({"kind": "local", "path": str(data_dir / region.name / "blobs")}),
            "metadata = "
            + _toml_value(
                {"kind": "sqlite", "path": str(data_dir / region.name / "metadata.sqlite3")}
            ),
        ]
        for link in region.links:
            lines += [
                "",
                "[[regions.links]]",
                f"name = {_toml_value(link.name)}",
                f"carrier = {_toml_value(link.carrier)}",
                f"url = {_toml_value(f'http://{link.address}:{SERVER_PORT}')}",
                f"listen = {_toml_value(f'{link.address}:{SERVER_PORT}')}",
                f"capacity_mbps = {link.capacity_mbps or 1000.0:g}",
            ]
    path = work_dir / "cluster.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _key_names() -> tuple[str, ...]:
    return ("user_token", "peer", "url_signing")


def mint_tokens(config_path: Path, users: Sequence[str]) -> dict[str, str]:
    """A bearer token for each user, signed with the cluster's key."""
    from geodrop.config import load_config
    from geodrop.protocol.usertokens import mint_token

    config = load_config(config_path)
    now = time.time()
    tokens = {}
    for user in users:
        try:
            tokens[user] = mint_token(config.keys, user, now=now, lifetime_seconds=86400)
        except (TypeError, AttributeError):  # an older signature took the key itself
            tokens[user] = mint_token(
                config.keys.user_token,  # type: ignore[arg-type]
                user,
                now=now,
                lifetime_seconds=86400,
            )
    return tokens


class Cluster:
    """The directory and every region's file server of one deployment, as processes.

    Args:
        topology: the built network they run in.
        config_path: the cluster TOML.
        log_dir: where each process's output goes.
        fileserver_argv: how to start one region's file server (default: the real
            ``python -m geodrop fileserver``); given the region name.
    """

    def __init__(
        self,
        topology: Topology,
        config_path: Path,
        log_dir: Path,
        fileserver_argv: Any = None,
    ) -> None:
        self.topology = topology
        self.config_path = config_path
        self.log_dir = log_dir
        self.fileserver_argv = fileserver_argv or self._real_fileserver
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _real_fileserver(self, region: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "geodrop",
            "--config",
            str(self.config_path),
            "fileserver",
            "--region",
            region,
        ]

    def _start(self, name: str, ns: str, argv: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.processes[name] = subprocess.Popen(
            [*self.topology.exec_prefix(ns), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()

    def start(self) -> None:
        """Start the directory (in the core) and each file server (in its region)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        directory = [sys.executable, "-m", "geodrop", "--config", str(self.config_path)]
        self._start("directory", self.topology.core, [*directory, "directory"])
        for region in self.topology.deployment.regions:
            self._start(
                f"fileserver-{region.name}",
                self.topology.server_ns(region.name),
                self.fileserver_argv(region.name),
            )

    def check_alive(self) -> None:
        """Raise if a server process has exited, with the end of its log."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM every process, then SIGKILL whichever is still there after a few seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_SECONDS)
        self.processes.clear()
