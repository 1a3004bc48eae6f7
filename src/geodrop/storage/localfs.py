"""The local-file-system storage unit (the embedded default)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO, Final

from geodrop.errors import NotFound, OffsetMismatch
from geodrop.storage.base import (
    BlobStore,
    StoredBlob,
    UploadWriter,
    full_is_insufficient_storage,
)
from geodrop.storage.paths import StoragePaths
from geodrop.storage.writeback import start_writeback

logger = logging.getLogger(__name__)

_READ_CHUNK: Final = 1024 * 1024
# An upload's bytes are sent on to the disk every this many (see writeback.py).
WRITEBACK_BYTES: Final = 8 * 1024 * 1024


class _LocalWriter(UploadWriter):
    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self.offset = offset
        # Where the disk writes asked for so far end, and the request in flight: it
        # can block for a while (a full device queue), so it runs on a worker thread.
        self._written_back = offset
        self._writeback: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        # The one measured exception to "no file work on the event loop"
        # (DESIGN.md §5): writing a received chunk into the page cache inline
        # was 35-40% faster than a thread hop per chunk. No fsync here.
        view = memoryview(data)
        try:
            with full_is_insufficient_storage():
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
        finally:
            # What was written stays, a short write's prefix included: it is the offset.
            self.wrote(len(data) - len(view))

    def local_fd(self) -> int:
        return self._fd

    def wrote(self, count: int) -> None:
        self.offset += count
        if self.offset - self._written_back >= WRITEBACK_BYTES and (
            self._writeback is None or self._writeback.done()
        ):
            start, length = self._written_back, self.offset - self._written_back
            self._writeback = asyncio.get_running_loop().run_in_executor(
                None, start_writeback, self._fd, start, length
            )
            self._written_back = self.offset

    async def settle(self) -> None:
        """Wait for the writeback request in flight (before the file is closed)."""
        if self._writeback is not None:
            await self._writeback

    async def rollback(self, offset: int) -> None:
        self._written_back = min(self._written_back, offset)

        def truncate() -> None:
            os.ftruncate(self._fd, offset)
            # Without the seek the next write would land past a hole of zeros.
            os.lseek(self._fd, offset, os.SEEK_SET)

        await asyncio.to_thread(truncate)
        self.offset = offset


class _LocalBlob(StoredBlob):
    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size

    def local_file(self) -> BinaryIO:
        return self._file

    async def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        position = start
        while position < stop:
            data = await asyncio.to_thread(
                os.pread, self._file.fileno(), min(_READ_CHUNK, stop - position), position
            )
            if not data:
                break
            position += len(data)
            yield data

    async def close(self) -> None:
        # Closing a file opened for reading does no disk work: not worth a thread hop.
        self._file.close()


class LocalBlobStore(BlobStore):
    """Uploads in ``ROOT/uploads``, files in ``ROOT/files/REGION/XX/ID``."""

    def __init__(self, root: Path) -> None:
        self.paths = StoragePaths(root)
        self.paths.uploads.mkdir(parents=True, exist_ok=True)
        self.paths.files.mkdir(parents=True, exist_ok=True)

    async def create_upload(self, upload_id: str) -> None:
        # The new name in the uploads folder is not fsynced: nothing in an empty area needs
        # keeping. Commit makes the folder durable; until then a crash of the machine may
        # lose the area, and the file server makes it again (uploads.current_offset). As
        # the open of a file to send (open_file), making an empty file is done on the
        # event loop: no data, no flush. Upload negotiations under wrk (64 connections,
        # alternating runs): with the folder's fsync on a thread ~700 req/s at ~1,550 µs
        # of CPU each; without the fsync ~770 req/s at ~1,250 µs; on the loop ~930 req/s
        # at ~1,220 µs.
        path = self.paths.upload(upload_id)
        with full_is_insufficient_storage():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    async def upload_offset(self, upload_id: str) -> int:
        try:
            return (await asyncio.to_thread(os.stat, self.paths.upload(upload_id))).st_size
        except FileNotFoundError:
            raise NotFound("no such upload") from None

    @asynccontextmanager
    async def open_writer(self, upload_id: str, offset: int) -> AsyncIterator[UploadWriter]:
        path = self.paths.upload(upload_id)

        def open_at() -> int:
            fd = os.open(path, os.O_WRONLY)
            size = os.fstat(fd).st_size
            if size != offset:
                os.close(fd)
                raise OffsetMismatch(f"upload is at offset {size}, not {offset}")
            os.lseek(fd, offset, os.SEEK_SET)
            return fd

        try:
            fd = await asyncio.to_thread(open_at)
        except FileNotFoundError:
            raise NotFound("no such upload") from None
        writer = _LocalWriter(fd, offset)
        try:
            yield writer
        finally:
            await writer.settle()
            # Nothing is flushed at close (the fsync is commit's): no thread hop for it.
            os.close(fd)

    async def upload_sha256(self, upload_id: str) -> str:
        path = self.paths.upload(upload_id)

        def digest() -> str:
            sha = hashlib.sha256()
            with path.open("rb") as file:
                while chunk := file.read(_READ_CHUNK):
                    sha.update(chunk)
            return sha.hexdigest()

        return await asyncio.to_thread(digest)

    async def commit(self, upload_id: str) -> None:
        source = self.paths.upload(upload_id)
        target = self.paths.file(upload_id)

        def commit() -> None:
            # Out of space here (a new fan-out folder, delayed allocation at fsync), the
            # upload stays whole in its area and is committed when next asked.
            with full_is_insufficient_storage():
                fd = os.open(source, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _move_durably(source, target)

        await asyncio.to_thread(commit)

    async def store_whole(self, file_id: str, data: bytes) -> None:
        # What waits for no disk is done on the event loop, as create_upload's empty
        # file: making the file beside its final name (one folder to make durable, not
        # two) and putting its bytes, 64 KiB at most (tus_handlers.WHOLE_BODY_BYTES), in
        # the page cache. One thread hop then waits for the disk (_make_durable). Each
        # system call of a thread lets go of the GIL and takes it back, and under load
        # taking it back means waiting for the event loop: a context switch each way.
        # 4 KiB creation-with-upload requests under wrk, 64 connections, 6 alternating
        # runs (medians): the whole store in the thread (a dozen calls) cost the file
        # server 1,713 µs of CPU a request at 731 req/s; this way 1,290 µs at 931 req/s,
        # less in five of the six pairs of runs. The small-file benchmark's flow (8
        # workers) made 36 context switches a transaction on the file server before, 29
        # after; its throughput moved by less than this machine's noise.
        source = self.paths.staged_file(file_id)
        target = self.paths.file(file_id)
        with full_is_insufficient_storage():
            fd = _create_staged(source)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                folder_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            except BaseException:
                os.close(fd)
                await asyncio.to_thread(_unlink, source)
                raise
            # The thread owns both descriptors from here and closes them. Shielded, it
            # finishes even if this request is cancelled: nothing closes one under it.
            durable = asyncio.ensure_future(
                asyncio.to_thread(_make_durable, fd, folder_fd, source, target)
            )
            try:
                await asyncio.shield(durable)
            except asyncio.CancelledError:
                # No record will name the file now: it goes once the thread has made it.
                durable.add_done_callback(partial(_remove_if_made, target))
                raise

    async def concatenate(self, upload_id: str, partial_ids: Sequence[str]) -> None:
        target = self.paths.upload(upload_id)
        sources = [self.paths.upload(partial_id) for partial_id in partial_ids]

        def copy_all() -> None:
            with full_is_insufficient_storage():
                fd = os.open(target, os.O_WRONLY)
                try:
                    try:
                        for source in sources:
                            _copy_whole(source, fd)
                    except BaseException:
                        os.ftruncate(fd, 0)  # all or nothing: the upload stays empty
                        raise
                finally:
                    os.close(fd)

        try:
            await asyncio.to_thread(copy_all)
        except FileNotFoundError:
            raise NotFound("no such upload") from None

    async def open_file(self, file_id: str) -> StoredBlob:
        # On the event loop, as nginx opens what it sends: finding the path (paths.file)
        # has just looked up every part of it, the file itself included, on the loop, so
        # the open finds its inode in memory and a thread hop would buy nothing. The hop
        # cost a download request ~170 µs of CPU, a third of a ranged GET of a large file
        # (3,000 keep-alive requests of 64 KiB: 532 -> 366 µs of the file server's CPU a
        # request); aria2c makes ~11 a GiB.
        path = self.paths.file(file_id)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise NotFound("no such file") from None
        return _LocalBlob(file, os.fstat(file.fileno()).st_size)

    async def delete_upload(self, upload_id: str) -> None:
        await asyncio.to_thread(_unlink, self.paths.upload(upload_id))

    async def delete_file(self, file_id: str) -> None:
        await asyncio.to_thread(_unlink, self.paths.file(file_id))

    async def free_bytes(self) -> int:
        # statvfs reads the file system's counters, in memory: no thread hop for it.
        return shutil.disk_usage(self.paths.root).free


def _copy_whole(source: Path, fd: int) -> None:
    """Append all of ``source`` to ``fd`` inside the kernel (copy_file_range)."""
    with source.open("rb") as file:
        remaining = os.fstat(file.fileno()).st_size
        while remaining:
            copied = os.copy_file_range(file.fileno(), fd, remaining)
            if not copied:
                raise OSError(errno.EIO, f"{source} ended early")
            remaining -= copied


def _create_staged(path: Path) -> int:
    """Create ``path`` (a whole file's staged name), its folder too if it is the first."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o600)


def _make_durable(fd: int, folder_fd: int, source: Path, target: Path) -> None:
    """Make the staged file ``source`` (open as ``fd``) durable and rename it to
    ``target`` in the same folder (open as ``folder_fd``), the folder made durable;
    closes both descriptors. A failure leaves neither name."""
    moved = False
    try:
        os.fsync(fd)
        os.replace(source, target)  # atomic: the file appears whole or not at all
        moved = True
        os.fsync(folder_fd)
    except BaseException:
        _unlink_quietly(target if moved else source)  # the first failure is the one raised
        raise
    finally:
        os.close(fd)
        os.close(folder_fd)


def _remove_if_made(path: Path, made: asyncio.Future[None]) -> None:
    """Remove ``path`` if ``made`` made it (a done callback, on the event loop)."""
    if not made.cancelled() and made.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, _unlink_quietly, path)


def _unlink_quietly(path: Path) -> None:
    """:func:`_unlink`, for clean-up whose failure must not replace another or has nobody
    waiting for it: a failure is only logged."""
    try:
        _unlink(path)
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def _move_durably(source: Path, target: Path) -> None:
    """Rename a durable upload to its file's place, the folders made durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # rename is atomic within one file system: the file appears whole or not at all.
    os.replace(source, target)
    _fsync_dir(target.parent)
    if source.parent != target.parent:
        _fsync_dir(source.parent)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
