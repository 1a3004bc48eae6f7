"""5. Memory: peak RSS of every geodrop process while moving 1 and 8 big files at once.

A fresh cluster (directory, north, south). For each concurrency N: every process's peak
RSS is reset (`echo 5 > /proc/PID/clear_refs`), N clients upload a big file each to
north at once (one tus PATCH per file, by `bench/httpclient.py`), then N clients
download one of them at once (curl, via south's access unit: a cross-region
negotiation, the bytes from north's link), and `VmHWM` is read from `/proc/PID/status`.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from bench.context import BenchContext
from bench.datafiles import random_file, sha256_of
from bench.measure import Samples
from bench.plots import Panel, bar_panels
from bench.procs import Service, Services, reset_peak_rss, status_kib
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster

CONCURRENCY: Final = (1, 8)
PROCESSES: Final = ("directory", "north", "south")
GOAL_MIB: Final = 100.0


def _peaks(services: dict[str, Service]) -> dict[str, float]:
    return {name: status_kib(s.pid, "VmHWM") / 1024 for name, s in services.items()}


def _move(cluster: Cluster, n: int, data: Path, sha: str) -> None:
    with ThreadPoolExecutor(n) as pool:
        sent = list(
            pool.map(lambda i: cluster.upload(data, sha256=sha, sender=f"mover{i}"), range(n))
        )
    file_ids = [file_id for file_id, _, _ in sent]
    urls = [cluster.download_url(f, user="bob", region="south", carrier="unicom") for f in file_ids]
    size = data.stat().st_size
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
    clients = [
        subprocess.Popen([*argv, "--max-time", "600", url], stdout=subprocess.PIPE, text=True)
        for url in urls
    ]
    for client in clients:
        out, _ = client.communicate(timeout=700)
        if out.split() != ["200", str(size)]:
            raise RuntimeError(f"download failed: {out}")
    for _, upload_url, _ in sent:
        cluster.delete_upload(upload_url)


def run(ctx: BenchContext) -> Section:
    measured: dict[int, dict[str, float]] = {}
    with Services(ctx.work_dir / "logs") as services:
        cluster = Cluster(ctx.work_dir / "geodrop", services)
        cluster.start(list(PROCESSES))
        procs = {name: cluster.service(name) for name in PROCESSES}
        idle = {name: status_kib(s.pid, "VmRSS") / 1024 for name, s in procs.items()}
        data = random_file(ctx.work_dir / "data.bin", ctx.big_file)
        sha = sha256_of(data)
        reset_ok = True
        for n in CONCURRENCY:
            for s in procs.values():
                reset_ok = reset_peak_rss(s.pid) and reset_ok
            ctx.log(f"memory: moving {n} × {ctx.big_file_label}")
            _move(cluster, n, data, sha)
            measured[n] = _peaks(procs)
            ctx.log(f"memory: {n} transfers: peak RSS MiB {measured[n]}")
    return _section(ctx, idle, measured, reset_ok)


def _section(
    ctx: BenchContext, idle: dict[str, float], measured: dict[int, dict[str, float]], reset_ok: bool
) -> Section:
    rows = [
        [name, f"{idle[name]:.1f}", *(f"{measured[n][name]:.1f}" for n in CONCURRENCY)]
        for name in PROCESSES
    ]
    worst = max(measured[max(CONCURRENCY)].values())
    worst_name = max(measured[max(CONCURRENCY)], key=lambda k: measured[max(CONCURRENCY)][k])
    targets = [
        Target(
            f"Peak RSS per process while moving {max(CONCURRENCY)} × {ctx.big_file_label}",
            f"{worst:.1f} MiB ({worst_name})",
            f"≤ {GOAL_MIB:g} MiB",
            worst <= GOAL_MIB,
        )
    ]
    bar_panels(
        ctx.plot_path("memory"),
        [
            Panel(
                "peak RSS per process",
                "MiB",
                list(PROCESSES),
                {
                    "idle (RSS)": [Samples((idle[p],)) for p in PROCESSES],
                    **{
                        f"{n} × {ctx.big_file_label} (VmHWM)": [
                            Samples((measured[n][p],)) for p in PROCESSES
                        ]
                        for n in CONCURRENCY
                    },
                },
                goal=GOAL_MIB,
                goal_label="target",
            )
        ],
    )
    note = (
        ""
        if reset_ok
        else "\nThe kernel refused to reset peak RSS: each figure is the peak since the "
        "process started (an upper bound).\n"
    )
    markdown = "\n".join(
        [
            (__doc__ or "").split("\n", 2)[2].strip() + "\n",
            markdown_table(
                [
                    "process",
                    "idle RSS MiB",
                    *(f"peak, {n} × {ctx.big_file_label} MiB" for n in CONCURRENCY),
                ],
                rows,
            ),
            note,
            "![memory](bench-memory.png)\n",
        ]
    )
    return Section("5. Memory", markdown, targets)
