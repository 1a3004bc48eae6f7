"""Machine facts and the versions of every program compared."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Final

import aiohttp

NODE_DIR: Final = Path(__file__).parent / "node"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _npm_version(package: str) -> str:
    try:
        manifest = json.loads((NODE_DIR / "node_modules" / package / "package.json").read_text())
    except OSError:
        return "not installed"
    return str(manifest.get("version", "unknown"))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def cpu_times() -> tuple[int, int]:
    """All the cores' time so far and the part of it the hypervisor took (``steal``),
    in clock ticks, from ``/proc/stat``; (0, 0) where it cannot be read."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0, 0
    return cpu_times_of(fields)


def cpu_times_of(fields: list[str]) -> tuple[int, int]:
    """:func:`cpu_times` from the ``cpu`` line's fields (user, nice, system, idle,
    iowait, irq, softirq, steal, guest, guest_nice: guest time is in user already)."""
    ticks = [int(value) for value in fields[1:9]]
    if len(ticks) < 8:
        return 0, 0
    return sum(ticks), ticks[7]


def stolen_share(start: tuple[int, int], end: tuple[int, int]) -> str:
    """The share of the cores' time the hypervisor took between two :func:`cpu_times`."""
    total = end[0] - start[0]
    if total <= 0:
        return "unknown"
    return f"{(end[1] - start[1]) / total:.1%}"


def proactive_reclaim() -> str:
    """Whether the kernel pages out memory it thinks cold behind processes' backs (a
    running DAMON ``pageout`` scheme): their pages then come back through page faults."""
    kdamonds = Path("/sys/kernel/mm/damon/admin/kdamonds")
    actions = set()
    for kdamond in kdamonds.glob("[0-9]*"):
        try:
            if (kdamond / "state").read_text().strip() != "on":
                continue
        except OSError:
            continue
        for action in kdamond.glob("contexts/*/schemes/*/action"):
            try:
                actions.add(action.read_text().strip())
            except OSError:
                continue
    if "pageout" in actions:
        return "on (DAMON pageout)"
    return "off"


def facts() -> dict[str, str]:
    """Everything the report's header shows, in order."""
    nginx = _first_line(["nginx", "-v"])
    curl = _first_line(["curl", "--version"])
    aria2 = _first_line(["aria2c", "--version"])
    wrk = _first_line(["wrk", "-v"])
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{_mem_total_gib():.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "nginx": nginx.removeprefix("nginx version: "),
        "node": _first_line(["node", "--version"]),
        "@tus/server": _npm_version("@tus/server"),
        "@tus/file-store": _npm_version("@tus/file-store"),
        "curl": " ".join(curl.split()[:2]),
        "aria2c": aria2.removeprefix("aria2 version "),
        "wrk": re.sub(r"\s*\[.*$", "", wrk.split(" Copyright")[0]),
        "proactive memory reclaim": proactive_reclaim(),
    }
