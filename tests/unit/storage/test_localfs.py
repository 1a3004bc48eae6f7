"""Tests of geodrop.storage.localfs that only the local file system has: folders, file
modes, where files land, sendfile. The BlobStore contract it shares with S3 is tested in
tests/integration/storage/test_blobstore_contract.py."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from geodrop.errors import InsufficientStorage
from geodrop.storage import localfs, writeback
from geodrop.storage.localfs import LocalBlobStore
from support.blobstores import committed, file_bytes, read_all, write

ID = "north.abcdefghijklmnopqrstuvwxyz"
OTHER_ID = "north.abzyxwvutsrqponmlkjihgfedc"  # the same folder as ID


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def visible_files(store: LocalBlobStore) -> list[Path]:
    return [path for path in store.paths.files.rglob("*") if path.is_file()]


async def test_new_store_makes_its_folders(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "a" / "b")
    assert store.paths.uploads.is_dir()
    assert store.paths.files.is_dir()
    assert await store.free_bytes() > 0


async def test_created_upload_is_private(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    mode = stat.S_IMODE(store.paths.upload(ID).stat().st_mode)
    assert mode & 0o077 == 0


async def test_the_upload_area_is_one_file_of_the_bytes(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"hello")
    await write(store, ID, 5, b" ", b"world")
    assert store.paths.upload(ID).read_bytes() == b"hello world"
    assert visible_files(store) == []


async def test_commit_moves_the_file_under_its_region(store: LocalBlobStore) -> None:
    await committed(store, b"the whole file", ID)
    assert visible_files(store) == [store.paths.files / "north" / "ab" / ID]
    assert not store.paths.upload(ID).exists()


async def test_reads_offer_sendfile_and_stream_in_1_mib_pieces(store: LocalBlobStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 12345)
    await committed(store, data, ID)
    blob = await store.open_file(ID)
    try:
        whole = [chunk async for chunk in blob.chunks(0, blob.size)]
        assert len(whole) == 3  # read in 1 MiB pieces, so a long range streams
        assert b"".join(whole) == data
        assert await read_all(blob, 10, 15) == data[10:15]
        local = blob.local_file()
        assert local is not None  # the local backend always offers sendfile
        local.seek(10)
        assert local.read(5) == data[10:15]
    finally:
        await blob.close()
    assert local.closed


async def test_unsafe_ids_touch_nothing(store: LocalBlobStore, tmp_path: Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(ValueError, match="unsafe"):
        await store.create_upload("../escape")
    with pytest.raises(ValueError, match="unsafe"):
        await store.open_file("../../escape.ab")
    with pytest.raises(ValueError, match="unsafe"):
        await store.delete_file("North.abc")
    assert tree(tmp_path) == before


async def test_writes_ask_for_writeback_of_each_stretch_as_they_go(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(localfs, "WRITEBACK_BYTES", 1 << 20)
    monkeypatch.setattr(localfs, "start_writeback", lambda fd, start, n: asked.append((start, n)))
    data = os.urandom(5 << 20)
    await store.create_upload(ID)
    async with store.open_writer(ID, 0) as writer:
        for at in range(0, len(data), 256 * 1024):
            await writer.write(data[at : at + 256 * 1024])
    assert asked, "no writeback was asked for"
    # Contiguous stretches from 0, each at least WRITEBACK_BYTES long, none past the end.
    assert asked[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(asked))
    assert all(n >= 1 << 20 for _, n in asked)
    assert asked[-1][0] + asked[-1][1] <= len(data)
    await store.commit(ID)
    assert await file_bytes(store, ID) == data


def test_writeback_of_a_real_file_keeps_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    try:
        writeback.start_writeback(fd, 0, len(data))
        writeback.start_writeback(fd, 0, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    if sys.platform == "linux":
        assert writeback._sync_file_range is not None


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def fsync_failing_on(kind: int) -> Callable[[int], None]:
    """An ``os.fsync`` that fails as a full disk does on files of ``kind`` (a stat.S_IF*)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_IFMT(os.fstat(fd).st_mode) == kind:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    return fsync


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
@pytest.mark.parametrize(
    "failing", [stat.S_IFREG, stat.S_IFDIR], ids=["file's fsync", "folder's fsync"]
)
async def test_a_whole_file_that_cannot_be_made_durable_leaves_nothing(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    await store.store_whole(OTHER_ID, b"an earlier file")  # its folder exists already
    descriptors = open_descriptors()
    monkeypatch.setattr(os, "fsync", fsync_failing_on(failing))
    with pytest.raises(InsufficientStorage):
        await store.store_whole(ID, b"a whole small file")
    monkeypatch.undo()
    assert visible_files(store) == [store.paths.file(OTHER_ID)]  # no staged or final name
    assert open_descriptors() == descriptors


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
async def test_a_whole_file_cancelled_while_made_durable_is_removed_once_made(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    descriptors = open_descriptors()
    entered, release = threading.Event(), threading.Event()
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        release.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    storing = asyncio.create_task(store.store_whole(ID, b"a whole small file"))
    assert await asyncio.to_thread(entered.wait, 10)  # the thread holds the descriptors
    storing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await storing
    assert visible_files(store) == [store.paths.staged_file(ID)]  # still being made
    release.set()
    # The thread finishes (nothing closes a descriptor under it), then the file goes:
    # nobody will record it.
    for _ in range(1000):
        if not visible_files(store) and open_descriptors() == descriptors:
            break
        await asyncio.sleep(0.01)
    assert visible_files(store) == []
    assert open_descriptors() == descriptors
