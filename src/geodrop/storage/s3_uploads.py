"""Uploads into S3: the state object of an upload, and the writer that streams parts.

An upload is an S3 multipart upload into ``{prefix}files/{id}`` plus one small *state
object*, ``{prefix}uploads/{id}/state``: a JSON line (the multipart upload's id and the
parts recorded so far) followed by the *tail*, the bytes received after the last
recorded part (less than one part). A PUT replaces the state object atomically, so
the upload's offset, the sum of the recorded parts plus the tail, is always
consistent, whichever process wrote last and however it ended. A part that was sent
but never recorded is simply sent again later under the same number, replacing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from geodrop.config import MAX_S3_PARTS
from geodrop.errors import Conflict, NotFound, PayloadTooLarge
from geodrop.storage.base import UploadWriter
from geodrop.storage.s3_objects import S3Objects

if TYPE_CHECKING:
    from hashlib import _Hash

# S3's limit on the parts of one multipart upload; config refuses a file size limit beyond it.
MAX_PARTS: Final = MAX_S3_PARTS
_FORMAT: Final = 1
# Uploads whose running sha256 this process keeps; beyond, the oldest is forgotten (its
# sha256 is then computed by reading the upload back).
_MAX_RUNNING_HASHES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Part:
    """A part of the multipart upload that S3 holds."""

    number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class UploadState:
    """What the state object of one upload says."""

    multipart_id: str
    parts: tuple[Part, ...] = ()
    tail: bytes = b""
    # The parts (and tail) were completed into the file's object before the commit,
    # to read the upload back; the multipart upload is gone.
    assembled: bool = False

    @property
    def offset(self) -> int:
        """How many bytes of the upload the state holds."""
        return sum(part.size for part in self.parts) + len(self.tail)

    @property
    def next_number(self) -> int:
        """The number of the part after the recorded ones."""
        return self.parts[-1].number + 1 if self.parts else 1

    def encode(self) -> bytes:
        header = {
            "format": _FORMAT,
            "multipart_id": self.multipart_id,
            "parts": [[part.number, part.size, part.etag] for part in self.parts],
            "tail": len(self.tail),
            "assembled": self.assembled,
        }
        # json.dumps writes no newline, so the first one ends the header.
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.tail

    @classmethod
    def decode(cls, raw: bytes) -> UploadState:
        """Parse a state object.

        Raises:
            ValueError: it is not one this version wrote.
        """
        line, newline, tail = raw.partition(b"\n")
        header: dict[str, Any] = json.loads(line)
        if not newline or header.get("format") != _FORMAT or header.get("tail") != len(tail):
            raise ValueError("not a geodrop upload state")
        parts = tuple(Part(int(n), int(size), str(etag)) for n, size, etag in header["parts"])
        return cls(str(header["multipart_id"]), parts, tail, bool(header["assembled"]))

    def metadata(self) -> dict[str, str]:
        """The facts a HEAD answers with, so reading an offset does not read the tail."""
        return {"offset": str(self.offset), "multipart-id": self.multipart_id}


async def load_state(objects: S3Objects, upload_id: str) -> UploadState:
    """The state of an upload.

    Raises:
        NotFound: the upload has no state (never created, deleted, or committed).
    """
    raw = await objects.get(objects.state_key(upload_id))
    if raw is None:
        raise NotFound("no such upload")
    return UploadState.decode(raw)


async def save_state(objects: S3Objects, upload_id: str, state: UploadState) -> None:
    """Replace the state of an upload, atomically."""
    await objects.put(objects.state_key(upload_id), state.encode(), state.metadata())


async def state_offset(objects: S3Objects, upload_id: str) -> tuple[str, int]:
    """``(multipart id, offset)`` of an upload, from a HEAD of its state.

    Raises:
        NotFound: the upload has no state.
    """
    head = await objects.head(objects.state_key(upload_id))
    if head is None:
        raise NotFound("no such upload")
    try:
        return head.metadata["multipart-id"], int(head.metadata["offset"])
    except (KeyError, ValueError):
        # A store that dropped the metadata: the body says the same.
        state = await load_state(objects, upload_id)
        return state.multipart_id, state.offset


@dataclass(slots=True)
class _RunningHash:
    multipart_id: str
    offset: int
    sha: _Hash


class RunningHashes:
    """The sha256 of uploads as this process received them, off the event loop.

    A running hash is good while its upload's multipart id and offset are still the
    ones it was taken at: every byte then came through this process. An upload that
    another process wrote to, or restarted from zero, has moved on, and is read back.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _RunningHash] = {}
        # One worker: updates run in the order they are queued, so each upload's bytes
        # are hashed in order while the event loop goes on receiving (hashlib releases
        # the GIL on large buffers).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="geodrop-sha256")

    def take(self, upload_id: str, state: UploadState) -> _Hash | None:
        """The running hash of the upload's bytes so far, for a writer to continue."""
        entry = self._entries.pop(upload_id, None)
        if entry is not None and (entry.multipart_id, entry.offset) == (
            state.multipart_id,
            state.offset,
        ):
            return entry.sha
        return hashlib.sha256() if state.offset == 0 else None

    def keep(self, upload_id: str, multipart_id: str, offset: int, sha: _Hash) -> None:
        if len(self._entries) >= _MAX_RUNNING_HASHES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[upload_id] = _RunningHash(multipart_id, offset, sha)

    def digest(self, upload_id: str, multipart_id: str, offset: int) -> str | None:
        """The hex sha256 of the upload, if this process saw all of it."""
        entry = self._entries.get(upload_id)
        if entry is None or (entry.multipart_id, entry.offset) != (multipart_id, offset):
            return None
        return entry.sha.hexdigest()

    def forget(self, upload_id: str) -> None:
        self._entries.pop(upload_id, None)

    def update(self, sha: _Hash, data: bytes | memoryview) -> asyncio.Future[None]:
        """Hash ``data`` after everything queued before it."""
        return asyncio.get_running_loop().run_in_executor(self._executor, sha.update, data)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class S3UploadWriter(UploadWriter):
    """Streams an upload's bytes into parts, ``parallel_parts`` on their way at once.

    It holds at most one part being filled plus the parts in flight, so an upload
    costs about ``(parallel_parts + 1) × part_size`` of memory. Each part, once S3 has
    it and every part before it, is recorded in the state; :meth:`finish` records the
    rest as the tail, so the next writer (in any process) continues exactly there.
    """

    def __init__(
        self,
        objects: S3Objects,
        hashes: RunningHashes,
        upload_id: str,
        start: UploadState,
        *,
        part_size: int,
        parallel_parts: int,
    ) -> None:
        self._objects = objects
        self._hashes = hashes
        self._upload_id = upload_id
        self._key = objects.file_key(upload_id)
        self._start = start
        self._part_size = part_size
        self._parallel = parallel_parts
        self._sha = hashes.take(upload_id, start)
        self._sha_at_start = self._sha.copy() if self._sha is not None else None
        self._hashing: asyncio.Future[None] | None = None
        self._recorded = start
        self._record_lock = asyncio.Lock()
        self._sending: deque[asyncio.Task[None]] = deque()
        self._restart()

    def _restart(self) -> None:
        """Continue from the writer's start (after construction or a rollback)."""
        start = self._start
        self.offset = start.offset
        self._parts: list[Part] = list(start.parts)  # uploaded, with no gap before them
        self._sent: dict[int, Part] = {}  # uploaded after a gap, waiting for it to close
        self._next_number = start.next_number
        self._buffer: deque[bytes | memoryview] = deque([start.tail] if start.tail else [])
        self._buffered = len(start.tail)
        self._hashed_to = start.offset
        self._failure: Exception | None = None

    async def write(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        if not data:
            return
        if self._start.assembled:
            raise Conflict("this upload is whole; it takes no more bytes")
        self._buffer.append(data)
        self._buffered += len(data)
        self.offset += len(data)
        while self._buffered >= self._part_size:
            await self._send_next_part()

    async def _send_next_part(self) -> None:
        if self._next_number > MAX_PARTS:
            raise PayloadTooLarge(
                f"an upload holds at most {MAX_PARTS} parts of {self._part_size} bytes"
            )
        # A free slot first: the bytes wait in the buffer, not in a second part.
        while len(self._sending) >= self._parallel:
            await self._wait_oldest()
        part_start = self.offset - self._buffered
        data = self._take(self._part_size)
        self._hash(data, part_start)
        number = self._next_number
        self._next_number += 1
        self._sending.append(asyncio.create_task(self._send(number, data)))

    def _take(self, size: int) -> bytes:
        """The first ``size`` buffered bytes, as one part (one copy)."""
        pieces: list[bytes | memoryview] = []
        needed = size
        while needed:
            head = self._buffer[0]
            if len(head) <= needed:
                pieces.append(self._buffer.popleft())
                needed -= len(head)
            else:
                view = memoryview(head)
                pieces.append(view[:needed])
                self._buffer[0] = view[needed:]
                needed = 0
        self._buffered -= size
        return b"".join(pieces)

    def _hash(self, data: bytes | memoryview, data_start: int) -> None:
        """Queue the bytes of ``data`` not hashed yet (a tail from before was)."""
        skip = self._hashed_to - data_start
        if self._sha is None or skip >= len(data):
            return
        self._hashing = self._hashes.update(self._sha, memoryview(data)[max(skip, 0) :])
        self._hashed_to = data_start + len(data)

    async def _send(self, number: int, data: bytes) -> None:
        etag = await self._objects.upload_part(self._key, self._start.multipart_id, number, data)
        self._sent[number] = Part(number, len(data), etag)
        await self._record_parts()

    async def _record_parts(self) -> None:
        """Record the parts S3 now holds with no gap before them (none of the tail)."""
        async with self._record_lock:
            before = len(self._parts)
            while (following := self._following_number()) in self._sent:
                self._parts.append(self._sent.pop(following))
            if len(self._parts) > before:
                await self._save(replace(self._start, parts=tuple(self._parts), tail=b""))

    def _following_number(self) -> int:
        return self._parts[-1].number + 1 if self._parts else 1

    async def _save(self, state: UploadState) -> None:
        await save_state(self._objects, self._upload_id, state)
        self._recorded = state

    async def _wait_oldest(self) -> None:
        task = self._sending.popleft()
        # asyncio.wait, not await: cancelling this writer must not cancel a part on its way.
        await asyncio.wait([task])
        failure = task.exception()
        if failure is not None:
            if self._failure is None:
                self._failure = failure if isinstance(failure, Exception) else RuntimeError()
            raise self._failure

    async def _drain(self) -> None:
        """Wait for every part on its way; keep the first failure."""
        while self._sending:
            try:
                await self._wait_oldest()
            except Exception:  # noqa: S112 - kept in self._failure for finish()
                continue

    async def rollback(self, offset: int) -> None:
        """Discard what was written past ``offset``.

        ``offset`` may be the writer's starting offset, or any offset still inside the
        part being filled.

        Raises:
            ValueError: ``offset`` is elsewhere (inside a part already sent).
        """
        buffer_start = self.offset - self._buffered
        if not self._start.offset <= offset <= self.offset:
            raise ValueError(f"cannot roll back to {offset}: outside this writer's bytes")
        if offset >= buffer_start:
            self._truncate(offset - buffer_start)
            self.offset = offset
            return
        if offset != self._start.offset:
            raise ValueError(f"cannot roll back to {offset}: its part was sent already")
        await self._drain()
        if self._hashing is not None:
            await self._hashing
        self._sha = self._sha_at_start.copy() if self._sha_at_start is not None else None
        self._restart()
        if self._recorded != self._start:
            await self._save(self._start)

    def _truncate(self, keep: int) -> None:
        while self._buffered > keep:
            last = self._buffer.pop()
            if self._buffered - len(last) < keep:
                self._buffer.append(memoryview(last)[: keep - (self._buffered - len(last))])
                self._buffered = keep
            else:
                self._buffered -= len(last)

    async def finish(self) -> None:
        """Wait for the parts on their way and record where the upload now stands.

        Raises:
            Exception: a part could not be sent (the state then records the parts
                before it, and no tail), or the state could not be saved.
        """
        await self._drain()
        await self._record_parts()
        whole = self._following_number() == self._next_number
        tail = b"".join(self._buffer) if whole else b""
        state = replace(self._start, parts=tuple(self._parts), tail=tail)
        if state != self._recorded:
            await self._save(state)
        if whole:
            self._hash(tail, state.offset - len(tail))
        if self._hashing is not None:
            await self._hashing
        if self._sha is not None and self._hashed_to == state.offset:
            self._hashes.keep(self._upload_id, state.multipart_id, state.offset, self._sha)
        if not whole:
            raise self._failure or RuntimeError("a part of the upload was lost")


def part_ranges(size: int, max_part: int) -> Sequence[tuple[int, int]]:
    """``[start, stop)`` ranges that cut ``size`` bytes into as few equal parts as fit."""
    count = max(1, -(-size // max_part))
    bounds = [size * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))
