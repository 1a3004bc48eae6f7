"""Tests of geodrop.storage.localfs: the local-file-system storage unit on a temporary folder."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from geodrop.errors import NotFound, OffsetMismatch
from geodrop.storage.base import StoredBlob
from geodrop.storage.localfs import LocalBlobStore

ID = "north.abcdefghijklmnopqrstuvwxyz"
OTHER = "north.zyxwvutsrqponmlkjihgfedc"


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


async def write(store: LocalBlobStore, upload_id: str, offset: int, *chunks: bytes) -> int:
    async with store.open_writer(upload_id, offset) as writer:
        for chunk in chunks:
            await writer.write(chunk)
        return writer.offset


async def read_all(blob: StoredBlob, start: int = 0, stop: int | None = None) -> bytes:
    end = blob.size if stop is None else stop
    return b"".join([chunk async for chunk in blob.chunks(start, end)])


async def committed(store: LocalBlobStore, data: bytes, upload_id: str = ID) -> None:
    await store.create_upload(upload_id)
    await write(store, upload_id, 0, data)
    await store.commit(upload_id)


def tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def visible_files(store: LocalBlobStore) -> list[Path]:
    return [path for path in store.paths.files.rglob("*") if path.is_file()]


async def test_new_store_makes_its_folders(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "a" / "b")
    assert store.paths.uploads.is_dir()
    assert store.paths.files.is_dir()
    assert await store.free_bytes() > 0


async def test_created_upload_is_empty_and_private(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    assert await store.upload_offset(ID) == 0
    mode = stat.S_IMODE(store.paths.upload(ID).stat().st_mode)
    assert mode & 0o077 == 0


async def test_creating_an_existing_upload_fails(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"keep me")
    with pytest.raises(FileExistsError):
        await store.create_upload(ID)
    assert await store.upload_offset(ID) == 7


async def test_appends_at_the_offset(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    assert await write(store, ID, 0, b"hello") == 5
    assert await store.upload_offset(ID) == 5
    assert await write(store, ID, 5, b" ", b"world") == 11
    assert await store.upload_offset(ID) == 11
    assert store.paths.upload(ID).read_bytes() == b"hello world"


async def test_empty_write_keeps_the_offset(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    assert await write(store, ID, 0, b"") == 0
    assert await store.upload_offset(ID) == 0


@pytest.mark.parametrize("offset", [0, 3, 6, 100])
async def test_offset_mismatch(store: LocalBlobStore, offset: int) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"hello")
    with pytest.raises(OffsetMismatch) as raised:
        await write(store, ID, offset, b"XX")
    assert raised.value.status == 409
    assert "5" in raised.value.message
    assert store.paths.upload(ID).read_bytes() == b"hello"


async def test_rollback_discards_past_the_offset(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"abc")
    async with store.open_writer(ID, 3) as writer:
        await writer.write(b"def")
        await writer.write(b"ghi")
        await writer.rollback(3)
        assert writer.offset == 3
    assert await store.upload_offset(ID) == 3
    assert store.paths.upload(ID).read_bytes() == b"abc"
    # The upload carries on from where it was rolled back to.
    assert await write(store, ID, 3, b"DEF") == 6
    assert store.paths.upload(ID).read_bytes() == b"abcDEF"


async def test_rollback_then_write_in_the_same_writer(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    async with store.open_writer(ID, 0) as writer:
        await writer.write(b"wrong")
        await writer.rollback(0)
        await writer.write(b"right")
        assert writer.offset == 5
    assert store.paths.upload(ID).read_bytes() == b"right"


async def test_upload_sha256(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    assert await store.upload_sha256(ID) == hashlib.sha256(b"").hexdigest()
    data = os.urandom(3 * 1024 * 1024 + 17)
    await write(store, ID, 0, data[:1000], data[1000:])
    assert await store.upload_sha256(ID) == hashlib.sha256(data).hexdigest()


async def test_nothing_is_visible_as_a_file_before_commit(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"half of it")
    assert visible_files(store) == []
    assert not store.paths.file(ID).exists()
    with pytest.raises(NotFound):
        await store.open_file(ID)


async def test_commit_makes_the_file_visible_and_removes_the_upload(
    store: LocalBlobStore,
) -> None:
    await committed(store, b"the whole file")
    assert store.paths.file(ID).read_bytes() == b"the whole file"
    assert visible_files(store) == [store.paths.file(ID)]
    assert not store.paths.upload(ID).exists()
    with pytest.raises(NotFound):
        await store.upload_offset(ID)
    blob = await store.open_file(ID)
    try:
        assert blob.size == 14
        assert await read_all(blob) == b"the whole file"
    finally:
        await blob.close()


async def test_empty_file_commits(store: LocalBlobStore) -> None:
    await store.create_upload(ID)
    await store.commit(ID)
    blob = await store.open_file(ID)
    try:
        assert blob.size == 0
        assert await read_all(blob) == b""
    finally:
        await blob.close()


async def test_ranges_of_a_file(store: LocalBlobStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 12345)
    await committed(store, data)
    blob = await store.open_file(ID)
    try:
        assert blob.size == len(data)
        whole = [chunk async for chunk in blob.chunks(0, blob.size)]
        assert len(whole) == 3  # read in 1 MiB pieces, so a long range streams
        assert b"".join(whole) == data
        assert await read_all(blob, 2, 7) == data[2:7]
        assert await read_all(blob, 1024 * 1024 - 1, 1024 * 1024 + 1) == data[1048575:1048577]
        assert await read_all(blob, len(data) - 1) == data[-1:]
        assert await read_all(blob, 5, 5) == b""
        assert await read_all(blob, 0, len(data) + 100) == data
        local = blob.local_file()
        assert local is not None  # the local backend always offers sendfile
        local.seek(10)
        assert local.read(5) == data[10:15]
    finally:
        await blob.close()
    assert local.closed


async def test_files_are_independent(store: LocalBlobStore) -> None:
    await committed(store, b"first", ID)
    await committed(store, b"second", OTHER)
    for file_id, data in ((ID, b"first"), (OTHER, b"second")):
        blob = await store.open_file(file_id)
        try:
            assert await read_all(blob) == data
        finally:
            await blob.close()


async def test_delete_is_idempotent(store: LocalBlobStore) -> None:
    await committed(store, b"data")
    await store.create_upload(OTHER)
    await store.delete_file(ID)
    await store.delete_file(ID)
    await store.delete_upload(OTHER)
    await store.delete_upload(OTHER)
    await store.delete_file("east.neverexisted")
    await store.delete_upload("east.neverexisted")
    with pytest.raises(NotFound):
        await store.open_file(ID)
    with pytest.raises(NotFound):
        await store.upload_offset(OTHER)
    assert visible_files(store) == []


async def test_delete_upload_leaves_the_committed_file(store: LocalBlobStore) -> None:
    await committed(store, b"data")
    await store.delete_upload(ID)
    assert store.paths.file(ID).read_bytes() == b"data"


async def test_not_found(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound) as raised:
        await store.upload_offset(ID)
    assert raised.value.status == 404
    with pytest.raises(NotFound):
        await write(store, ID, 0, b"x")
    with pytest.raises(NotFound):
        await store.open_file(ID)
    assert not store.paths.upload(ID).exists()


async def test_unsafe_ids_touch_nothing(store: LocalBlobStore, tmp_path: Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(ValueError, match="unsafe"):
        await store.create_upload("../escape")
    with pytest.raises(ValueError, match="unsafe"):
        await store.open_file("../../escape.ab")
    with pytest.raises(ValueError, match="unsafe"):
        await store.delete_file("North.abc")
    assert tree(tmp_path) == before
