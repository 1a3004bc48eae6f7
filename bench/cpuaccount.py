"""CPU time of one server, to the microsecond, from a control group of its own.

``/proc/PID/stat`` counts CPU in clock ticks (10 ms at USER_HZ 100): a server that spends
0.06 s on a 1 GiB download reads as 0.05, 0.06 or 0.07, so two servers' ratio moves by a
sixth either way from the tick alone, and a child that exits between two readings takes
its time with it. A control group counts every process and thread ever in it, to the
microsecond: cgroup v2's ``cpu.stat`` (``usage_usec``, present without any controller
enabled, so also on a hybrid host's ``/sys/fs/cgroup/unified``) or, without cgroup v2,
v1's ``cpuacct.usage`` (ns).

Processes forked after the server's tree moves in are counted too (nginx re-spawning a
worker). Where no hierarchy can be written (not root, no cgroup file system),
:func:`cpu_account` returns ``None`` and the caller falls back to ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# The bench's groups, one per server, created below the hierarchy's root.
PREFIX: Final = "geodrop-bench-"


@dataclass(frozen=True)
class _Hierarchy:
    root: Path
    usage_file: str
    usage_unit_seconds: float

    def usage(self, group: Path) -> float:
        text = (group / self.usage_file).read_text()
        if self.usage_file == "cpu.stat":
            fields = dict(line.split() for line in text.splitlines() if line.strip())
            return int(fields["usage_usec"]) * self.usage_unit_seconds
        return int(text) * self.usage_unit_seconds


def _hierarchies() -> list[_Hierarchy]:
    """The writable CPU-accounting hierarchies mounted here, cgroup v2 first."""
    found: list[_Hierarchy] = []
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in mounts:
        parts = line.split()
        if len(parts) < 4:
            continue
        where, kind, options = Path(parts[1]), parts[2], parts[3].split(",")
        if kind == "cgroup2":
            found.insert(0, _Hierarchy(where, "cpu.stat", 1e-6))
        elif kind == "cgroup" and "cpuacct" in options:
            found.append(_Hierarchy(where, "cpuacct.usage", 1e-9))
    return [h for h in found if os.access(h.root, os.W_OK)]


def method() -> str:
    """How this machine's servers' CPU is counted, for the report."""
    hierarchies = _hierarchies()
    if not hierarchies:
        return "/proc/PID/stat utime + stime of each server's process tree (10 ms clock ticks)"
    first = hierarchies[0]
    if first.usage_file == "cpu.stat":
        return "a control group per server: cgroup v2 cpu.stat usage_usec (µs)"
    return "a control group per server: cgroup v1 cpuacct.usage (ns)"


@dataclass(frozen=True)
class CpuAccount:
    """A control group holding one server's processes."""

    hierarchy: _Hierarchy
    group: Path

    def seconds(self) -> float:
        """CPU seconds used by everything that has been in the group."""
        return self.hierarchy.usage(self.group)

    def remove(self, wait: float = 5.0) -> None:
        """Remove the group once its processes are gone: a killed one may take a
        moment to leave it. Left in place (empty groups cost nothing) if one stays."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.group.rmdir()
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.05)
            else:
                return


def cpu_account(name: str, pids: Sequence[int]) -> CpuAccount | None:
    """Move ``pids`` (a server's process tree) into a new group; ``None`` where no
    hierarchy takes them."""
    for hierarchy in _hierarchies():
        group = hierarchy.root / f"{PREFIX}{os.getpid()}-{name}"
        try:
            group.mkdir(exist_ok=True)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    (group / "cgroup.procs").write_text(str(pid))
            account = CpuAccount(hierarchy, group)
            account.seconds()
        except (OSError, KeyError, ValueError):
            with contextlib.suppress(OSError):
                group.rmdir()
            continue
        return account
    return None
