"""One run: build the network, start the cluster, drive the users, tear it all down."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.simulation.cluster import Cluster, mint_tokens, write_config
from bench.simulation.model import (
    DIRECTORY_ADDRESS,
    DIRECTORY_PORT,
    Deployment,
    Group,
    PathRates,
)
from bench.simulation.netns import Topology, owner_alive

HERE: Final = Path(__file__).resolve().parent
READY_TIMEOUT_SECONDS: Final = 60.0
CONTENT_FILES: Final = 4
# /dev/shm keeps stored and received bytes off the disk: the simulation measures paths.
TMPFS: Final = Path("/dev/shm")  # noqa: S108 - per-run names (gdsim-RUN), removed after


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """One planned transfer: a user of ``sender`` sends a file to a user of ``receiver``."""

    id: int
    sender: Group
    receiver: Group
    at: float = 0.0  # open loop: seconds after the start


@dataclass(frozen=True, slots=True)
class Event:
    """Something done to the network ``at`` seconds into the run (e.g. halve a link)."""

    at: float
    action: Callable[[Topology], None]
    label: str


@dataclass
class RunResult:
    deployment: Deployment
    records: list[dict[str, Any]]
    located: dict[str, list[str]]
    # (seconds since the start, {link key: (bytes to the server, bytes to clients)})
    samples: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    # (seconds since the start, link key, new capacity in Mbit/s)
    capacity_changes: list[tuple[float, str, float]] = field(default_factory=list)
    wall_seconds: float = 0.0


def sender_user(group: Group) -> str:
    return f"s-{group.tag}"


def receiver_user(group: Group) -> str:
    return f"r-{group.tag}"


def _content_files(folder: Path, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(CONTENT_FILES):
        path = folder / f"content-{i}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    return paths


def remove_leftover_data() -> list[str]:
    """Delete the tmpfs folders of dead runs (``/dev/shm/gdsim-PID-…``)."""
    removed = []
    for path in TMPFS.glob("gdsim-*"):
        if not owner_alive(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


class _Lines(threading.Thread):
    """Reads a process's stdout lines into a queue (so the caller can wait with a timeout)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: queue.Queue[str] = queue.Queue()

    def run(self) -> None:
        for raw in self.stream:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))


def run_deployment(
    deployment: Deployment,
    rates: PathRates,
    transfers: Sequence[TransferSpec],
    *,
    size: int,
    run_id: str,
    work_dir: Path,
    deadline_seconds: float,
    concurrency: int | None = None,
    fileserver_argv: Callable[[Path, str], list[str]] | None = None,
    events: Sequence[Event] = (),
    sample_every: float | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run ``transfers`` on ``deployment`` inside a fresh simulated network.

    Args:
        concurrency: closed loop with this many transfers at a time; None: open loop,
            each transfer starting at its ``at``.
        fileserver_argv: how to start a region's file server, given the config path and
            the region (default: the real ``geodrop fileserver``).
        events: changes to the network during the run (seconds after the start).
        sample_every: if set, read every link's byte counters this often.

    The namespaces, processes and stored files are removed however the run ends.
    """
    started = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = TMPFS / f"gdsim-{os.getpid()}-{run_id}"
    topology = Topology(run_id, deployment, rates)
    cluster: Cluster | None = None
    driver: subprocess.Popen[bytes] | None = None
    try:
        topology.build()
        log(f"{deployment.key}: network built in {time.monotonic() - started:.1f} s")
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = write_config(deployment, work_dir, data_dir)
        custom = fileserver_argv
        cluster = Cluster(
            topology,
            config_path,
            work_dir / "logs",
            (lambda region: custom(config_path, region)) if custom else None,
        )
        cluster.start()
        groups = {t.sender for t in transfers} | {t.receiver for t in transfers}
        users = {sender_user(g): g.name for g in groups} | {
            receiver_user(g): g.name for g in groups
        }
        plan = {
            "directory_url": f"http://{DIRECTORY_ADDRESS}:{DIRECTORY_PORT}",
            "regions": [r.name for r in deployment.regions],
            "group_addresses": {g.name: g.address for g in deployment.groups},
            "users": users,
            "tokens": mint_tokens(config_path, sorted(users)),
            "files": _content_files(data_dir / "content", size),
            "work_dir": str(data_dir / "client"),
            "transfers": [
                {
                    "id": t.id,
                    "sender": sender_user(t.sender),
                    "sender_group": t.sender.name,
                    "receiver": receiver_user(t.receiver),
                    "receiver_group": t.receiver.name,
                    "at": t.at,
                }
                for t in transfers
            ],
            "concurrency": concurrency,
            "deadline_seconds": deadline_seconds,
            "ready_timeout": READY_TIMEOUT_SECONDS,
            "output": str(work_dir / "records.json"),
        }
        plan_path = work_dir / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        script = [sys.executable, str(HERE / "driver.py"), str(plan_path)]
        with (work_dir / "logs" / "driver.log").open("wb") as driver_log:
            driver = subprocess.Popen(
                [*topology.exec_prefix(topology.clients), *script],
                stdout=subprocess.PIPE,
                stderr=driver_log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        lines = _Lines(driver.stdout)
        lines.start()
        ready_at = _wait_ready(lines, driver, cluster, work_dir)
        log(f"{deployment.key}: ready after {time.monotonic() - started:.1f} s")
        result = RunResult(deployment, [], {})
        pending = sorted(events, key=lambda e: e.at)
        last_sample = -1e9
        hard_stop = ready_at + deadline_seconds + 30.0
        while driver.poll() is None:
            now = time.time()
            if now > hard_stop:
                log(f"{deployment.key}: driver overran its deadline; stopping it")
                driver.kill()
                break
            while pending and now - ready_at >= pending[0].at:
                event = pending.pop(0)
                event.action(topology)
                log(f"{deployment.key}: {event.label} at {now - ready_at:.1f} s")
                for link in deployment.links:
                    capacity = topology.capacity(link)
                    if capacity is not None:
                        result.capacity_changes.append((now - ready_at, link.key, capacity))
            if sample_every is not None and now - last_sample >= sample_every:
                result.samples.append((now - ready_at, topology.link_bytes()))
                last_sample = now
            time.sleep(0.05)
        driver.wait()
        if driver.returncode != 0:
            log_text = (work_dir / "logs" / "driver.log").read_text(errors="replace")
            raise RuntimeError(f"driver exited with {driver.returncode}: {log_text[-3000:]}")
        output = json.loads((work_dir / "records.json").read_text(encoding="utf-8"))
        result.records = output["records"]
        result.located = output["located"]
        result.wall_seconds = time.monotonic() - started
        return result
    finally:
        if driver is not None and driver.poll() is None:
            driver.terminate()
            try:
                driver.wait(timeout=5)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
        stopping = time.monotonic()
        if cluster is not None:
            cluster.stop()
        topology.destroy()
        shutil.rmtree(data_dir, ignore_errors=True)
        log(f"{deployment.key}: torn down in {time.monotonic() - stopping:.1f} s")


def _wait_ready(
    lines: _Lines, driver: subprocess.Popen[bytes], cluster: Cluster, work_dir: Path
) -> float:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS + 10
    while time.monotonic() < deadline:
        try:
            line = lines.lines.get(timeout=0.2)
        except queue.Empty:
            cluster.check_alive()
            if driver.poll() is not None:
                log_text = (work_dir / "logs" / "driver.log").read_text(errors="replace")
                raise RuntimeError(f"driver exited before the run: {log_text[-2000:]}") from None
            continue
        if line.startswith("READY "):
            return float(line.split()[1])
    raise RuntimeError("the cluster did not become ready")
