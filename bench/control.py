"""3. Control plane: locate and the negotiations under wrk, vs bare aiohttp and nginx JSON.

wrk (2 threads, 64 connections, keep-alive, a bounded duration) against each endpoint in
turn. The clients come from 127.0.0.1, which the bench cluster's override table places in
north / telecom, so every answer is a real one:

- locate: `GET /v1/locate` at the directory.
- upload negotiation: `POST /v1/uploads` at north's access unit (each request creates
  an upload: a metadata row, committed durably, and an empty upload file).
- download negotiation, local: `POST /v1/downloads` at north for a file north holds.
- download negotiation, cross-region: the same at east's access unit, which asks north
  for the address over the signed server-to-server channel and relays it.
- directory /healthz: the directory's constant answer, behind the same layers every
  geodrop request passes (access log, CORS, error mapping, per-IP rate limit): what
  those layers cost, apart from any endpoint's own work.
- bare aiohttp: one handler returning a fixed JSON body of locate's shape.
- nginx: `return 200` of the same JSON body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from bench import anchors, wrk
from bench.context import BenchContext
from bench.datafiles import random_file, sha256_of
from bench.measure import Results, alternate, ratio, ratio_text, shown_against
from bench.plots import Panel, bar_panels
from bench.procs import Service, Services
from bench.report import Section, Target, markdown_table
from bench.testbed import Cluster, token

CONNECTIONS: Final = 64
LOCATE: Final = "locate"
UPLOAD: Final = "upload negotiation"
LOCAL: Final = "download negotiation, local"
CROSS: Final = "download negotiation, cross-region"
HEALTH: Final = "directory /healthz (no work)"
BARE: Final = "bare aiohttp JSON"
NGINX: Final = "nginx static JSON"
SIDES: Final = (LOCATE, UPLOAD, LOCAL, CROSS, HEALTH, BARE, NGINX)
P99_GOAL_MS: Final = 5.0
SHORT_LABELS: Final = (
    "locate",
    "upload\nneg.",
    "download\nneg. local",
    "download\nneg. cross",
    "directory\n/healthz",
    "bare\naiohttp",
    "nginx",
)


def _trial(
    url: str, seconds: float, script: Path | None, servers: Sequence[Service]
) -> Callable[[], Mapping[str, float]]:
    """One wrk run; ``servers``: the processes whose CPU the endpoint's answers cost."""

    def trial() -> Mapping[str, float]:
        cpu_before = sum(s.cpu_seconds() for s in servers)
        result = wrk.run(url, connections=CONNECTIONS, seconds=seconds, script=script)
        cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
        return {
            "req/s": result.requests_per_second,
            "p50 ms": result.p50_ms,
            "p99 ms": result.p99_ms,
            "errors": float(result.bad),
            "cpu us/req": cpu * 1e6 / result.requests if result.requests else 0.0,
        }

    return trial


def run(ctx: BenchContext) -> Section:
    seconds = ctx.load_seconds
    with Services(ctx.work_dir / "logs") as services:
        cluster = Cluster(ctx.work_dir / "geodrop", services)
        cluster.start(["directory", "north", "east"])
        small = random_file(ctx.work_dir / "small.bin", 4096)
        file_id, _, _ = cluster.upload(small, sha256=sha256_of(small), receivers=["bob"])
        bare = anchors.bare_json(services)
        web = anchors.nginx_server(services, ctx.work_dir / "nginx", ctx.work_dir)
        scripts = ctx.work_dir / "wrk"
        scripts.mkdir()
        upload_lua = wrk.lua_post(
            scripts / "upload.lua",
            {"name": "w.bin", "size": 4096, "receivers": ["bob"]},
            {"Authorization": f"Bearer {token('alice', 7 * 86400)}"},
        )
        download_lua = wrk.lua_post(
            scripts / "download.lua",
            {"file_id": file_id},
            {"Authorization": f"Bearer {token('bob', 7 * 86400)}"},
        )
        directory, north, east = (cluster.service(n) for n in ("directory", "north", "east"))
        sides = {
            LOCATE: _trial(cluster.directory_url + "/v1/locate", seconds, None, [directory]),
            UPLOAD: _trial(
                cluster.access_url("north") + "/v1/uploads", seconds, upload_lua, [north]
            ),
            LOCAL: _trial(
                cluster.access_url("north") + "/v1/downloads", seconds, download_lua, [north]
            ),
            # east relays north's answer: both servers work for each request.
            CROSS: _trial(
                cluster.access_url("east") + "/v1/downloads", seconds, download_lua, [east, north]
            ),
            HEALTH: _trial(cluster.directory_url + "/healthz", seconds, None, [directory]),
            BARE: _trial(bare.url + "/json", seconds, None, [bare.service]),
            NGINX: _trial(web.url + "/json", seconds, None, [web.service]),
        }
        results = alternate(ctx, "control plane", sides)
    return _section(ctx, results)


def _section(ctx: BenchContext, results: Results) -> Section:
    bare = results[BARE]["req/s"]
    rows = []
    for side in SIDES:
        r = results[side]
        errors = int(sum(r["errors"].values))
        rows.append(
            [
                side,
                r["req/s"].fmt(0),
                ratio_text(r["req/s"], bare),
                r["p50 ms"].fmt(2),
                r["p99 ms"].fmt(2),
                r["cpu us/req"].fmt(0),
                str(errors),
            ]
        )
    locate_ratio = ratio(results[LOCATE]["req/s"], bare)
    bare_cpu = results[BARE]["cpu us/req"].median
    health_ratio = ratio(results[HEALTH]["req/s"], bare)
    targets = [
        Target(
            "Control plane: locate / bare aiohttp (req/s)",
            shown_against(locate_ratio, 0.8),
            "≥ 0.8×",
            locate_ratio >= 0.8,
            note=(
                ""
                if locate_ratio >= 0.8
                else f"locate cost the directory {results[LOCATE]['cpu us/req'].median:.0f} µs "
                f"of CPU per request, the bare handler {bare_cpu:.0f}; the directory's "
                f"/healthz, which does no work behind the same access log, CORS, error and "
                f"rate-limit layers, reached {health_ratio:.2f}× the bare handler at "
                f"{results[HEALTH]['cpu us/req'].median:.0f} µs: see below"
            ),
        )
    ]
    anchors_p99 = (
        f"; at the same 64 connections the bare aiohttp handler's p99 was "
        f"{results[BARE]['p99 ms'].median:.2f} ms and nginx's "
        f"{results[NGINX]['p99 ms'].median:.2f} ms"
    )
    # Little's law for a closed loop: mean latency = connections / throughput.
    needed = CONNECTIONS / P99_GOAL_MS * 1000
    for side in (LOCATE, UPLOAD, LOCAL, CROSS):
        p99 = results[side]["p99 ms"].median
        errors = int(sum(results[side]["errors"].values))
        passed = p99 <= P99_GOAL_MS and errors == 0
        note = f"{errors} error answers" if errors else ""
        if not passed and not errors:
            cpu = results[side]["cpu us/req"].median
            note = (
                f"{CONNECTIONS} closed-loop connections wait ≤ {P99_GOAL_MS:g} ms only at "
                f"≥ {needed:,.0f} req/s; this endpoint cost {cpu:.0f} µs of server CPU per "
                f"request (≤ {1e6 / cpu:,.0f} req/s from a whole core), the bare handler "
                f"{bare_cpu:.0f} µs{anchors_p99}"
                if cpu > 0
                else ""
            )
        targets.append(
            Target(
                f"Control plane: {side} p99 at {CONNECTIONS} connections",
                f"{p99:.2f} ms",
                f"≤ {P99_GOAL_MS:g} ms",
                passed,
                note=note,
            )
        )
    bar_panels(
        ctx.plot_path("control"),
        [
            Panel(
                "requests per second (higher is better; log scale)",
                "req/s",
                SHORT_LABELS,
                {"": [results[s]["req/s"] for s in SIDES]},
                log=True,
            ),
            Panel(
                "p99 latency (lower is better; log scale)",
                "ms",
                SHORT_LABELS,
                {"": [results[s]["p99 ms"] for s in SIDES]},
                goal=P99_GOAL_MS,
                goal_label="target",
                log=True,
            ),
        ],
        suptitle=f"Control plane, wrk, {CONNECTIONS} connections, {ctx.load_seconds:g} s "
        f"per run, {ctx.rounds} rounds",
    )
    markdown = "\n".join(
        [
            (__doc__ or "").split("\n", 2)[2].strip() + "\n",
            f"{ctx.rounds} alternating rounds of {ctx.load_seconds:g} s per endpoint. "
            "Latencies are wrk's `--latency` percentiles; the error column counts non-2xx "
            "answers and socket errors over all rounds (it must be 0: the bench cluster's "
            "rate limits and quotas are set far above this load). Server CPU per request "
            "is the CPU time of the answering processes over the run (cross-region: "
            "east and north together; nginx: its workers) over the requests answered; wrk "
            "runs on the same two cores.\n",
            markdown_table(
                [
                    "endpoint",
                    "req/s",
                    "/ bare aiohttp",
                    "p50 ms",
                    "p99 ms",
                    "server CPU µs / request",
                    "errors",
                ],
                rows,
            ),
            "![control plane](bench-control.png)\n",
        ]
    )
    return Section("3. Control plane", markdown, targets)
