"""2. Upload: geodrop's tus vs @tus/server + @tus/file-store vs a raw recv/write ceiling.

One fast client for every side (`bench/httpclient.py`: the request head, then the
file by `socket.sendfile`, so the client's cost is the kernel's copy). Each side gets
the whole file in one request; the time is that request's, from the first byte sent to
the answer, so it includes making the data durable:

- geodrop: `POST /v1/uploads` (untimed), then one tus `PATCH` of the whole file; the
  answer comes after the server has checked the sha256, fsynced and committed the file.
- @tus/server: `POST /files` (creation, untimed), then one `PATCH`; the bench's
  server fsyncs the file in `onUploadFinish` (@tus/file-store itself never fsyncs).
- raw ceiling: `PUT` to a thread-per-connection `recv_into` + `os.write` loop that
  fsyncs before answering.
- nginx WebDAV `PUT`, for reference: nginx does **not** fsync.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final

from bench import anchors, httpclient, nginx
from bench.context import BenchContext, GiB
from bench.datafiles import random_file, sha256_of
from bench.measure import Results, alternate, ratio, ratio_text, shown_against
from bench.plots import Panel, bar_panels
from bench.procs import Service, Services
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster

GEODROP: Final = "geodrop (tus, fsync)"
TUS: Final = "@tus/server (fsync)"
RAW: Final = "raw recv_into + write (fsync)"
NGINX: Final = "nginx WebDAV PUT (no fsync)"
SIDES: Final = (GEODROP, TUS, RAW, NGINX)

Cleanup = Callable[[], None]  # removes what one upload stored
Send = Callable[[], tuple[float, Cleanup]]  # one upload: the data request's seconds


def _measured(send: Send, server: Service, size: int) -> Callable[[], Mapping[str, float]]:
    def trial() -> Mapping[str, float]:
        server.check_alive()
        cpu = server.cpu_seconds()
        seconds, cleanup = send()
        used = server.cpu_seconds() - cpu
        # Outside the CPU counted: removing the file is no part of an upload's cost, and
        # the tus servers remove theirs on request where the bench removes the others'.
        cleanup()
        # Level the field: no side starts with another's dirty pages still in flight.
        os.sync()
        return {"GB/s": size / seconds / 1e9, "CPU s/GiB": used / (size / GiB)}

    return trial


def _geodrop_send(cluster: Cluster, data: Path, sha256: str) -> Send:
    def send() -> tuple[float, Cleanup]:
        _, upload_url, seconds = cluster.upload(data, sha256=sha256)
        return seconds, lambda: cluster.delete_upload(upload_url)

    return send


def _tus_send(base: str, data: Path) -> Send:
    def send() -> tuple[float, Cleanup]:
        size = data.stat().st_size
        created = httpclient.expect(
            httpclient.request(
                "POST",
                f"{base}/files",
                headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size)},
            ),
            201,
            what="@tus/server creation",
        )
        location = created.headers["location"]
        start = time.perf_counter()
        httpclient.expect(
            httpclient.request(
                "PATCH",
                location,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
                file=data,
            ),
            204,
            what="@tus/server PATCH",
        )
        seconds = time.perf_counter() - start

        return seconds, partial(httpclient.tus_terminate, location, what="@tus/server DELETE")

    return send


def _put_send(url: str, data: Path, folder: Path, status: int) -> Send:
    def send() -> tuple[float, Cleanup]:
        start = time.perf_counter()
        httpclient.expect(httpclient.request("PUT", url, file=data), status, what=f"PUT {url}")
        seconds = time.perf_counter() - start

        def remove() -> None:
            for leftover in folder.iterdir():
                leftover.unlink()

        return seconds, remove

    return send


def run(ctx: BenchContext) -> Section:
    size = ctx.big_file
    with Services(ctx.work_dir / "logs") as services:
        data = random_file(ctx.work_dir / "data.bin", size)
        sha256 = sha256_of(data)
        cluster = Cluster(ctx.work_dir / "geodrop", services)
        cluster.start(["directory", "north"])
        tus = anchors.tus_server(services, ctx.work_dir / "tus")
        raw_dir = ctx.work_dir / "raw"
        raw = anchors.upload_ceiling(services, raw_dir)
        web = anchors.nginx_server(services, ctx.work_dir / "nginx", ctx.work_dir)
        dav = nginx.dav_dir(ctx.work_dir / "nginx")
        geodrop_service = cluster.service("north")
        sides = {
            GEODROP: _measured(_geodrop_send(cluster, data, sha256), geodrop_service, size),
            TUS: _measured(_tus_send(tus.url, data), tus.service, size),
            RAW: _measured(_put_send(f"{raw.url}/upload", data, raw_dir, 201), raw.service, size),
            NGINX: _measured(
                _put_send(f"{web.url}/dav/upload.bin", data, dav, 201), web.service, size
            ),
        }
        results = alternate(ctx, "upload", sides, warmup=True)
    return _section(ctx, results, sha256_rate())


def sha256_rate() -> float:
    """GB/s of hashlib's sha256 on one core (64 MiB from memory, best of 3)."""
    block = os.urandom(4 * 1024 * 1024)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        sha = hashlib.sha256()
        for _ in range(16):
            sha.update(block)
        best = max(best, 16 * len(block) / (time.perf_counter() - start) / 1e9)
    return best


def _section(ctx: BenchContext, results: Results, sha_rate: float) -> Section:
    g = results[GEODROP]["GB/s"]
    rows = [
        [side, results[side]["GB/s"].fmt(), ratio_text(g, results[side]["GB/s"]),
         results[side]["CPU s/GiB"].fmt(3)]
        for side in SIDES
    ]  # fmt: skip
    vs_tus = ratio(g, results[TUS]["GB/s"])
    vs_raw = ratio(g, results[RAW]["GB/s"])
    ceiling_vs_tus = ratio(results[RAW]["GB/s"], results[TUS]["GB/s"])
    # geodrop checks every upload's sha256; the raw ceiling does not hash at all. If the
    # hashing cannot overlap the receiving, the best geodrop can do is the ceiling's time
    # plus the hashing time.
    raw_rate = results[RAW]["GB/s"].median
    hash_bound = 1 / (1 + raw_rate / sha_rate) if sha_rate else 0.0
    targets = [
        Target(
            "Upload: geodrop / @tus/server (both fsync)",
            shown_against(vs_tus, 3),
            "≥ 3×",
            vs_tus >= 3,
            note=""
            if vs_tus >= 3
            else f"out of reach here: even the raw ceiling is only {ceiling_vs_tus:.2f}× "
            "@tus/server in this run"
            if ceiling_vs_tus < 3
            else f"it would take {3 / ceiling_vs_tus:.2f}× the raw ceiling's rate (the "
            f"ceiling is {ceiling_vs_tus:.2f}× @tus/server in this run), and geodrop also "
            f"verifies sha256 (below)",
        ),
        Target(
            "Upload: geodrop / raw ceiling (both fsync)",
            shown_against(vs_raw, 0.7),
            "≥ 0.7×",
            vs_raw >= 0.7,
            note=""
            if vs_raw >= 0.7
            else f"geodrop also verifies sha256 ({sha_rate:.2f} GB/s on one core here): "
            f"the ceiling plus hashing in series would be {hash_bound:.2f}×; server CPU "
            f"{results[GEODROP]['CPU s/GiB'].median:.2f} s/GiB against the ceiling's "
            f"{results[RAW]['CPU s/GiB'].median:.2f}",
        ),
    ]
    bar_panels(
        ctx.plot_path("upload"),
        [
            Panel(
                "throughput (higher is better)",
                "GB/s",
                ["one request, whole file"],
                {side: [results[side]["GB/s"]] for side in SIDES},
            ),
            Panel(
                "server CPU per GiB (lower is better)",
                "CPU s / GiB",
                ["one request, whole file"],
                {side: [results[side]["CPU s/GiB"]] for side in SIDES},
            ),
        ],
        suptitle=f"Upload of {ctx.big_file_label} over loopback, {ctx.rounds} rounds",
    )
    markdown = "\n".join(
        [
            (__doc__ or "").split("\n", 2)[2].strip() + "\n",
            f"{ctx.big_file_label} file, {ctx.rounds} alternating rounds after a warm-up "
            "round; after every upload the file is deleted (tus termination for the tus "
            "servers) and the bench calls `sync` outside the timed part, so no side "
            "inherits another's dirty pages. GB/s = file size / time of the data request; "
            "CPU is the server's (all its processes) over the whole trial, creating the "
            "upload included, removing the file not. sha256 on one core of this "
            f"machine: {sha_rate:.2f} GB/s.\n",
            markdown_table(["server", "GB/s", "geodrop / this", "server CPU s/GiB"], rows),
            "![upload throughput and CPU](bench-upload.png)\n",
        ]
    )
    return Section("2. Upload", markdown, targets)
