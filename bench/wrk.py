"""Driving wrk (Debian's) and reading its report."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

THREADS: Final = 2
_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_LATENCY: Final = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx answers plus socket errors


def lua_post(path: Path, body: Any, headers: Mapping[str, str]) -> Path:
    """A wrk script sending ``body`` as JSON with ``headers`` on every request."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(json.dumps(body))}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(url: str, *, connections: int, seconds: float, script: Path | None = None) -> WrkResult:
    """One bounded wrk run (``--latency``, ``seconds`` long, 5 s request timeout)."""
    if not url.startswith("http://127."):
        raise ValueError(f"the bench only loads loopback addresses, not {url}")
    argv = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    done = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    return parse(done.stdout)


def parse(out: str) -> WrkResult:
    latency = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _LATENCY.finditer(out)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None or set(latency) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's report:\n{out}")
    bad = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        bad += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        bad += sum(int(x) for x in m.groups())
    return WrkResult(float(rps.group(1)), latency["50"], latency["99"], int(total.group(1)), bad)
