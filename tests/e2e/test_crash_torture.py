"""Crash torture: north's file server is killed (SIGKILL) at random moments during 50 uploads.

DESIGN.md §7: nothing half-written is ever visible as a file; nothing acknowledged is
ever lost; a crash at any byte leaves an upload resumable. Kills land mid-PATCH, during
the final commit (every byte sent, no answer yet) and right after the final 204; after
each, north restarts and:

- the upload is never served partially: a download is refused (409) until it is whole;
- tus HEAD reports at least what was acknowledged and at most what was sent, and the
  upload resumes from there and completes;
- every acknowledged upload downloads with its sha256;

and at the end every inbox entry of the receiver downloads, with the right bytes.
The schedule comes from a seeded generator whose seed is printed; so are the counts
of kills by the phase they landed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from support.cluster import Cluster, client_address, user_token
from support.e2e_flows import MIB, TUS_RESUMABLE, patch_headers, seeded_random
from support.http import session_from
from support.region_state import (
    UNTHROTTLED,
    file_path,
    metadata_rows,
    set_limits,
    storage_root,
    upload_path,
)
from support.transfer_checks import signed_blob_url, unique_user

pytestmark = pytest.mark.e2e

UPLOADS: Final = 50
KILLS_PER_PHASE: Final = 8
BODY_CHUNK: Final = 256 * 1024
BUDGET_SECONDS: Final = 110.0


class Phase(enum.Enum):
    """When a kill is aimed (and, afterwards, where it landed)."""

    NONE = "no kill"
    MID_PATCH = "mid-PATCH"
    COMMIT = "during commit"
    AFTER_204 = "after 204"


class Killed(Exception):
    """Raised by a request body once north has been killed under it."""


@dataclass
class Upload:
    data: bytes
    sha256: str
    aim: Phase
    file_id: str = ""
    url: str = ""
    link: str = ""
    acknowledged: int = 0  # the highest Upload-Offset north answered 204 with
    sent: int = 0  # bytes handed to the connection so far


@dataclass
class Report:
    landed: Counter[Phase] = field(default_factory=Counter)
    # Where, on north's disk and in its metadata, "during commit" kills left the upload.
    commit_states: Counter[str] = field(default_factory=Counter)
    refused_partial: int = 0


@pytest.fixture
def torture_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    set_limits(cluster, **UNTHROTTLED)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def _schedule(rng: random.Random) -> list[Upload]:
    aims = [Phase.MID_PATCH, Phase.COMMIT, Phase.AFTER_204] * KILLS_PER_PHASE
    aims += [Phase.NONE] * (UPLOADS - len(aims))
    rng.shuffle(aims)
    uploads = []
    for aim in aims:
        data = rng.randbytes(rng.randrange(MIB, 8 * MIB))
        uploads.append(Upload(data, hashlib.sha256(data).hexdigest(), aim))
    return uploads


async def _body(upload: Upload, start: int, stop: int) -> AsyncIterator[bytes]:
    view = memoryview(upload.data)
    for position in range(start, stop, BODY_CHUNK):
        chunk = bytes(view[position : min(stop, position + BODY_CHUNK)])
        upload.sent = position + len(chunk)
        yield chunk


async def _patch(
    session: aiohttp.ClientSession,
    upload: Upload,
    start: int,
    body: AsyncIterator[bytes],
    stop: int,
) -> int:
    """PATCH ``[start, stop)``; returns the acknowledged offset."""
    headers = patch_headers(start, stop - start)
    async with session.patch(upload.url, data=body, headers=headers) as answer:
        text = await answer.text()
        assert answer.status == 204, f"PATCH at {start}: {answer.status} {text}"
        offset = int(answer.headers["Upload-Offset"])
    assert offset == stop
    upload.acknowledged = offset
    return offset


async def _received(session: aiohttp.ClientSession, cluster: Cluster, link: str) -> int:
    async with session.get(cluster.access_url("north") + "/v1/status") as answer:
        status = await answer.json()
    return next(int(r["bytes_received"]) for r in status["links"] if r["name"] == link)


async def _kill_north(cluster: Cluster) -> None:
    await asyncio.to_thread(cluster.stop, "north", signal.SIGKILL)


async def _send_with_kill(
    cluster: Cluster, alice: aiohttp.ClientSession, upload: Upload, rng: random.Random
) -> bool:
    """Send the whole upload in 1-3 PATCHes, killing north as aimed; True if it was killed."""
    size = len(upload.data)
    cuts = sorted(rng.sample(range(1, size), rng.randrange(0, 3)))
    spans = list(zip([0, *cuts], [*cuts, size], strict=True))
    victim = rng.randrange(len(spans))  # the PATCH a mid-PATCH kill lands in
    for index, (start, stop) in enumerate(spans):
        last = index == len(spans) - 1
        if upload.aim is Phase.MID_PATCH and index == victim:
            kill_at = rng.randrange(start + 1, stop) if stop - start > 1 else start

            async def killing_body(
                start: int = start, kill_at: int = kill_at
            ) -> AsyncIterator[bytes]:
                async for chunk in _body(upload, start, kill_at):
                    yield chunk
                await _kill_north(cluster)
                raise Killed(f"north killed after byte {kill_at}")

            with pytest.raises(aiohttp.ClientError):
                await _patch(alice, upload, start, killing_body(), stop)
            return True
        if upload.aim is Phase.COMMIT and last:
            # Every byte sent; north is killed as soon as it has written them all, while it
            # verifies and commits the file, before its answer is read.
            async with session_from(client_address("north", "mobile")) as watcher:
                before = await _received(watcher, cluster, upload.link)
                sending = asyncio.create_task(
                    _patch(alice, upload, start, _body(upload, start, stop), stop)
                )
                target = before + stop - start
                while (
                    not sending.done() and await _received(watcher, cluster, upload.link) < target
                ):
                    pass
            await _kill_north(cluster)
            with contextlib.suppress(aiohttp.ClientError):
                await sending  # no answer, unless north answered 204 before it died
            return True
        await _patch(alice, upload, start, _body(upload, start, stop), stop)
    if upload.aim is Phase.AFTER_204:
        await _kill_north(cluster)
        return True
    return False


def _commit_state(cluster: Cluster, upload: Upload) -> str:
    """Where north's disk and metadata stood when a kill hit an upload with all bytes sent."""
    area = upload_path(cluster, "north", upload.file_id)
    if area.exists():
        held = area.stat().st_size
        return "bytes whole, not committed" if held == len(upload.data) else f"{held} bytes"
    if not file_path(cluster, "north", upload.file_id).exists():
        return "no file at all"
    [row] = metadata_rows(cluster, "north", "transfers", upload.file_id)
    return "committed, not recorded" if row["state"] == "uploading" else "recorded, not answered"


async def _sha256_of(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    sha = hashlib.sha256()
    async with session.get(url) as answer:
        if answer.status != 200:
            await answer.read()
            return answer.status, ""
        async for data in answer.content.iter_chunked(MIB):
            sha.update(data)
    return 200, sha.hexdigest()


async def _download(cluster: Cluster, receiver: str, upload: Upload) -> tuple[int, str]:
    """Negotiate as ``receiver`` and download; (status, sha256) of whichever answered."""
    async with session_from(client_address("north", "unicom"), user_token(receiver)) as bob:
        async with bob.post(
            cluster.access_url("north") + "/v1/downloads", json={"file_id": upload.file_id}
        ) as offer:
            if offer.status != 200:
                await offer.read()
                return offer.status, ""
            url = (await offer.json())["url"]
        return await _sha256_of(bob, url)


async def _never_partial(cluster: Cluster, receiver: str, upload: Upload, report: Report) -> None:
    """Before anything resumes it: the upload is refused whole, or served whole."""
    status, sha = await _download(cluster, receiver, upload)
    assert status in (200, 409), status
    if status == 200:
        assert sha == upload.sha256, "a download served other bytes than the upload's"
    else:
        report.refused_partial += 1
    async with aiohttp.ClientSession() as session:
        direct, sha = await _sha256_of(session, signed_blob_url(cluster, upload.file_id, receiver))
    assert (direct, sha) in ((200, upload.sha256), (409, "")), (direct, status)


async def _resume(alice: aiohttp.ClientSession, upload: Upload) -> int:
    """HEAD, then send the rest; returns the offset HEAD reported."""
    async with alice.head(upload.url, headers=TUS_RESUMABLE) as answer:
        assert answer.status == 200, answer.status
        offset = int(answer.headers["Upload-Offset"])
    assert upload.acknowledged <= offset <= upload.sent, (upload.acknowledged, offset, upload.sent)
    if offset < len(upload.data):
        await _patch(
            alice, upload, offset, _body(upload, offset, len(upload.data)), len(upload.data)
        )
    return offset


async def _inbox(cluster: Cluster, receiver: str) -> list[dict[str, Any]]:
    url = cluster.directory_url + "/v1/inbox"
    async with (
        session_from(client_address("south", "unicom"), user_token(receiver)) as session,
        session.get(url) as answer,
    ):
        assert answer.status == 200, await answer.text()
        entries: list[dict[str, Any]] = (await answer.json())["entries"]
    return entries


async def test_crash_torture(torture_cluster: Cluster) -> None:
    cluster = torture_cluster
    started = time.monotonic()
    rng = seeded_random()
    uploads = _schedule(rng)
    receiver = unique_user("bob")
    report = Report()
    north = cluster.access_url("north")

    for number, upload in enumerate(uploads):
        async with session_from(client_address("north", "telecom"), user_token("alice")) as alice:
            async with alice.post(
                north + "/v1/uploads",
                json={
                    "name": f"torture-{number}.bin",
                    "size": len(upload.data),
                    "sha256": upload.sha256,
                    "receivers": [receiver],
                },
            ) as answer:
                assert answer.status == 201, await answer.text()
                negotiated = await answer.json()
            upload.file_id, upload.url = negotiated["file_id"], negotiated["upload_url"]
            upload.link = negotiated["link"]

            if not await _send_with_kill(cluster, alice, upload, rng):
                report.landed[Phase.NONE] += 1
                continue
            if upload.acknowledged == len(upload.data):
                landed = Phase.AFTER_204
            elif upload.sent == len(upload.data) and upload.aim is Phase.COMMIT:
                landed = Phase.COMMIT
                report.commit_states[await asyncio.to_thread(_commit_state, cluster, upload)] += 1
            else:
                landed = Phase.MID_PATCH
            await asyncio.to_thread(cluster.start, "north")

            await _never_partial(cluster, receiver, upload, report)
            offset = await _resume(alice, upload)
            if landed is Phase.COMMIT and offset < len(upload.data):
                landed = Phase.MID_PATCH  # not every byte had reached storage after all
            report.landed[landed] += 1
        status, sha = await _download(cluster, receiver, upload)
        assert (status, sha) == (200, upload.sha256), f"upload {number} ({upload.aim.value})"

    kills = {phase.value: report.landed[phase] for phase in Phase if phase is not Phase.NONE}
    print(f"kills by phase: {kills}; uploads never killed: {report.landed[Phase.NONE]}")
    print(f"during-commit kills left north at: {dict(report.commit_states)}")
    print(f"downloads refused (409) before resuming: {report.refused_partial}")

    # Every upload, acknowledged or resumed, is whole; and so is every inbox entry.
    expected = {upload.file_id: upload for upload in uploads}
    deadline = time.monotonic() + 20
    while {entry["file_id"] for entry in await _inbox(cluster, receiver)} != set(expected):
        assert time.monotonic() < deadline, "not every upload reached the inbox"
        await asyncio.sleep(0.1)
    for entry in await _inbox(cluster, receiver):
        upload = expected[entry["file_id"]]
        assert (entry["size"], entry["sha256"]) == (len(upload.data), upload.sha256)
        assert await _download(cluster, receiver, upload) == (200, upload.sha256)
    # Nothing half-written left behind: no upload areas, and only whole files.
    root = storage_root(cluster, "north")
    assert await asyncio.to_thread(lambda: list((root / "uploads").iterdir())) == []
    for upload in uploads:
        stored = file_path(cluster, "north", upload.file_id)
        assert (await asyncio.to_thread(stored.stat)).st_size == len(upload.data)

    assert all(report.landed[phase] for phase in Phase), kills
    assert time.monotonic() - started < BUDGET_SECONDS
