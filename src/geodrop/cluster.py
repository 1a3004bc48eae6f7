"""Supervising a whole cluster on one machine: the directory and every region's file server."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Final

from geodrop.config import ClusterConfig

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS: Final = 10.0


def role_commands(config: ClusterConfig, config_path: Path) -> list[tuple[str, list[str]]]:
    """The command line of each process of the cluster, by name.

    A directory with ``instances = N`` and a region with ``access_units = N`` get N
    processes each; they share their addresses (SO_REUSEPORT) and their state (PostgreSQL).
    """
    base = [sys.executable, "-m", "geodrop", "--config", str(config_path)]
    commands = [
        (_numbered("directory", i), [*base, "directory"]) for i in range(config.directory.instances)
    ]
    commands += [
        (_numbered(f"fileserver {r.name}", i), [*base, "fileserver", "--region", r.name])
        for r in config.regions
        for i in range(r.access_units)
    ]
    return commands


def _numbered(name: str, index: int) -> str:
    return name if index == 0 else f"{name}#{index + 1}"


def run_cluster(config: ClusterConfig, config_path: Path) -> int:
    """Start every process; stop them all on SIGINT/SIGTERM or when one of them dies.

    Returns:
        0 after a requested stop, 1 if a process died on its own.
    """
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, command in role_commands(config, config_path):
        # Each child gets its own process group so Ctrl-C reaches it only through us.
        processes.append((name, subprocess.Popen(command, start_new_session=True)))
        logger.info("started %s (pid %d)", name, processes[-1][1].pid)
    status = 0
    while not stopping:
        for name, process in processes:
            if process.poll() is not None:
                logger.error(
                    "%s exited with status %d; stopping the cluster", name, process.returncode
                )
                stopping, status = True, 1
        time.sleep(0.2)
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in time; killing it", name)
            process.kill()
            process.wait()
    logger.info("cluster stopped")
    return status
