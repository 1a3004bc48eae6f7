"""The client's upload bodies close their file however they end, a cancellation included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from geodrop.client import _tus

CONTENT = bytes(range(256)) * (3 * _tus.CHUNK // 256)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


async def test_a_body_read_to_its_end_gives_the_bytes_asked_for(data: Path) -> None:
    reached: list[int] = []
    body = _tus._file_body(data, 100, 5, 2 * _tus.CHUNK, reached.append)
    got = b"".join([chunk async for chunk in body])
    assert got == CONTENT[105 : 100 + 2 * _tus.CHUNK]
    assert reached[-1] == 2 * _tus.CHUNK


async def test_a_body_closed_by_a_cancelled_request_closes_its_file(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []
    real_open = Path.open

    def recording_open(self: Path, *args: object, **kwargs: object) -> object:
        file = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        opened.append(file)
        return file

    monkeypatch.setattr(Path, "open", recording_open)
    body = _tus._file_body(data, 0, 0, 3 * _tus.CHUNK, lambda done: None)
    assert isinstance(body, AsyncGenerator)
    await anext(body)
    # As aiohttp does with the body of a request its task was cancelled in: the body is
    # closed by a task that is itself cancelled as soon as it waits for anything.
    closing = asyncio.create_task(body.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with_cancellation = await asyncio.gather(closing, return_exceptions=True)
    assert len(opened) == 1
    assert opened[0].closed, with_cancellation
