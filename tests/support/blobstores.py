"""Driving a BlobStore in tests: write in sessions, commit, read back."""

from __future__ import annotations

import hashlib
import random

from geodrop.storage.base import BlobStore, StoredBlob

MIB = 1024 * 1024


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Reproducible incompressible bytes."""
    return random.Random(seed).randbytes(size)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def write(store: BlobStore, upload_id: str, offset: int, *chunks: bytes) -> int:
    """Append ``chunks`` in one writer session; the writer's offset at its end."""
    async with store.open_writer(upload_id, offset) as writer:
        for chunk in chunks:
            await writer.write(chunk)
        return writer.offset


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into chunks of ``size`` bytes (as a request body arrives)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


async def read_all(blob: StoredBlob, start: int = 0, stop: int | None = None) -> bytes:
    end = blob.size if stop is None else stop
    return b"".join([chunk async for chunk in blob.chunks(start, end)])


async def file_bytes(store: BlobStore, file_id: str) -> bytes:
    """Everything a committed file holds."""
    blob = await store.open_file(file_id)
    try:
        return await read_all(blob)
    finally:
        await blob.close()


async def committed(store: BlobStore, data: bytes, upload_id: str) -> None:
    """Upload ``data`` in one session and commit it."""
    await store.create_upload(upload_id)
    await write(store, upload_id, 0, *pieces(data, MIB))
    await store.commit(upload_id)
