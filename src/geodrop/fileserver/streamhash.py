"""The sha256 of an upload's bytes, hashed on a worker thread while the next ones arrive.

Hashing a big upload on the event loop puts the hash (≈ 0.5 CPU s per GiB here) in
series with receiving and writing. :class:`StreamSha256` hashes the first
``inline_bytes`` on the event loop (a small upload never pays for a thread), then hands
the chunks, in order and without copying them, to a thread of its own. ``hashlib``
releases the GIL while it hashes, so the thread runs beside the event loop on another
core. At most ``max_pending`` bytes wait for the thread; past that the receiver waits,
so a slow hash bounds memory instead of growing it. bench/upload.py measures it.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from typing import Final

INLINE_BYTES: Final = 8 * 1024 * 1024
MAX_PENDING: Final = 8 * 1024 * 1024


class StreamSha256:
    """sha256 of chunks given in order; :meth:`close` when abandoned, else :meth:`hexdigest`."""

    def __init__(self, inline_bytes: int = INLINE_BYTES, max_pending: int = MAX_PENDING) -> None:
        self._sha = hashlib.sha256()
        self._inline_left = inline_bytes
        self._max_pending = max_pending
        self._chunks: queue.SimpleQueue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        # Bytes handed to the thread, and bytes it has hashed: each written by one side
        # only, so no lock (a lock taken per chunk by both sides cost ~10% here).
        self._queued = 0
        self._hashed = 0
        self._drained = threading.Event()

    async def update(self, chunk: bytes) -> None:
        if self._chunks is None:
            if len(chunk) <= self._inline_left:
                self._inline_left -= len(chunk)
                self._sha.update(chunk)
                return
            self._start()
        assert self._chunks is not None
        self._queued += len(chunk)
        self._chunks.put(chunk)
        if self._queued - self._hashed > self._max_pending:
            self._drained.clear()
            # Checked again after the clear: the thread may have caught up in between.
            if self._queued - self._hashed > self._max_pending:
                await asyncio.to_thread(self._drained.wait)

    async def hexdigest(self) -> str:
        """The digest of every chunk given (waits for the thread to hash the last ones)."""
        if self._thread is not None:
            self._stop()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        return self._sha.hexdigest()

    def close(self) -> None:
        """Stop the thread without waiting for it (the digest is not wanted)."""
        if self._thread is not None:
            self._stop()
            self._thread = None

    def _start(self) -> None:
        self._chunks = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._hash_chunks, name="upload sha256", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        assert self._chunks is not None
        self._chunks.put(None)

    def _hash_chunks(self) -> None:
        assert self._chunks is not None
        while (chunk := self._chunks.get()) is not None:
            self._sha.update(chunk)
            self._hashed += len(chunk)
            if self._queued - self._hashed <= self._max_pending // 2 and not self._drained.is_set():
                self._drained.set()
        self._drained.set()
