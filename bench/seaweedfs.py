"""A SeaweedFS server (S3 gateway included) for the bench, from the venv's ``weed``.

The flags are the ones that work on these machines (docs in tests/support/seaweedfs.py,
whose fixture starts the same server for the tests): loopback only, an identities file
so the gateway checks the key, and every HTTP port's gRPC twin (port + 10000) free.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from bench.procs import Service, Services

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WEED: Final = Path(sys.executable).parent / "weed"
HOST: Final = "127.0.0.1"
ACCESS_KEY: Final = "geodrop-bench-access"
SECRET_KEY: Final = "geodrop-bench-secret-0123456789"  # noqa: S105 - a loopback test server's
REGION_NAME: Final = "us-east-1"
# SeaweedFS takes ≈ 15 s to stop after SIGTERM; it is killed after this.
STOP_SECONDS: Final = 20.0


@dataclass(frozen=True, slots=True)
class SeaweedFS:
    service: Service
    endpoint_url: str

    def client(self) -> S3Client:
        return s3_client(self.endpoint_url)

    def storage_table(self, bucket: str, prefix: str) -> str:
        """geodrop's ``storage`` TOML inline table for ``bucket`` (default part settings)."""
        return (
            f'{{ kind = "s3", endpoint_url = "{self.endpoint_url}", bucket = "{bucket}", '
            f'access_key = "{ACCESS_KEY}", secret_key = "{SECRET_KEY}", prefix = "{prefix}" }}'
        )

    def stop(self, services: Services) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_SECONDS`; its stray sockets removed."""
        self.service.stop(timeout=STOP_SECONDS)
        if self.service in services.running:
            services.running.remove(self.service)
        for path in glob.glob("/tmp/seaweedfs-*-grpc-*.sock"):  # noqa: S108 - weed's own names
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)


def s3_client(endpoint_url: str) -> S3Client:
    """A plain boto3 client (path-style, as SeaweedFS on one host serves)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION_NAME,
        config=Config(s3={"addressing_style": "path"}),
    )


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _ports() -> list[int]:
    """Four ports P, each with P + 10000 free (below the ephemeral range)."""
    chosen: list[int] = []
    while len(chosen) < 4:
        port = random.randrange(20000, 22700)
        taken = {p for c in chosen for p in (c, c + 10000)}
        if not {port, port + 10000} & taken and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def start(services: Services, root: Path) -> SeaweedFS:
    """Start SeaweedFS with its data in ``root``; ready once S3 lists buckets."""
    root.mkdir(parents=True, exist_ok=True)
    identity = {
        "name": "geodrop",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    master, volume, filer, s3 = _ports()
    (root / "logs").mkdir(exist_ok=True)
    argv = [
        str(WEED), f"-logdir={root / 'logs'}", "server", "-s3", f"-ip={HOST}",
        f"-ip.bind={HOST}", f"-dir={root}", f"-master.port={master}",
        f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=1024",
        "-volume.max=0", "-volume.preStopSeconds=0",
        f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={root / 's3.json'}",
    ]  # fmt: skip
    endpoint = f"http://{HOST}:{s3}"
    probe = s3_client(endpoint)

    def answers() -> bool:
        try:
            probe.list_buckets()
        except Exception:  # not up yet, whatever the reason
            return False
        return True

    service = services.start("seaweedfs", argv, ready=answers, cwd=root, timeout=60)
    return SeaweedFS(service, endpoint)
