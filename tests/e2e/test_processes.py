"""The ``geodrop`` processes: a whole cluster from one command, clean stops, bad configs refused."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import REGIONS, Cluster

pytestmark = pytest.mark.e2e

STOP_SECONDS = 15


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            # Fields after the command name, which may itself hold spaces and parentheses.
            state, ppid = text[text.rindex(")") + 2 :].split()[:2]
            if int(ppid) == pid and state != "Z":
                children.append(int(stat.parent.name))
    return children


def _live(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def running_geodrop(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) geodrop process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"geodrop" in command and _live(pid)


def processes_of(cluster: Cluster) -> list[int]:
    """Live processes started with this cluster's configuration file (unique to the test)."""
    config = os.fsencode(cluster.config_path)
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            if config in cmdline.read_bytes().split(b"\0") and _live(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
    return found


def answers(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback only
    ):
        return bool(response.status == 200)
    return False


@contextlib.contextmanager
def cluster_command(cluster: Cluster, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``geodrop cluster`` running; whatever is left of it is killed on the way out."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            cluster.command("cluster"), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in processes_of(cluster):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cluster_command_starts_and_stops_everything(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    cluster = Cluster(tmp_path)  # the configuration only; the command starts the processes
    health = [cluster.directory_url + "/healthz"]
    health += [cluster.access_url(name) + "/healthz" for name, _, _ in REGIONS]
    log = tmp_path / "cluster.log"
    with cluster_command(cluster, log) as process:
        deadline = time.monotonic() + 30
        waiting = list(health)
        while waiting:
            assert process.poll() is None, f"geodrop cluster exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no answer from {waiting}: {log.read_text()}"
            waiting = [url for url in waiting if not answers(url)]
            time.sleep(0.1)

        children = children_of(process.pid)
        assert len(children) == 1 + len(REGIONS), children
        assert all(running_geodrop(pid) for pid in children)
        assert sorted(processes_of(cluster)) == sorted([process.pid, *children])

        stopped = time.monotonic()
        process.send_signal(stop_signal)
        assert process.wait(STOP_SECONDS) == 0, log.read_text()
        while any(running_geodrop(pid) for pid in children) or processes_of(cluster):
            assert time.monotonic() - stopped < STOP_SECONDS, (
                f"geodrop processes outlived the stop: {processes_of(cluster)}"
            )
            time.sleep(0.05)
        assert not any(answers(url) for url in health)

    output = log.read_text()
    assert "Traceback" not in output, output
    assert "killing it" not in output, output  # every child stopped within its grace time


def test_each_role_exits_zero_on_sigterm(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start("directory")
        cluster.start("north")
        started = time.monotonic()
        assert cluster.stop("north") == 0, cluster.log("north")
        assert cluster.stop("directory") == 0, cluster.log("directory")
        assert time.monotonic() - started < STOP_SECONDS
    finally:
        cluster.stop_all()


@pytest.mark.parametrize(
    "role",
    [["directory"], ["fileserver", "--region", "north"], ["cluster"]],
    ids=["directory", "fileserver", "cluster"],
)
def test_bad_config_exits_naming_the_key(tmp_path: Path, role: list[str]) -> None:
    cluster = Cluster(tmp_path)
    text = cluster.config_path.read_text()
    regions = text.index("[[regions]]")
    cluster.config_path.write_text(
        text[:regions]
        + text[regions:].replace('carrier = "telecom"', 'carrier = "carrierpigeon"', 1)
    )
    result = subprocess.run(
        cluster.command(*role), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert "regions[0].links[0].carrier" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
