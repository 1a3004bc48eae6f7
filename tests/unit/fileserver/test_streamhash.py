"""Tests of the upload hasher that moves to a thread of its own for big uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

from geodrop.fileserver.streamhash import StreamSha256


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "upload sha256"]


async def test_a_small_upload_is_hashed_inline_without_a_thread() -> None:
    chunks = [os.urandom(1000) for _ in range(10)]
    hasher = StreamSha256(inline_bytes=20_000)
    before = len(_hash_threads())
    for chunk in chunks:
        await hasher.update(chunk)
    assert len(_hash_threads()) == before
    assert await hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_a_big_upload_is_hashed_on_a_thread_in_order() -> None:
    chunks = [os.urandom(64 * 1024 + n) for n in range(64)]  # about 4 MiB, uneven sizes
    hasher = StreamSha256(inline_bytes=100_000, max_pending=256 * 1024)
    for n, chunk in enumerate(chunks):
        await hasher.update(chunk)
        if n == 5:
            assert _hash_threads(), "past inline_bytes the hashing moves to its thread"
    assert await hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    await asyncio.sleep(0.05)
    assert not _hash_threads(), "the thread ends with the digest"


async def test_waiting_bytes_stay_bounded_when_the_thread_is_slow() -> None:
    hasher = StreamSha256(inline_bytes=0, max_pending=128 * 1024)
    gate = threading.Event()
    real_update = hasher._sha.update
    most = 0

    def slow_update(data: bytes) -> None:
        gate.wait()
        real_update(data)

    hasher._sha = type("Slow", (), {"update": staticmethod(slow_update)})()
    chunk = os.urandom(32 * 1024)

    async def feed() -> None:
        nonlocal most
        for _ in range(40):
            await hasher.update(chunk)
            most = max(most, hasher._queued - hasher._hashed)

    feeding = asyncio.create_task(feed())
    await asyncio.sleep(0.2)
    assert not feeding.done(), "the receiver waits while the thread is behind"
    gate.set()
    await asyncio.wait_for(feeding, 10)
    assert most <= 128 * 1024 + len(chunk)
    hasher.close()


async def test_close_ends_the_thread_of_an_abandoned_upload() -> None:
    hasher = StreamSha256(inline_bytes=0)
    await hasher.update(os.urandom(100_000))
    assert _hash_threads()
    hasher.close()
    for _ in range(100):
        if not _hash_threads():
            break
        await asyncio.sleep(0.01)
    assert not _hash_threads()
