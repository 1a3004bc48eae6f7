"""Counting the durability syscalls (fsync, fdatasync) servers make during a load."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

SYNC_CALLS: Final = ("fsync", "fdatasync")
_ROW: Final = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", re.MULTILINE)


def available() -> bool:
    return shutil.which("strace") is not None


def count_syncs(pids: Sequence[int], load: Callable[[], None]) -> int:
    """fsync + fdatasync calls made by ``pids`` (all their threads) while ``load`` runs.

    strace slows the servers down, so use it for counts, never for timings.
    """
    with tempfile.TemporaryDirectory(prefix="geodrop-bench-strace-") as folder:
        out = Path(folder) / "counts.txt"
        argv = ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYNC_CALLS), "-o", str(out)]
        for pid in pids:
            argv += ["-p", str(pid)]
        tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # attached to every thread
            load()
        finally:
            tracer.terminate()
            tracer.wait(30)
        text = out.read_text() if out.exists() else ""
    return sum(int(m.group(1)) for m in _ROW.finditer(text) if m.group(2) in SYNC_CALLS)
