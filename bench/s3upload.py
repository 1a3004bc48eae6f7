"""S3 upload: geodrop's S3 storage unit vs a plain boto3 multipart upload, one SeaweedFS.

Both sides put the same file into the same bucket of one SeaweedFS on loopback:

- geodrop: a file server whose region keeps its files in SeaweedFS (default S3
  settings: 8 MiB parts, 4 in flight); `POST /v1/uploads` (untimed), then one tus
  `PATCH` of the whole file from one fast client (`bench/httpclient.py`, the body by
  `socket.sendfile`). The answer comes after geodrop has streamed the parts into a
  multipart upload, checked the sha256 and completed the object.
- boto3: `upload_file` with its default `TransferConfig` (8 MiB parts, 10 threads),
  timed from call to return.

After each upload the object is deleted (tus termination for geodrop) and the bench
calls `sync`, untimed, so no side inherits the other's dirty pages.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench.context import BenchContext, GiB
from bench.cpuaccount import cpu_account
from bench.datafiles import random_file, sha256_of
from bench.measure import Results, alternate, ratio, ratio_text, shown_against
from bench.procs import Service, Services
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster

if TYPE_CHECKING:
    from support.seaweedfs import SeaweedFS

GEODROP: Final = "geodrop (tus → S3 multipart)"
BOTO3: Final = "boto3 upload_file (default TransferConfig)"
SIDES: Final = (GEODROP, BOTO3)
BUCKET: Final = "bench"
GOAL: Final = 0.5
REPO: Final = Path(__file__).resolve().parent.parent
# Volumes that take a 1 GiB file in one (the tests' are small, for many small buckets).
VOLUME_SIZE_LIMIT_MB: Final = 1024

Send = Callable[[], float]  # one upload; its seconds


def _running_seaweedfs(root: Path) -> AbstractContextManager[SeaweedFS]:
    # SeaweedFS starts exactly as the tests start it (tests/support/seaweedfs.py), as
    # bench/metadata.py does PostgreSQL.
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.seaweedfs import running_seaweedfs

    return running_seaweedfs(root, volume_size_limit_mb=VOLUME_SIZE_LIMIT_MB)


def _measured(
    send: Send, size: int, seaweedfs: Service, geodrop: Service
) -> Callable[[], Mapping[str, float]]:
    def trial() -> Mapping[str, float]:
        seaweedfs.check_alive()
        geodrop.check_alive()
        store_cpu, server_cpu, client_cpu = (
            seaweedfs.cpu_seconds(),
            geodrop.cpu_seconds(),
            time.process_time(),
        )
        seconds = send()
        gib = size / GiB
        figures = {
            "MB/s": size / seconds / 1e6,
            "SeaweedFS CPU s/GiB": (seaweedfs.cpu_seconds() - store_cpu) / gib,
            "geodrop CPU s/GiB": (geodrop.cpu_seconds() - server_cpu) / gib,
            "bench client CPU s/GiB": (time.process_time() - client_cpu) / gib,
        }
        os.sync()
        return figures

    return trial


def _geodrop_send(cluster: Cluster, data: Path, sha256: str) -> Send:
    def send() -> float:
        _, upload_url, seconds = cluster.upload(data, sha256=sha256)
        cluster.delete_upload(upload_url)
        return seconds

    return send


def _boto3_send(seaweedfs: SeaweedFS, data: Path) -> Send:
    client = seaweedfs.client()

    def send() -> float:
        start = time.perf_counter()
        client.upload_file(str(data), BUCKET, "boto3/data.bin")
        seconds = time.perf_counter() - start
        client.delete_object(Bucket=BUCKET, Key="boto3/data.bin")
        return seconds

    return send


def run(ctx: BenchContext) -> Section:
    size = ctx.big_file
    data = random_file(ctx.work_dir / "data.bin", size)
    sha256 = sha256_of(data)
    # geodrop stops first (leaving the `with`s inside out): SeaweedFS outlives its client.
    with (
        _running_seaweedfs(ctx.work_dir / "seaweedfs") as seaweedfs,
        Services(ctx.work_dir / "logs") as services,
    ):
        store = Service("seaweedfs", seaweedfs.process, seaweedfs.log_dir / "stdout.log")
        store.account = cpu_account("seaweedfs", store.pids())
        seaweedfs.client().create_bucket(Bucket=BUCKET)
        cluster = Cluster(
            ctx.work_dir / "geodrop",
            services,
            storage={"north": seaweedfs.storage_table(BUCKET, prefix="geodrop/")},
        )
        cluster.start(["directory", "north"])
        north = cluster.service("north")
        sides = {
            GEODROP: _measured(_geodrop_send(cluster, data, sha256), size, store, north),
            BOTO3: _measured(_boto3_send(seaweedfs, data), size, store, north),
        }
        results = alternate(ctx, "s3 upload", sides, warmup=True)
        peak_rss_mib = north.peak_rss_kib() / 1024
    if store.account is not None:
        store.account.remove()
    return _section(ctx, results, peak_rss_mib)


def _section(ctx: BenchContext, results: Results, peak_rss_mib: float) -> Section:
    g = results[GEODROP]["MB/s"]
    rows = [
        [
            side,
            results[side]["MB/s"].fmt(0),
            ratio_text(g, results[side]["MB/s"]),
            results[side]["SeaweedFS CPU s/GiB"].fmt(2),
            results[side]["geodrop CPU s/GiB"].fmt(2) if side == GEODROP else "–",
            results[side]["bench client CPU s/GiB"].fmt(2),
        ]
        for side in SIDES
    ]
    versus = ratio(g, results[BOTO3]["MB/s"])
    targets = [
        Target(
            "S3 upload: geodrop / boto3 upload_file, same SeaweedFS",
            shown_against(versus, GOAL),
            f"≥ {GOAL}×",
            versus >= GOAL,
        )
    ]
    markdown = "\n".join(
        [
            (__doc__ or "").split("\n", 2)[2].strip() + "\n",
            f"{ctx.big_file_label} file, a warm-up round then {ctx.rounds} alternating "
            "rounds. MB/s = file size / time of the upload; CPU per GiB of each process "
            "over the trial (the bench client is the boto3 side's uploader; geodrop's "
            "client is the kernel's sendfile). geodrop's file server peaked at "
            f"{peak_rss_mib:.0f} MiB RSS.\n",
            markdown_table(
                [
                    "uploader",
                    "MB/s",
                    "geodrop / this",
                    "SeaweedFS CPU s/GiB",
                    "geodrop CPU s/GiB",
                    "bench client CPU s/GiB",
                ],
                rows,
            ),
        ]
    )
    return Section("9. S3 upload", markdown, targets)
