"""A real SeaweedFS server (master, volume, filer and S3 gateway in one ``weed`` process).

Started on loopback with an identities file, so the S3 gateway checks the key as a real
store would (without one SeaweedFS accepts anything, even unsigned requests). Every
HTTP port's gRPC twin is the port + 10000: ports are picked so that both are free.
The benchmark (bench/s3upload.py) starts its SeaweedFS here too.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from geodrop.config import S3StorageConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WEED: Final = Path(sys.executable).parent / "weed"
HOST: Final = "127.0.0.1"
ACCESS_KEY: Final = "geodrop-test-access"
SECRET_KEY: Final = "geodrop-test-secret-0123456789"
REGION_NAME: Final = "us-east-1"
START_SECONDS: Final = 60.0
# How long a stopping weed gets before SIGKILL. On SIGTERM its filer waits ~15 s for its
# gRPC streams to end before the process exits (measured: 15.2 s, with or without data);
# the data of these instances is thrown away, so that wait buys nothing: it cost every
# test session and every benchmark run 15 s.
STOP_SECONDS: Final = 2.0
# The gRPC port of every HTTP port P is P + 10000; ephemeral ports start at 32768, so
# P is drawn below that and neither port meets a client socket's.
_PORT_RANGE: Final = (20000, 22700)


@dataclass(frozen=True, slots=True)
class SeaweedFS:
    """A running server: where its S3 gateway answers and with which key."""

    endpoint_url: str
    access_key: str
    secret_key: str
    root: Path
    log_dir: Path
    # The ``weed`` process (the benchmark measures its CPU time).
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def client(self) -> S3Client:
        """A plain boto3 client, to look at what geodrop left in the store."""
        return s3_client(self.endpoint_url, self.access_key, self.secret_key)

    def storage_config(self, bucket: str, **options: object) -> S3StorageConfig:
        """geodrop's configuration for ``bucket`` in this server."""
        return S3StorageConfig(
            endpoint_url=self.endpoint_url,
            bucket=bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region_name=REGION_NAME,
            **options,  # type: ignore[arg-type]
        )

    def storage_table(self, bucket: str, **options: int | str) -> str:
        """geodrop's ``storage`` TOML inline table for ``bucket``, with more ``options``
        (``part_size = 5242880``, ``downloads = "presign"``…)."""
        settings: dict[str, int | str] = {
            "kind": "s3",
            "endpoint_url": self.endpoint_url,
            "bucket": bucket,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            **options,
        }
        pairs = (f"{key} = {json.dumps(value)}" for key, value in settings.items())
        return "{ " + ", ".join(pairs) + " }"

    def new_bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def drop_bucket(self, name: str) -> None:
        """Empty ``name`` (objects and open multipart uploads) and delete it.

        Each bucket is a SeaweedFS collection holding volumes of its own: dropped after
        each test, so a long session never runs out of volume slots.
        """
        client = self.client()
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)

    def log(self) -> str:
        """Everything the server logged, for a failure message."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            if path.is_file() and not path.is_symlink():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> S3Client:
    """A boto3 S3 client with path-style addressing (what SeaweedFS on one host serves)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION_NAME,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports P, each with P and P + 10000 free, none equal to another's twin."""
    chosen: list[int] = []
    for _ in range(2000):
        port = random.randrange(*_PORT_RANGE)
        taken = {p for c in chosen for p in (c, c + 10000)}
        if {port, port + 10000} & taken or not (_free(port) and _free(port + 10000)):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError("no free ports for SeaweedFS")


def _command(root: Path, log_dir: Path, ports: list[int], volume_size_limit_mb: int) -> list[str]:
    master, volume, filer, s3 = ports
    return [
        str(WEED),
        f"-logdir={log_dir}",
        "server",
        "-s3",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={root}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-s3.port={s3}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.volumeSizeLimitMB={volume_size_limit_mb}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={root / 's3.json'}",
    ]


def _write_identities(path: Path) -> None:
    identity = {
        "name": "geodrop",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def _wait_until_ready(server: SeaweedFS, process: subprocess.Popen[bytes]) -> None:
    client = server.client()
    deadline = time.monotonic() + START_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed exited with {process.returncode} while starting:\n{server.log()}"
            )
        try:
            # A bucket write proves the filer and a volume answer, not just the gateway.
            probe = f"ready-{uuid.uuid4().hex[:12]}"
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ready")
            client.delete_object(Bucket=probe, Key="probe")
            client.delete_bucket(Bucket=probe)
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
            time.sleep(0.3)
        else:
            return
    raise RuntimeError(
        f"SeaweedFS S3 did not answer within {START_SECONDS:.0f} s ({last_error!r}):\n"
        f"{server.log()}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, up to :data:`STOP_SECONDS` to finish, then SIGKILL; sockets cleaned up."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # weed leaves its gRPC unix sockets in /tmp, named after its ports.
    for path in glob.glob("/tmp/seaweedfs-*-grpc-*.sock"):  # noqa: S108 - weed's own choice
        with contextlib.suppress(OSError):
            if _owned_by_nobody(path):
                os.unlink(path)


def _owned_by_nobody(path: str) -> bool:
    """True when no server listens on the unix socket any more (another weed may)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return True
    return False


@contextlib.contextmanager
def running_seaweedfs(root: Path, *, volume_size_limit_mb: int = 64) -> Iterator[SeaweedFS]:
    """Start SeaweedFS with its data and logs under ``root``; stop it on exit.

    Args:
        volume_size_limit_mb: the size of one volume. The tests' small volumes let many
            buckets (each a collection of volumes) share the disk; the benchmark's 1 GiB
            files go into larger ones.

    Raises:
        RuntimeError: it did not start; the message carries its log.
    """
    data, log_dir = root / "data", root / "logs"
    data.mkdir(parents=True)
    log_dir.mkdir()
    _write_identities(data / "s3.json")
    ports = _free_ports(4)
    with (log_dir / "stdout.log").open("wb") as output:
        process = subprocess.Popen(
            _command(data, log_dir, ports, volume_size_limit_mb),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    endpoint = f"http://{HOST}:{ports[3]}"
    server = SeaweedFS(endpoint, ACCESS_KEY, SECRET_KEY, data, log_dir, process)
    try:
        _wait_until_ready(server, process)
        yield server
    finally:
        stop(process)
