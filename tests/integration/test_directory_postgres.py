"""Two directory processes on one PostgreSQL database answer as one directory.

A heartbeat received by one counts in the other's region health; an inbox entry announced
to one wakes a receiver waiting on the other, long-polling or on server-sent events. The
processes are real (``python -m geodrop directory``); no file server runs: the test signs
the file servers' requests itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from geodrop.config import load_config
from geodrop.protocol.fileid import new_file_id
from support.cluster import PEER_KEY, URL_KEY, USER_KEY, free_port, user_token
from support.transfer_checks import peer_headers

pytestmark = pytest.mark.postgres

HEARTBEAT_INTERVAL: Final = 0.3
HEARTBEAT_TIMEOUT: Final = 1.5
# Well under the long-poll's wait (30 s below): the wake-up came from the notification.
PROMPTLY: Final = 3.0
GEODROP: Final = (sys.executable, "-m", "geodrop")


@dataclass(frozen=True, slots=True)
class Directory:
    url: str
    config: Path


def _write_config(root: Path, name: str, host: str, port: int, dsn: str, instances: int) -> Path:
    url = f"http://{host}:{port}"
    regions = "".join(
        f'[[regions]]\nname = "{region}"\naccess_url = "http://127.{n}.0.1:{port}"\n'
        f'listen = "127.{n}.0.1:{port}"\nfallback = []\n'
        f'storage = {{ kind = "local", path = "{region}/blobs" }}\n'
        f'metadata = {{ kind = "sqlite", path = "{region}/metadata.sqlite3" }}\n'
        f'[[regions.links]]\nname = "any"\ncarrier = "any"\n'
        f'url = "http://127.{n}.1.1:{port}"\nlisten = "127.{n}.1.1:{port}"\n'
        for region, n in (("north", 1), ("south", 3))
    )
    path = root / f"{name}.toml"
    path.write_text(
        f"heartbeat_interval_seconds = {HEARTBEAT_INTERVAL}\n"
        f'[directory]\nurl = "{url}"\nlisten = "{host}:{port}"\n'
        f"heartbeat_timeout_seconds = {HEARTBEAT_TIMEOUT}\ninstances = {instances}\n"
        f'metadata = {{ kind = "postgres", dsn = "{dsn}", pool_size = 4 }}\n'
        f'[keys]\nuser_token = "{USER_KEY}"\npeer = "{PEER_KEY}"\nurl_signing = "{URL_KEY}"\n'
        '[geo]\ndefault_region = "north"\ndefault_carrier = "any"\n' + regions
    )
    load_config(path)  # a mistake here should fail here, not as a process that never starts
    return path


def _healthy(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url + "/healthz", timeout=1) as answer,  # noqa: S310 - loopback
    ):
        return bool(answer.status == 200)
    return False


@contextlib.contextmanager
def _directories(
    root: Path, directories: list[Directory]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Each directory process running (listening, and answering /healthz) while the block runs."""
    processes: list[subprocess.Popen[bytes]] = []
    logs = [root / f"directory-{i}.log" for i in range(len(directories))]
    try:
        for directory, log in zip(directories, logs, strict=True):
            with log.open("ab") as out:
                processes.append(
                    subprocess.Popen(
                        [*GEODROP, "--config", str(directory.config), "directory"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=root,
                    )
                )
        for directory, process, log in zip(directories, processes, logs, strict=True):
            deadline = time.monotonic() + 20
            # Its own "ready" line: with a shared address, another process may answer.
            while "directory ready" not in log.read_text() or not _healthy(directory.url):
                assert process.poll() is None, f"directory exited: {log.read_text()}"
                assert time.monotonic() < deadline, f"directory never answered: {log.read_text()}"
                time.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def two_directories(tmp_path: Path, postgres_dsn: str) -> Iterator[list[Directory]]:
    """Two directory processes sharing one database, on two addresses of their own."""
    hosts = ("127.0.0.1", "127.0.0.2")
    port = free_port(list(hosts))
    directories = [
        Directory(
            f"http://{host}:{port}", _write_config(tmp_path, f"d{i}", host, port, postgres_dsn, 2)
        )
        for i, host in enumerate(hosts)
    ]
    with _directories(tmp_path, directories):
        yield directories


async def _peer_post(
    session: aiohttp.ClientSession, url: str, path: str, body: dict[str, Any]
) -> aiohttp.ClientResponse:
    raw = json.dumps(body).encode()
    return await session.post(url + path, data=raw, headers=peer_headers(path, raw, "region:north"))


def _announcement(receiver: str) -> dict[str, Any]:
    return {
        "receiver": receiver,
        "sender": "alice",
        "file_id": str(new_file_id("north")),
        "region": "north",
        "filename": "note.txt",
        "size": 5,
        "sha256": "ab" * 32,
    }


async def _region(session: aiohttp.ClientSession, url: str, name: str) -> dict[str, Any]:
    answer = await session.get(url + "/v1/regions")
    assert answer.status == 200
    regions = {entry["region"]: entry for entry in (await answer.json())["regions"]}
    entry: dict[str, Any] = regions[name]
    return entry


async def test_a_heartbeat_to_one_directory_counts_in_the_other(
    two_directories: list[Directory],
) -> None:
    first, second = two_directories
    links = [{"name": "any", "carrier": "any", "load": 0.25}]
    async with aiohttp.ClientSession() as session:
        assert (await _region(session, second.url, "north"))["heartbeats"] == 0
        beat = await _peer_post(
            session, first.url, "/v1/peer/heartbeat", {"region": "north", "links": links}
        )
        assert beat.status == 200, await beat.text()
        started = time.monotonic()
        while (seen := await _region(session, second.url, "north"))["heartbeats"] != 1:
            assert time.monotonic() - started < PROMPTLY, seen
            await asyncio.sleep(0.05)
        assert seen["links"] == links
        assert seen["alive"]
        assert (await _region(session, second.url, "south"))["heartbeats"] == 0
        # Once every presumption has run out, only the beats both share keep a region alive.
        await asyncio.sleep(HEARTBEAT_TIMEOUT)
        for _ in range(3):
            beat = await _peer_post(
                session, second.url, "/v1/peer/heartbeat", {"region": "north", "links": links}
            )
            assert beat.status == 200
            await asyncio.sleep(HEARTBEAT_INTERVAL)
        for directory in (first, second):
            north = await _region(session, directory.url, "north")
            south = await _region(session, directory.url, "south")
            assert (north["alive"], north["heartbeats"]) == (True, 4), directory
            assert not south["alive"], directory


async def test_an_entry_announced_to_one_directory_wakes_a_long_poll_on_the_other(
    two_directories: list[Directory],
) -> None:
    first, second = two_directories
    receiver = "dave-pg"
    auth = {"Authorization": f"Bearer {user_token(receiver)}"}
    async with aiohttp.ClientSession() as session:
        waiting = asyncio.create_task(
            session.get(second.url + "/v1/inbox", params={"wait": "30"}, headers=auth)
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        entry = _announcement(receiver)
        announced = await _peer_post(session, first.url, "/v1/peer/inbox", entry)
        assert announced.status == 201, await announced.text()
        started = time.monotonic()
        answer = await asyncio.wait_for(waiting, PROMPTLY)
        assert time.monotonic() - started < PROMPTLY
        body = await answer.json()
        assert [e["file_id"] for e in body["entries"]] == [entry["file_id"]]


async def test_an_entry_announced_to_one_directory_reaches_events_on_the_other(
    two_directories: list[Directory],
) -> None:
    first, second = two_directories
    receiver = "erin-pg"
    auth = {"Authorization": f"Bearer {user_token(receiver)}"}
    async with aiohttp.ClientSession() as session:
        stream = await session.get(second.url + "/v1/inbox/events", headers=auth)
        assert stream.status == 200
        entry = _announcement(receiver)
        announced = await _peer_post(session, first.url, "/v1/peer/inbox", entry)
        assert announced.status == 201
        data = await asyncio.wait_for(_next_data(stream), PROMPTLY)
        assert data["file_id"] == entry["file_id"]
        stream.close()


async def _next_data(stream: aiohttp.ClientResponse) -> dict[str, Any]:
    async for raw in stream.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError("event stream ended")


async def test_directory_processes_share_one_address(tmp_path: Path, postgres_dsn: str) -> None:
    port = free_port(["127.0.0.1"])
    config = _write_config(tmp_path, "shared", "127.0.0.1", port, postgres_dsn, 2)
    url = f"http://127.0.0.1:{port}"
    # Without SO_REUSEPORT the second process could not bind the address at all.
    with _directories(tmp_path, [Directory(url, config), Directory(url, config)]) as processes:
        assert all(process.poll() is None for process in processes)
        processes[0].send_signal(signal.SIGTERM)
        processes[0].wait(10)
        # The other one goes on serving the address alone.
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                answer = await session.get(url + "/healthz")
                assert answer.status == 200
                answer.release()
