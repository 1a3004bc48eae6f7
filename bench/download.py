"""1. Download: geodrop's signed link URL vs nginx (sendfile) vs Python ``socket.sendfile``.

The same stored file (geodrop's own copy on disk, page cache warm) is served by all
three. Clients: curl (one process per stream, body to /dev/null) and aria2c (one process;
with 8 streams it splits the file into 8 ranged connections; it writes to /dev/shm).
CPU is the server's own over the trial (its control group: bench/cpuaccount.py). The kernel's
count of TCP data segments sent (``TCPOrigDataSent``, all of loopback: the client's
requests are a handful) gives the bytes each segment carried.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from bench import anchors
from bench.context import BenchContext, GiB
from bench.datafiles import random_file, sha256_of
from bench.measure import (
    Results,
    Samples,
    alternate,
    ratio,
    ratio_text,
    round_ratios,
    shown_against,
)
from bench.plots import Panel, bar_panels
from bench.procs import Service, Services
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster

STREAMS: Final = (1, 8)
CLIENTS: Final = ("curl", "aria2c")
SIDES: Final = ("geodrop", "nginx", "Python sendfile")
# nginx measured a second time in the same rounds (not in the quick set): how far the
# same server's median strays from itself, the noise a throughput target's verdict has.
NGINX_AGAIN: Final = "nginx, again"
CLIENT_TIMEOUT: Final = 600.0
# A client this busy (its share of the cores it can use) was the bottleneck.
CLIENT_BOUND_SHARE: Final = 0.85
# Over a client-bound configuration's rounds of geodrop and nginx, a correlation this
# strong between a round's server CPU per GiB and its throughput: the two download
# targets trade against each other there (_trade_note).
TRADE_CORRELATION: Final = 0.7


def _spread(geodrop: Samples, nginx: Samples) -> str:
    """The per-round ratios of a missed target: how far noise reaches."""
    per_round = round_ratios(geodrop, nginx).values
    return f"per-round ratios {min(per_round):.2f}–{max(per_round):.2f}×"


def _client_cores(client: str, streams: int) -> int:
    """The cores a client can keep busy: curl runs a process per stream, aria2c one
    process for all of them, and each process moves its bytes on one thread."""
    processes = streams if client == "curl" else 1
    return min(processes, os.cpu_count() or 1)


def _same_server_note(results: Results) -> str:
    """The nginx/nginx ratio of a missed throughput target's rounds (empty when quick)."""
    if NGINX_AGAIN not in results:
        return ""
    again = ratio(results[NGINX_AGAIN]["GB/s"], results["nginx"]["GB/s"])
    return f"; nginx, measured a second time in the same rounds, read {again:.2f}× itself"


def _client_bound(client: str, streams: int, geodrop_busy: Samples, nginx_busy: Samples) -> bool:
    """Whether the client was the bottleneck with both servers."""
    cores = _client_cores(client, streams)
    return min(geodrop_busy.median, nginx_busy.median) >= CLIENT_BOUND_SHARE * cores


def _client_bound_note(
    client: str,
    streams: int,
    busy: tuple[Samples, Samples],
    client_cpu: tuple[Samples, Samples],
) -> str:
    """Why a server cannot move a client faster, when the client was the bottleneck with
    both servers (``busy``: its cores busy with geodrop and with nginx): empty otherwise.

    Such a client's throughput is its cores busy over its CPU per GiB; the note gives
    both, with each server (``client_cpu``, the same order).
    """
    geodrop_busy, nginx_busy = busy
    if not _client_bound(client, streams, geodrop_busy, nginx_busy):
        return ""
    cores = _client_cores(client, streams)
    of = "its one core" if cores == 1 else f"the {cores} cores its processes can use"
    return (
        f"{client} itself was the bottleneck with both servers: it kept "
        f"{geodrop_busy.median:.2f} of {of} busy receiving from geodrop, "
        f"{nginx_busy.median:.2f} from nginx, and spent {client_cpu[0].median:.3f} s of "
        f"CPU per GiB taking geodrop's bytes, {client_cpu[1].median:.3f} nginx's; "
    )


def _uncorked_note(python: Samples, nginx: Samples, python_cpu: Samples, nginx_cpu: Samples) -> str:
    """What the plain Python server's uncorked sends bought and cost, when they moved the
    client faster: they do more of the client's TCP work in the server (see below)."""
    if ratio(python, nginx) < 1.1 or ratio(python_cpu, nginx_cpu) <= 1.2:
        return ""
    return (
        f"; plain Python socket.sendfile, uncorked, reached {ratio(python, nginx):.2f}× "
        "nginx by taking more of the client's TCP work into the server, at "
        f"{ratio(python_cpu, nginx_cpu):.2f}× nginx's server CPU per GiB (the CPU target "
        "allows 1.2×)"
    )


def _trade_note(client: str, results: Results) -> str:
    """How a client-bound configuration's throughput followed the server's CPU per GiB
    over the rounds of geodrop and nginx, when it did: empty otherwise.

    Over loopback the server that does more of the client's TCP work in its own context
    (see the clients' table) leaves the client more of its core for taking bytes: then a
    server buys throughput with CPU, and the two targets trade against each other.
    """
    servers = [side for side in ("geodrop", "nginx", NGINX_AGAIN) if side in results]
    cpu = [v for side in servers for v in results[side]["CPU s/GiB"].values]
    throughput = [v for side in servers for v in results[side]["GB/s"].values]
    try:
        correlation = statistics.correlation(cpu, throughput)
        slope = statistics.linear_regression(cpu, throughput).slope
    except statistics.StatisticsError:  # fewer than two rounds, or a constant figure
        return ""
    if correlation < TRADE_CORRELATION:
        return ""
    return (
        f"; the two targets trade against each other here: over the {len(cpu)} rounds of "
        f"geodrop and nginx a round's throughput rose with the CPU per GiB its server "
        f"spent (r = {correlation:.2f}, {slope / 10:+.2f} GB/s per 0.1 s/GiB), the server "
        f"doing more of {client}'s TCP work in its own context"
    )


def _clients_cpu() -> float:
    """CPU seconds of the bench's finished child processes: the clients (the servers are
    children too, but still running, so not counted)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _data_segments() -> int:
    """TCP data segments the kernel has sent so far, retransmissions aside."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(counters["TCPOrigDataSent"])
    raise RuntimeError("/proc/net/netstat has no TcpExt counters")


def _segment_note(geodrop: Samples, nginx: Samples) -> str:
    """Why a client that takes its bytes slowly gets them slower from geodrop, if so."""
    if geodrop.median >= 0.9 * nginx.median:
        return ""
    return (
        f"; geodrop's TCP segments carried {geodrop.median:.1f} KiB each to nginx's "
        f"{nginx.median:.1f} (see below)"
    )


def _curl(url: str, streams: int, size: int) -> int:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
    argv += ["--max-time", str(int(CLIENT_TIMEOUT)), url]
    clients = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(streams)]
    total = 0
    for client in clients:
        out, _ = client.communicate(timeout=CLIENT_TIMEOUT)
        code, got = out.split()
        if client.returncode != 0 or code != "200" or int(got) != size:
            raise RuntimeError(f"curl {url}: exit {client.returncode}, {out}")
        total += int(got)
    return total


def _aria2c(url: str, streams: int, size: int) -> int:
    folder = Path(tempfile.mkdtemp(prefix="geodrop-bench-", dir="/dev/shm"))
    try:
        argv = [
            "aria2c", "-q", f"--dir={folder}", "--out=file", f"--split={streams}",
            f"--max-connection-per-server={streams}", "--min-split-size=1M",
            "--file-allocation=none", "--allow-overwrite=true", "--max-tries=1",
            "--timeout=60", "--connect-timeout=5", "--summary-interval=0", url,
        ]  # fmt: skip
        subprocess.run(argv, check=True, timeout=CLIENT_TIMEOUT)
        got = (folder / "file").stat().st_size
        if got != size:
            raise RuntimeError(f"aria2c {url}: {got} bytes, not {size}")
        return got
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _trial(
    client: str, streams: int, url: str, size: int, server: Service
) -> Callable[[], Mapping[str, float]]:
    fetch = _curl if client == "curl" else _aria2c

    def trial() -> Mapping[str, float]:
        server.check_alive()
        cpu = server.cpu_seconds()
        client_cpu = _clients_cpu()
        segments = _data_segments()
        start = time.perf_counter()
        moved = fetch(url, streams, size)
        wall = time.perf_counter() - start
        used = server.cpu_seconds() - cpu
        client_used = _clients_cpu() - client_cpu
        sent = max(1, _data_segments() - segments)
        return {
            "GB/s": moved / wall / 1e9,
            "CPU s/GiB": used / (moved / GiB),
            "client CPU s/GiB": client_used / (moved / GiB),
            "client cores busy": client_used / wall,
            "KiB/segment": moved / sent / 1024,
        }

    return trial


def run(ctx: BenchContext) -> Section:
    size = ctx.big_file
    results: dict[tuple[str, int], Results] = {}
    with Services(ctx.work_dir / "logs") as services:
        data = random_file(ctx.work_dir / "data.bin", size)
        cluster = Cluster(ctx.work_dir / "geodrop", services)
        cluster.start(["directory", "north"])
        file_id, _, _ = cluster.upload(data, sha256=sha256_of(data))
        data.unlink()
        stored = cluster.stored_file(file_id)
        urls = {
            "geodrop": cluster.download_url(file_id),
        }
        nginx = anchors.nginx_server(services, ctx.work_dir / "nginx", stored.parent)
        raw = anchors.sendfile_server(services, stored)
        urls["nginx"] = f"{nginx.url}/files/{stored.name}"
        urls["Python sendfile"] = f"{raw.url}/file"
        servers = {
            "geodrop": cluster.service("north"),
            "nginx": nginx.service,
            "Python sendfile": raw.service,
        }
        for client in CLIENTS:
            for streams in STREAMS:
                sides = {
                    side: _trial(client, streams, urls[side], size, servers[side]) for side in SIDES
                }
                if not ctx.quick:
                    sides[NGINX_AGAIN] = sides["nginx"]
                results[client, streams] = alternate(
                    ctx, f"download {client} ×{streams}", sides, warmup=not ctx.quick
                )
    return _section(ctx, results)


def _config_label(client: str, streams: int) -> str:
    return f"{client}, {streams} stream{'s' if streams > 1 else ''}"


def _section(ctx: BenchContext, results: dict[tuple[str, int], Results]) -> Section:
    rows, cpu_rows, client_rows, segment_rows, targets = [], [], [], [], []
    for (client, streams), res in results.items():
        label = _config_label(client, streams)
        g, n, p = (res[s]["GB/s"] for s in SIDES)
        gc, nc, pc = (res[s]["CPU s/GiB"] for s in SIDES)
        gs, ns, ps = (res[s]["KiB/segment"] for s in SIDES)
        gk, nk, pk = (res[s]["client CPU s/GiB"] for s in SIDES)
        gb, nb, pb = (res[s]["client cores busy"] for s in SIDES)
        client_rows.append(
            [label, gk.fmt(3), nk.fmt(3), pk.fmt(3), gb.fmt(2), nb.fmt(2), pb.fmt(2)]
        )
        both = (
            f"; server and client together {gc.median + gk.median:.3f} s/GiB to nginx's "
            f"{nc.median + nk.median:.3f}"
        )
        row = [label, g.fmt(), n.fmt(), p.fmt(), ratio_text(g, n), ratio_text(p, n)]
        if NGINX_AGAIN in res:
            row.append(ratio_text(res[NGINX_AGAIN]["GB/s"], n))
        rows.append(row)
        cpu_rows.append([label, gc.fmt(3), nc.fmt(3), pc.fmt(3), ratio_text(gc, nc)])
        segment_rows.append([label, gs.fmt(1), ns.fmt(1), ps.fmt(1)])
        segments = _segment_note(gs, ns)
        trade = _trade_note(client, res) if _client_bound(client, streams, gb, nb) else ""
        targets.append(
            Target(
                f"Download, {label}: geodrop / nginx throughput",
                shown_against(ratio(g, n), 1.0),
                "≥ 1.0×",
                ratio(g, n) >= 1.0,
                note=""
                if ratio(g, n) >= 1.0
                else _client_bound_note(client, streams, (gb, nb), (gk, nk))
                + (
                    f"plain Python socket.sendfile reached {ratio(p, n):.2f}× nginx here too"
                    if ratio(p, n) < 1.0
                    else _spread(g, n)
                )
                + segments
                + _uncorked_note(p, n, pc, nc)
                + _same_server_note(res)
                + trade,
            )
        )
        targets.append(
            Target(
                f"Download, {label}: geodrop / nginx CPU per GiB",
                shown_against(ratio(gc, nc), 1.2),
                "≤ 1.2×",
                ratio(gc, nc) <= 1.2,
                note=""
                if ratio(gc, nc) <= 1.2
                else "plain Python socket.sendfile (a thread per stream) used "
                f"{ratio(pc, nc):.2f}× nginx's CPU per GiB here too" + segments + both + trade
                if ratio(pc, nc) > 1.2
                else _spread(gc, nc) + segments + both + trade,
            )
        )
    groups = [_config_label(c, s) for c, s in results]
    plot = ctx.plot_path("download")
    bar_panels(
        plot,
        [
            Panel(
                "throughput (higher is better)",
                "GB/s",
                groups,
                {s: [results[k][s]["GB/s"] for k in results] for s in SIDES},
            ),
            Panel(
                "server CPU per GiB (lower is better)",
                "CPU s / GiB",
                groups,
                {s: [results[k][s]["CPU s/GiB"] for k in results] for s in SIDES},
            ),
        ],
        suptitle=f"Download of {ctx.big_file_label} over loopback, {ctx.rounds} rounds",
    )
    markdown = "\n".join(
        [
            f"{ctx.big_file_label} file, page cache warm, {ctx.rounds} alternating rounds"
            + ("" if ctx.quick else " after a warm-up round")
            + ". geodrop serves its signed link URL (`GET /blobs/ID?u&exp&sig`, "
            "the full handler: signature, metadata look-up, Range/ETag rules, "
            "received-by bookkeeping); nginx 1.22 (`sendfile on`, 2 workers) and a "
            "thread-per-connection Python `socket.sendfile` server serve the very same "
            "file. curl: one process per stream, body to /dev/null; aria2c: one process, "
            "with 8 streams it splits the file into 8 ranged connections and writes to "
            "/dev/shm. GB/s = bytes moved / wall time of the client(s).\n",
            "Throughput, GB/s, median (min–max); ratios are of medians, with the range "
            "of per-round ratios:\n",
            markdown_table(
                ["client", *SIDES, "geodrop / nginx", "sendfile / nginx"]
                + ([] if ctx.quick else ["nginx again / nginx"]),
                rows,
            ),
            ""
            if ctx.quick
            else "nginx again / nginx: the same nginx measured a second time in each "
            "round, after the three sides above: the ratio two measurements of one "
            "server gave in this run, the noise any throughput ratio here carries.\n",
            "Server CPU seconds per GiB sent (all of the server's processes and threads; "
            "how they are counted is in the machine table):\n",
            markdown_table(["client", *SIDES, "geodrop / nginx"], cpu_rows),
            "The clients' CPU seconds per GiB received (curl or aria2c processes, from "
            "`getrusage`). Over loopback the receiving side's TCP work runs partly in "
            "the sender's context (the kernel delivers a segment to the receiving "
            "socket while the sender's call is still in the kernel, unless the receiver "
            "holds the socket at that moment), so a server's CPU per GiB also depends "
            "on how its sends and the client's reads interleave; the sum of the two "
            "compares the work each server's way of sending causes in all. Cores busy: "
            "the client's CPU seconds over the trial's wall time; curl moves a stream's "
            "bytes on one thread of its own process, aria2c all of its streams on one "
            "thread, so a client near its cores' count (one core for aria2c and for one "
            "curl stream) could take its bytes no faster, whichever server sent them:\n",
            markdown_table(
                [
                    "client",
                    *(f"{side} CPU s/GiB" for side in SIDES),
                    *(f"{side} cores busy" for side in SIDES),
                ],
                client_rows,
            ),
            "KiB of the file per TCP data segment (the kernel's `TCPOrigDataSent` over "
            "the trial). Over loopback a connection's segments are capped at half the "
            "largest receive window its client has offered, and an uncorked sendfile "
            "sends whatever room the last window update made: the plain Python server "
            "sends about half-window segments. nginx here has `tcp_nopush on` (TCP_CORK "
            "while sendfile sends) and geodrop corks its bodies the same way, so both "
            "send full segments; fewer segments for the same bytes cost both sides less "
            "CPU:\n",
            markdown_table(["client", *SIDES], segment_rows),
            "![download throughput and CPU](bench-download.png)\n",
        ]
    )
    return Section("1. Download", markdown, targets)
