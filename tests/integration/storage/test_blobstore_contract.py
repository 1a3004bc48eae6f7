"""The BlobStore contract (geodrop/storage/base.py), held by every backend.

Each test runs on the local file system and on a real SeaweedFS (S3), whose parts are
5 MiB here: the sizes below cross part boundaries on S3 where it matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest

from geodrop.errors import NotFound, OffsetMismatch
from geodrop.protocol.fileid import new_file_id
from geodrop.storage.base import BlobStore
from geodrop.storage.localfs import LocalBlobStore
from geodrop.storage.s3 import S3BlobStore
from support.blobstores import (
    MIB,
    committed,
    file_bytes,
    pieces,
    random_bytes,
    read_all,
    sha256_hex,
    write,
)

ID = "north.abcdefghijklmnopqrstuvwxyz"
OTHER = "north.zyxwvutsrqponmlkjihgfedc"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    backend: BlobStore
    if request.param == "local":
        backend = LocalBlobStore(tmp_path / "blobs")
    else:
        backend = S3BlobStore(request.getfixturevalue("s3_storage"))
    try:
        yield backend
    finally:
        await backend.close()


async def test_created_upload_is_empty(store: BlobStore) -> None:
    await store.create_upload(ID)
    assert await store.upload_offset(ID) == 0
    assert await store.upload_sha256(ID) == sha256_hex(b"")


async def test_creating_an_existing_upload_fails(store: BlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"keep me")
    with pytest.raises(FileExistsError):
        await store.create_upload(ID)
    assert await store.upload_offset(ID) == 7


async def test_appends_at_the_offset(store: BlobStore) -> None:
    await store.create_upload(ID)
    assert await write(store, ID, 0, b"hello") == 5
    assert await store.upload_offset(ID) == 5
    assert await write(store, ID, 5, b" ", b"world") == 11
    assert await store.upload_offset(ID) == 11
    await store.commit(ID)
    assert await file_bytes(store, ID) == b"hello world"


async def test_many_sessions_across_parts(store: BlobStore) -> None:
    data = random_bytes(11 * MIB + 5)
    await store.create_upload(ID)
    offset = 0
    # Sessions that end inside a part, exactly on a boundary, and past one.
    for end in (3 * MIB, 5 * MIB, 5 * MIB + 1, 9 * MIB, len(data)):
        offset = await write(store, ID, offset, *pieces(data[offset:end], 700_000))
        assert offset == end
        assert await store.upload_offset(ID) == end
    assert await store.upload_sha256(ID) == sha256_hex(data)
    await store.commit(ID)
    assert await file_bytes(store, ID) == data


async def test_empty_write_keeps_the_offset(store: BlobStore) -> None:
    await store.create_upload(ID)
    assert await write(store, ID, 0, b"") == 0
    assert await store.upload_offset(ID) == 0


@pytest.mark.parametrize("offset", [0, 3, 6, 100])
async def test_offset_mismatch(store: BlobStore, offset: int) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"hello")
    with pytest.raises(OffsetMismatch) as raised:
        await write(store, ID, offset, b"XX")
    assert raised.value.status == 409
    assert "5" in raised.value.message
    assert await store.upload_offset(ID) == 5
    await store.commit(ID)
    assert await file_bytes(store, ID) == b"hello"


async def test_rollback_discards_past_the_offset(store: BlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"abc")
    async with store.open_writer(ID, 3) as writer:
        await writer.write(b"def")
        await writer.write(b"ghi")
        await writer.rollback(3)
        assert writer.offset == 3
    assert await store.upload_offset(ID) == 3
    assert await store.upload_sha256(ID) == sha256_hex(b"abc")
    # The upload carries on from where it was rolled back to.
    assert await write(store, ID, 3, b"DEF") == 6
    await store.commit(ID)
    assert await file_bytes(store, ID) == b"abcDEF"


async def test_rollback_of_a_chunk_bigger_than_a_part(store: BlobStore) -> None:
    first, wrong, right = random_bytes(2 * MIB, 1), random_bytes(12 * MIB, 2), b"right"
    await store.create_upload(ID)
    await write(store, ID, 0, first)
    async with store.open_writer(ID, len(first)) as writer:
        for chunk in pieces(wrong, MIB):
            await writer.write(chunk)
        await writer.rollback(len(first))
        await writer.write(right)
        assert writer.offset == len(first) + len(right)
    assert await store.upload_offset(ID) == len(first) + len(right)
    assert await store.upload_sha256(ID) == sha256_hex(first + right)
    await store.commit(ID)
    assert await file_bytes(store, ID) == first + right


async def test_rollback_then_write_in_the_same_writer(store: BlobStore) -> None:
    await store.create_upload(ID)
    async with store.open_writer(ID, 0) as writer:
        await writer.write(b"wrong")
        await writer.rollback(0)
        await writer.write(b"right")
        assert writer.offset == 5
    await store.commit(ID)
    assert await file_bytes(store, ID) == b"right"


async def test_upload_sha256(store: BlobStore) -> None:
    await store.create_upload(ID)
    data = random_bytes(3 * MIB + 17)
    await write(store, ID, 0, data[:1000], data[1000:])
    assert await store.upload_sha256(ID) == sha256_hex(data)


async def test_nothing_is_visible_as_a_file_before_commit(store: BlobStore) -> None:
    await store.create_upload(ID)
    await write(store, ID, 0, b"half of it")
    with pytest.raises(NotFound):
        await store.open_file(ID)


async def assert_only_the_file_holds(store: BlobStore, data: bytes) -> None:
    """``ID`` is a file holding ``data``, and no upload area any more."""
    with pytest.raises(NotFound):
        await store.upload_offset(ID)
    blob = await store.open_file(ID)
    try:
        assert blob.size == len(data)
        assert await read_all(blob) == data
    finally:
        await blob.close()


async def test_commit_makes_the_file_visible_and_removes_the_upload(store: BlobStore) -> None:
    await committed(store, b"the whole file", ID)
    await assert_only_the_file_holds(store, b"the whole file")


async def test_store_whole_makes_the_file_visible_at_once(store: BlobStore) -> None:
    await store.store_whole(ID, b"a whole small file")
    await assert_only_the_file_holds(store, b"a whole small file")
    small = await store.open_file(ID)
    try:
        assert await read_all(small) == b"a whole small file"
    finally:
        await small.close()
    with pytest.raises(NotFound):
        await store.open_file(OTHER)
    await store.create_upload(OTHER)  # the upload area of another id is untouched
    assert await store.upload_offset(OTHER) == 0


async def test_empty_file_commits(store: BlobStore) -> None:
    await store.create_upload(ID)
    await store.commit(ID)
    blob = await store.open_file(ID)
    try:
        assert blob.size == 0
        assert await read_all(blob) == b""
    finally:
        await blob.close()


async def test_ranges_of_a_file(store: BlobStore) -> None:
    data = random_bytes(6 * MIB + 12345)
    await committed(store, data, ID)
    blob = await store.open_file(ID)
    try:
        assert blob.size == len(data)
        assert await read_all(blob) == data
        assert await read_all(blob, 2, 7) == data[2:7]
        assert await read_all(blob, MIB - 1, MIB + 1) == data[MIB - 1 : MIB + 1]
        # Across the boundary of the first 5 MiB part (on S3).
        assert await read_all(blob, 5 * MIB - 3, 5 * MIB + 3) == data[5 * MIB - 3 : 5 * MIB + 3]
        assert await read_all(blob, len(data) - 1) == data[-1:]
        assert await read_all(blob, 5, 5) == b""
        assert await read_all(blob, 0, len(data) + 100) == data
    finally:
        await blob.close()


async def test_a_range_abandoned_half_way(store: BlobStore) -> None:
    data = random_bytes(4 * MIB)
    await committed(store, data, ID)
    blob = await store.open_file(ID)
    try:
        stream = blob.chunks(0, blob.size)
        assert isinstance(stream, AsyncGenerator)
        first = await anext(stream)
        assert data.startswith(first)
        await stream.aclose()
        assert await read_all(blob, 100, 200) == data[100:200]
    finally:
        await blob.close()


async def test_files_are_independent(store: BlobStore) -> None:
    await committed(store, b"first", ID)
    await committed(store, b"second", OTHER)
    assert await file_bytes(store, ID) == b"first"
    assert await file_bytes(store, OTHER) == b"second"


async def test_concatenate(store: BlobStore) -> None:
    datas = [b"alpha-", b"", b"beta-", random_bytes(100_000)]
    partial_ids = [str(new_file_id("north")) for _ in datas]
    for partial_id, data in zip(partial_ids, datas, strict=True):
        await store.create_upload(partial_id)
        await write(store, partial_id, 0, data)
    await store.create_upload(ID)
    await store.concatenate(ID, partial_ids)
    whole = b"".join(datas)
    assert await store.upload_offset(ID) == len(whole)
    assert await store.upload_sha256(ID) == hashlib.sha256(whole).hexdigest()
    await store.commit(ID)
    assert await file_bytes(store, ID) == whole
    # The partial uploads stay as they were.
    for partial_id, data in zip(partial_ids, datas, strict=True):
        assert await store.upload_offset(partial_id) == len(data)


async def test_concatenate_a_missing_upload(store: BlobStore) -> None:
    await store.create_upload(ID)
    await store.create_upload(OTHER)
    await write(store, OTHER, 0, b"here")
    with pytest.raises(NotFound):
        await store.concatenate(ID, [OTHER, "north.neverexisted"])
    assert await store.upload_offset(ID) == 0


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await committed(store, b"data", ID)
    await store.create_upload(OTHER)
    await write(store, OTHER, 0, b"partly")
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


async def test_a_deleted_upload_starts_again_from_zero(store: BlobStore) -> None:
    # What completion does when the file does not match its negotiated sha256.
    await store.create_upload(ID)
    await write(store, ID, 0, random_bytes(6 * MIB))
    await store.upload_sha256(ID)
    await store.delete_upload(ID)
    await store.create_upload(ID)
    assert await store.upload_offset(ID) == 0
    assert await write(store, ID, 0, b"again") == 5
    assert await store.upload_sha256(ID) == sha256_hex(b"again")
    await store.commit(ID)
    assert await file_bytes(store, ID) == b"again"


async def test_delete_upload_leaves_the_committed_file(store: BlobStore) -> None:
    await committed(store, b"data", ID)
    await store.delete_upload(ID)
    assert await file_bytes(store, ID) == b"data"


async def test_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound) as raised:
        await store.upload_offset(ID)
    assert raised.value.status == 404
    with pytest.raises(NotFound):
        await write(store, ID, 0, b"x")
    with pytest.raises(NotFound):
        await store.open_file(ID)
    with pytest.raises(NotFound):
        await store.upload_offset(ID)


@pytest.mark.parametrize("unsafe", ["../escape", "../../escape.ab", "North.abc", "a/b.c", ""])
async def test_unsafe_ids_are_refused(store: BlobStore, unsafe: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        await store.create_upload(unsafe)
    with pytest.raises(ValueError, match="unsafe"):
        await store.open_file(unsafe)
    with pytest.raises(ValueError, match="unsafe"):
        await store.delete_file(unsafe)
    with pytest.raises(ValueError, match="unsafe"):
        await store.delete_upload(unsafe)


async def test_free_bytes_is_positive(store: BlobStore) -> None:
    assert await store.free_bytes() > 0
