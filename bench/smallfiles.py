"""4. Small files: 4 KiB end to end across two regions, vs @tus/server's two requests.

The load generator is `bench/smallclient.py` (one Python aiohttp process, the same for
both sides; its docstring lists the requests). Transactions/s = completed transactions /
the load's duration, with a fixed number of concurrent workers.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from bench import anchors, smallclient, syscalls
from bench.context import BenchContext
from bench.measure import Results, alternate, ratio, ratio_text, shown_against
from bench.plots import Panel, bar_panels
from bench.procs import Service, Services
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster, token
from geodrop.testbed import client_address

WORKERS: Final = 8
GEODROP: Final = "geodrop, 5 requests, 2 regions"
TUS: Final = "@tus/server, 2 requests"
SIDES: Final = (GEODROP, TUS)
REPO: Final = Path(__file__).resolve().parent.parent
SYNC_COUNT_SECONDS: Final = 1.5


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _client(spec: Path, seconds: float) -> dict[str, float]:
    """Run the load generator on ``spec``; its JSON summary."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.smallclient", str(spec)],
        capture_output=True,
        text=True,
        timeout=seconds + 90,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"small-file client failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def _trial(spec: Path, servers: list[Service], seconds: float) -> Callable[[], Mapping[str, float]]:
    def trial() -> Mapping[str, float]:
        for server in servers:
            server.check_alive()
        server_cpu = sum(s.cpu_seconds() for s in servers)
        client_cpu = _children_cpu()
        result = _client(spec, seconds)
        tx = result["transactions"]
        return {
            "tx/s": tx / result["seconds"],
            "p50 ms": result["p50_ms"],
            "server CPU ms/tx": (sum(s.cpu_seconds() for s in servers) - server_cpu) * 1000 / tx,
            "client CPU ms/tx": (_children_cpu() - client_cpu) * 1000 / tx,
        }

    return trial


def _syncs_per_transaction(spec: dict[str, Any], work: Path, servers: list[Service]) -> float:
    """fsync + fdatasync calls per transaction, from a short 2-worker load under strace."""
    small = {**spec, "seconds": SYNC_COUNT_SECONDS, "workers": spec["workers"][:2]}
    path = work / f"syncs-{spec['kind']}.json"
    path.write_text(json.dumps(small))
    done: list[float] = []
    calls = syscalls.count_syncs(
        [pid for s in servers for pid in s.pids()],
        lambda: done.append(_client(path, SYNC_COUNT_SECONDS)["transactions"]),
    )
    # The client runs one untimed warm-up transaction per worker before its load.
    return calls / (done[0] + len(small["workers"]))


def _geodrop_spec(cluster: Cluster, seconds: float) -> dict[str, Any]:
    workers = [
        {
            "sender_ip": client_address("north", "telecom", 10 + i),
            "receiver_ip": client_address("south", "unicom", 10 + i),
            "sender_token": token(f"sender{i}"),
            "receiver": f"receiver{i}",
            "receiver_token": token(f"receiver{i}"),
        }
        for i in range(WORKERS)
    ]
    return {
        "kind": "geodrop",
        "directory": cluster.directory_url,
        "receiver_access": cluster.access_url("south"),
        "seconds": seconds,
        "workers": workers,
    }


def run(ctx: BenchContext) -> Section:
    seconds = ctx.load_seconds
    with Services(ctx.work_dir / "logs") as services:
        cluster = Cluster(ctx.work_dir / "geodrop", services)
        cluster.start(["directory", "north", "south"])
        tus = anchors.tus_server(services, ctx.work_dir / "tus")
        geodrop_spec = ctx.work_dir / "geodrop.json"
        geodrop_spec.write_text(json.dumps(_geodrop_spec(cluster, seconds)))
        tus_spec = ctx.work_dir / "tus.json"
        tus_spec.write_text(
            json.dumps(
                {
                    "kind": "tus",
                    "tus": tus.url,
                    "seconds": seconds,
                    "workers": [
                        {"sender_ip": client_address("north", "telecom", 10 + i)}
                        for i in range(WORKERS)
                    ],
                }
            )
        )
        geodrop_servers = [cluster.service(n) for n in ("directory", "north", "south")]
        sides = {
            GEODROP: _trial(geodrop_spec, geodrop_servers, seconds),
            TUS: _trial(tus_spec, [tus.service], seconds),
        }
        results = alternate(ctx, "small files", sides)
        syncs: dict[str, float] = {}
        if syscalls.available():
            ctx.log("small files: counting fsyncs per transaction (strace)")
            syncs[GEODROP] = _syncs_per_transaction(
                json.loads(geodrop_spec.read_text()), ctx.work_dir, geodrop_servers
            )
            syncs[TUS] = _syncs_per_transaction(
                json.loads(tus_spec.read_text()), ctx.work_dir, [tus.service]
            )
    return _section(ctx, results, syncs)


def _why_slower(results: Results, syncs: dict[str, float]) -> str:
    """What the report says beside a missed target: the CPU each side's flow costs."""

    def cpu(side: str) -> float:
        return results[side]["server CPU ms/tx"].median + results[side]["client CPU ms/tx"].median

    note = (
        f"geodrop's 5 requests and 2 server-to-server ones cost {cpu(GEODROP):.2f} ms of CPU "
        f"per transaction, servers and load generator together, @tus/server's 2 requests "
        f"{cpu(TUS):.2f} ms: {cpu(GEODROP) / cpu(TUS):.1f}x, on 2 cores that both sides share "
        "with their load generator"
    )
    if syncs:
        note += f"; fsync/fdatasync calls per transaction {syncs[GEODROP]:.1f} to {syncs[TUS]:.1f}"
    return note


def _section(ctx: BenchContext, results: Results, syncs: dict[str, float]) -> Section:
    g, t = results[GEODROP]["tx/s"], results[TUS]["tx/s"]
    rows = [
        [
            side,
            results[side]["tx/s"].fmt(0),
            results[side]["p50 ms"].fmt(1),
            results[side]["server CPU ms/tx"].fmt(2),
            results[side]["client CPU ms/tx"].fmt(2),
            f"{syncs[side]:.1f}" if side in syncs else "not counted",
        ]
        for side in SIDES
    ]
    value = ratio(g, t)
    targets = [
        Target(
            "Small files: geodrop's 5-request flow / @tus/server's 2 requests (tx/s)",
            shown_against(value, 0.5),
            "≥ 0.5×",
            value >= 0.5,
            note="" if value >= 0.5 else _why_slower(results, syncs),
        )
    ]
    bar_panels(
        ctx.plot_path("smallfiles"),
        [
            Panel(
                "transactions per second (higher is better)",
                "tx/s",
                ["4 KiB, upload + download"],
                {side: [results[side]["tx/s"]] for side in SIDES},
            ),
            Panel(
                "CPU per transaction (lower is better)",
                "ms",
                ["servers", "client"],
                {
                    side: [results[side]["server CPU ms/tx"], results[side]["client CPU ms/tx"]]
                    for side in SIDES
                },
            ),
        ],
        suptitle=f"Small files, {WORKERS} concurrent workers, {ctx.load_seconds:g} s per run",
    )
    markdown = "\n".join(
        [
            (__doc__ or "").split("\n", 2)[2].strip() + "\n",
            (smallclient.__doc__ or "").split("\n", 2)[2].strip() + "\n",
            f"{WORKERS} workers, {ctx.rounds} alternating rounds of {ctx.load_seconds:g} s. "
            "@tus/server fsyncs each finished upload (as for the upload comparison); geodrop "
            "makes each upload durable (fsync of data and folders, SQLite with "
            "`synchronous=FULL`) and records, announces and delivers it to an inbox. Server "
            "CPU is the sum over the servers' process trees (geodrop: directory, north, "
            "south); client CPU is the load generator's. fsyncs / tx: fsync + fdatasync "
            "calls of the servers per transaction, counted with strace in a separate short "
            "2-worker load (strace slows servers down: counts only, no timings).\n",
            f"geodrop / @tus/server: **{ratio_text(g, t)}**\n",
            markdown_table(
                [
                    "flow",
                    "tx/s",
                    "p50 ms / tx",
                    "server CPU ms / tx",
                    "client CPU ms / tx",
                    "fsyncs / tx",
                ],
                rows,
            ),
            "![small files](bench-smallfiles.png)\n",
        ]
    )
    return Section("4. Small files", markdown, targets)
