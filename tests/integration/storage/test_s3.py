"""The S3 storage unit on a real SeaweedFS: what the shared contract cannot show.

Several "processes" (store instances, and one real process killed mid-way) on one
upload, part boundaries, concatenation by server-side copy, presigned downloads, and
deletion that leaves no object and no open multipart upload behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from geodrop.config import MIN_S3_PART_SIZE, S3StorageConfig
from geodrop.errors import ConfigError, NotFound, Unavailable
from geodrop.protocol.fileid import new_file_id
from geodrop.storage.s3 import S3BlobStore
from geodrop.storage.s3_uploads import UploadState
from support.blobstores import (
    MIB,
    committed,
    file_bytes,
    pieces,
    random_bytes,
    sha256_hex,
    write,
)
from support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

ID = "north.abcdefghijklmnopqrstuvwxyz"
PART = MIN_S3_PART_SIZE
TESTS = Path(__file__).resolve().parents[2]
StoreFactory = Callable[..., S3BlobStore]


@pytest.fixture
async def stores(s3_storage: S3StorageConfig) -> AsyncIterator[StoreFactory]:
    """Store instances on one bucket: each stands for an access-unit process of its own."""
    made: list[S3BlobStore] = []

    def make(**changes: Any) -> S3BlobStore:
        store = S3BlobStore(dataclasses.replace(s3_storage, **changes))
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


def keys(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    listing = seaweedfs.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def open_multipart_uploads(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    listing = seaweedfs.client().list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


def stored_state(seaweedfs: SeaweedFS, bucket: str, upload_id: str) -> UploadState:
    answer = seaweedfs.client().get_object(Bucket=bucket, Key=f"uploads/{upload_id}/state")
    return UploadState.decode(answer["Body"].read())


def etag_parts(seaweedfs: SeaweedFS, bucket: str, key: str) -> int:
    """How many parts S3 built an object from (0: a plain PUT), from its ETag."""
    etag = seaweedfs.client().head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.partition("-")[2] or 0)


async def test_two_processes_write_one_upload(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    first, second = stores(), stores()
    data = random_bytes(14 * MIB + 3)
    await first.create_upload(ID)
    offset = 0
    # Sessions alternate between the two processes, ending mid-part and on a boundary.
    for store, end in ((first, 7 * MIB), (second, 10 * MIB), (first, 13 * MIB), (second, None)):
        assert await store.upload_offset(ID) == offset
        stop = len(data) if end is None else end
        offset = await write(store, ID, offset, *pieces(data[offset:stop], 999_999))
    # Neither saw every byte: the sha256 comes from assembling the file and reading it.
    assert await first.upload_sha256(ID) == sha256_hex(data)
    assert stored_state(seaweedfs, s3_storage.bucket, ID).assembled
    assert await second.upload_sha256(ID) == sha256_hex(data)
    await second.commit(ID)
    with pytest.raises(NotFound):
        await first.upload_offset(ID)
    assert await file_bytes(first, ID) == data
    assert keys(seaweedfs, s3_storage.bucket) == [f"files/{ID}"]
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) == []


async def test_one_process_hashes_as_it_receives(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores()
    data = random_bytes(12 * MIB)
    await store.create_upload(ID)
    await write(store, ID, 0, *pieces(data[: 6 * MIB], MIB))
    await write(store, ID, 6 * MIB, *pieces(data[6 * MIB :], MIB))
    assert await store.upload_sha256(ID) == sha256_hex(data)
    # No read-back: nothing was assembled before the commit.
    assert keys(seaweedfs, s3_storage.bucket) == [f"uploads/{ID}/state"]
    await store.commit(ID)
    assert await file_bytes(store, ID) == data


async def test_running_hash_is_not_trusted_after_another_process_wrote(
    stores: StoreFactory,
) -> None:
    first, second = stores(), stores()
    await first.create_upload(ID)
    await write(first, ID, 0, b"abc")
    # Another process restarts the upload from zero and brings it to the same offset.
    await second.delete_upload(ID)
    await second.create_upload(ID)
    await write(second, ID, 0, b"xyz")
    assert await first.upload_sha256(ID) == sha256_hex(b"xyz")


async def test_a_writer_cancelled_mid_way_keeps_what_arrived(stores: StoreFactory) -> None:
    first, second = stores(), stores()
    data = random_bytes(12 * MIB)
    await first.create_upload(ID)
    written = asyncio.Event()

    async def patch() -> None:
        async with first.open_writer(ID, 0) as writer:
            for chunk in pieces(data[: 8 * MIB + 5], MIB):
                await writer.write(chunk)
            written.set()
            await asyncio.sleep(3600)  # a client that stalls until the request is cancelled

    task = asyncio.create_task(patch())
    await asyncio.wait_for(written.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancelled writer recorded its tail on the way out: every byte it took is kept.
    assert await second.upload_offset(ID) == 8 * MIB + 5
    await write(second, ID, 8 * MIB + 5, data[8 * MIB + 5 :])
    assert await second.upload_sha256(ID) == sha256_hex(data)
    await second.commit(ID)
    assert await file_bytes(second, ID) == data


async def test_a_process_killed_mid_way_leaves_a_resumable_upload(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores()
    size, seed = 16 * MIB + 11, 7
    data = random_bytes(size, seed)
    await store.create_upload(ID)
    job = {
        "endpoint_url": s3_storage.endpoint_url,
        "bucket": s3_storage.bucket,
        "access_key": s3_storage.access_key,
        "secret_key": s3_storage.secret_key,
        "part_size": PART,
        "upload_id": ID,
        "size": size,
        "seed": seed,
        "kill_after": 12 * MIB + 100,
        "settle_seconds": 1.0,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "support.s3_writer_process",
        json.dumps(job),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    try:
        said = await asyncio.wait_for(_lines_until(child, "waiting"), 60)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert f"wrote {12 * MIB + 100}" in said
    # What the state says is the offset: the parts recorded before the kill, no tail.
    state = stored_state(seaweedfs, s3_storage.bucket, ID)
    offset = await store.upload_offset(ID)
    assert offset == state.offset
    assert state.tail == b""
    assert 0 < offset <= 12 * MIB
    assert offset % PART == 0
    # Another process goes on from there.
    await write(store, ID, offset, *pieces(data[offset:], MIB))
    assert await store.upload_sha256(ID) == sha256_hex(data)
    await store.commit(ID)
    assert await file_bytes(store, ID) == data
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) == []


async def _lines_until(child: asyncio.subprocess.Process, last: str) -> list[str]:
    assert child.stdout is not None
    said: list[str] = []
    while raw := await child.stdout.readline():
        said.append(raw.decode().strip())
        if said[-1] == last:
            return said
    raise AssertionError(f"the writer process ended early: {said}")


async def test_parts_are_recorded_as_they_land_and_rollback_restores_the_start(
    stores: StoreFactory,
) -> None:
    store, observer = stores(), stores()
    first = random_bytes(2 * MIB, 1)
    await store.create_upload(ID)
    await write(store, ID, 0, first)
    async with store.open_writer(ID, len(first)) as writer:
        for chunk in pieces(random_bytes(12 * MIB, 2), MIB):
            await writer.write(chunk)
        # Two parts are on their way; once they land, the state records them.
        for _ in range(100):
            if await observer.upload_offset(ID) == 2 * PART:
                break
            await asyncio.sleep(0.1)
        assert await observer.upload_offset(ID) == 2 * PART
        with pytest.raises(ValueError, match="sent already"):
            await writer.rollback(len(first) + 1)
        with pytest.raises(ValueError, match="outside"):
            await writer.rollback(len(first) - 1)
        await writer.rollback(len(first))
        # Restored at once, not only when the writer ends.
        assert await observer.upload_offset(ID) == len(first)
        await writer.write(b"right")
    assert await observer.upload_offset(ID) == len(first) + 5
    await store.commit(ID)
    assert await file_bytes(observer, ID) == first + b"right"


async def test_empty_file_is_one_empty_object(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores()
    await store.create_upload(ID)
    assert await store.upload_sha256(ID) == sha256_hex(b"")
    await store.commit(ID)
    assert keys(seaweedfs, s3_storage.bucket) == [f"files/{ID}"]
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) == []
    assert await file_bytes(store, ID) == b""


@pytest.mark.parametrize(
    ("size", "parts"),
    [
        (PART - 1, 0),  # all in the tail: one plain PUT
        (PART, 1),
        (PART + 1, 2),  # a 1-byte tail as the last part
        (2 * PART, 2),
        (2 * PART + 1, 3),
    ],
)
async def test_part_boundaries(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig, size: int, parts: int
) -> None:
    store = stores()
    data = random_bytes(size, size)
    await committed(store, data, ID)
    assert etag_parts(seaweedfs, s3_storage.bucket, f"files/{ID}") == parts
    assert await file_bytes(store, ID) == data


async def test_reads_stream_in_bounded_chunks(stores: StoreFactory) -> None:
    store = stores()
    data = random_bytes(6 * MIB)
    await committed(store, data, ID)
    blob = await store.open_file(ID)
    try:
        assert blob.local_file() is None
        chunks = [chunk async for chunk in blob.chunks(MIB + 1, 6 * MIB - 1)]
        assert b"".join(chunks) == data[MIB + 1 : 6 * MIB - 1]
        assert max(len(chunk) for chunk in chunks) <= MIB
        # "stream": the link serves the bytes.
        assert await blob.presigned_url(60, content_type="a/b", content_disposition="x") is None
    finally:
        await blob.close()


async def test_concatenate_copies_large_partials_inside_s3(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores(part_size=8 * MIB)
    # Two of 5 MiB or more (one still all tail, one with a part), a small one in the
    # middle, a small one last.
    sizes = [6 * MIB + 1, 9 * MIB + 3, MIB, 2 * MIB + 7]
    datas = [random_bytes(size, i) for i, size in enumerate(sizes)]
    partial_ids = await _partials(store, datas)
    await store.create_upload(ID)
    await store.concatenate(ID, partial_ids)
    state = stored_state(seaweedfs, s3_storage.bucket, ID)
    assert [part.size for part in state.parts] == sizes[:2]  # copied inside S3
    assert len(state.tail) == sizes[2] + sizes[3]  # read through: the tail
    whole = b"".join(datas)
    assert await store.upload_offset(ID) == len(whole)
    assert await store.upload_sha256(ID) == sha256_hex(whole)
    await store.commit(ID)
    assert await file_bytes(store, ID) == whole
    for partial_id, data in zip(partial_ids, datas, strict=True):
        assert await store.upload_offset(partial_id) == len(data)


async def test_concatenate_joins_a_small_middle_partial_with_the_next(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores()
    sizes = [6 * MIB, MIB, 7 * MIB, 2 * MIB]
    datas = [random_bytes(size, 10 + i) for i, size in enumerate(sizes)]
    partial_ids = await _partials(store, datas)
    await store.create_upload(ID)
    await store.concatenate(ID, partial_ids)
    state = stored_state(seaweedfs, s3_storage.bucket, ID)
    # 6 copied; 1 + 4 of the 7 read through; its last 3 + the final 2 read through.
    assert [part.size for part in state.parts] == [6 * MIB, 5 * MIB, 5 * MIB]
    assert state.tail == b""
    await store.commit(ID)
    # The copies outlive their sources (retention deletes the partials after the final).
    for partial_id in partial_ids:
        await store.delete_upload(partial_id)
    assert await file_bytes(store, ID) == b"".join(datas)
    await store.delete_file(ID)
    assert keys(seaweedfs, s3_storage.bucket) == []
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) == []


async def _partials(store: S3BlobStore, datas: list[bytes]) -> list[str]:
    partial_ids = [str(new_file_id("north")) for _ in datas]
    for partial_id, data in zip(partial_ids, datas, strict=True):
        await store.create_upload(partial_id)
        await write(store, partial_id, 0, *pieces(data, MIB))
    return partial_ids


async def test_presigned_download_with_range(stores: StoreFactory) -> None:
    store = stores(downloads="presign")
    data = random_bytes(3 * MIB)
    await committed(store, data, ID)
    blob = await store.open_file(ID)
    try:
        url = await blob.presigned_url(
            60, content_type="text/plain", content_disposition='attachment; filename="a.txt"'
        )
    finally:
        await blob.close()
    assert url is not None
    status, headers, body = await asyncio.to_thread(_fetch, url, "bytes=1000-1999")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Disposition"] == 'attachment; filename="a.txt"'
    assert body == data[1000:2000]
    tampered = url.replace("Signature=", "Signature=0")
    status, _, _ = await asyncio.to_thread(_fetch, tampered, "bytes=0-9")
    assert status == 403


def _fetch(url: str, byte_range: str) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers={"Range": byte_range})  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http only
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.headers, refused.read()


async def test_commit_again_after_a_crash_before_the_state_went(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store = stores()
    data = random_bytes(7 * MIB)
    await store.create_upload(ID)
    await write(store, ID, 0, *pieces(data, MIB))
    client = seaweedfs.client()
    state_key = f"uploads/{ID}/state"
    before = client.get_object(Bucket=s3_storage.bucket, Key=state_key)
    await store.commit(ID)
    # As if the process died between completing the multipart upload and deleting the state.
    client.put_object(
        Bucket=s3_storage.bucket,
        Key=state_key,
        Body=before["Body"].read(),
        Metadata=before["Metadata"],
    )
    other = stores()
    assert await other.upload_offset(ID) == len(data)
    await other.commit(ID)
    await other.commit(ID)
    assert await file_bytes(other, ID) == data
    assert keys(seaweedfs, s3_storage.bucket) == [f"files/{ID}"]


async def test_deletion_leaves_nothing(
    stores: StoreFactory, seaweedfs: SeaweedFS, s3_storage: S3StorageConfig
) -> None:
    store, other = stores(), stores()
    empty, partial, assembled, done = (str(new_file_id("north")) for _ in range(4))
    await store.create_upload(empty)
    await store.create_upload(partial)
    await write(store, partial, 0, *pieces(random_bytes(7 * MIB), MIB))
    await store.create_upload(assembled)
    await write(store, assembled, 0, *pieces(random_bytes(6 * MIB), MIB))
    await other.upload_sha256(assembled)  # reads back: assembled before its commit
    await committed(store, b"done", done)
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) != []
    for upload_id in (empty, partial, assembled, done):
        await other.delete_upload(upload_id)
        await other.delete_file(upload_id)
    assert keys(seaweedfs, s3_storage.bucket) == []
    assert open_multipart_uploads(seaweedfs, s3_storage.bucket) == []


async def test_a_missing_bucket_is_named(seaweedfs: SeaweedFS) -> None:
    store = S3BlobStore(seaweedfs.storage_config("no-such-bucket-here"))
    try:
        with pytest.raises(ConfigError, match=r"storage\.bucket.*no-such-bucket-here"):
            await store.upload_offset(ID)
    finally:
        await store.close()


async def test_a_missing_bucket_is_created_when_configured(seaweedfs: SeaweedFS) -> None:
    bucket = f"made-{new_file_id('north').token[:12]}"
    store = S3BlobStore(seaweedfs.storage_config(bucket, create_bucket=True))
    try:
        await committed(store, b"in a new bucket", ID)
        assert await file_bytes(store, ID) == b"in a new bucket"
    finally:
        await store.close()
        seaweedfs.drop_bucket(bucket)


async def test_an_unreachable_store_is_unavailable(s3_storage: S3StorageConfig) -> None:
    # Constructing does no I/O; the first call finds nobody listening.
    store = S3BlobStore(dataclasses.replace(s3_storage, endpoint_url="http://127.0.0.1:9"))
    try:
        with pytest.raises(Unavailable):
            await store.upload_offset(ID)
    finally:
        await store.close()


async def test_a_wrong_key_is_named(s3_storage: S3StorageConfig) -> None:
    store = S3BlobStore(dataclasses.replace(s3_storage, secret_key="not-the-secret"))
    try:
        with pytest.raises(ConfigError, match=r"storage\.secret_key"):
            await store.upload_offset(ID)
    finally:
        await store.close()
