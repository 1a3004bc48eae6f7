"""Retention on a real storage unit and metadata store, with the clock passed in (no sockets).

The janitor's sweep deletes data first and leaves a tombstone; the tombstone answers
410 to the sender and receivers only, and is itself forgotten after TOMBSTONE_SECONDS
once the directory has dropped the file's inbox entries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import geodrop.metadata.sqlite
from geodrop.config import load_config
from geodrop.errors import Gone, NotFound
from geodrop.fileserver import downloads, retention, uploads
from geodrop.fileserver.app import build_file_server
from geodrop.fileserver.context import FileServer
from geodrop.metadata.base import Transfer, TransferState
from geodrop.storage.localfs import LocalBlobStore

RETENTION = 100
UPLOAD_EXPIRY = 50
GRACE = 10
DATA = b"retention test bytes"
STRANGER_MESSAGE = "no such file"

CONFIG = f"""
[directory]
url = "http://127.0.0.1:9"
listen = "127.0.0.1:9"
database = "directory.sqlite3"

[keys]
user_token = "unit-user-token-key-0123456789abcdef"
peer = "unit-peer-key-0123456789abcdef-0123456"
url_signing = "unit-url-signing-key-0123456789abcdef"

[limits]
retention_seconds = {RETENTION}
upload_expiry_seconds = {UPLOAD_EXPIRY}
received_grace_seconds = {GRACE}
max_downloads = 3

[geo]
default_region = "north"

[[regions]]
name = "north"
access_url = "http://127.1.0.1:9"
listen = "127.1.0.1:9"
storage = {{ kind = "local", path = "north/blobs" }}
metadata = {{ kind = "sqlite", path = "north/metadata.sqlite3" }}

[[regions.links]]
name = "telecom"
carrier = "telecom"
url = "http://127.1.1.1:9"
listen = "127.1.1.1:9"
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FileServer]:
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    built = build_file_server(load_config(path), "north")
    yield built
    await built.transfers.close()
    await built.store.close()
    built.locator.close()


async def start_upload(server: FileServer, data: bytes = DATA) -> Transfer:
    request = uploads.UploadRequest(
        name="report.html",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        receivers=("bob", "carol"),
        content_type="text/html",
    )
    return await uploads.create_upload(server, "alice", request)


async def write(server: FileServer, transfer: Transfer, data: bytes) -> None:
    async with server.store.open_writer(transfer.id, 0) as writer:
        await writer.write(data)


async def upload(server: FileServer) -> Transfer:
    transfer = await start_upload(server)
    await write(server, transfer, DATA)
    return await uploads.complete(server, transfer)


def blob_path(server: FileServer, transfer_id: str) -> Path:
    assert isinstance(server.store, LocalBlobStore)
    return server.store.paths.file(transfer_id)


def upload_path(server: FileServer, transfer_id: str) -> Path:
    assert isinstance(server.store, LocalBlobStore)
    return server.store.paths.upload(transfer_id)


async def refusal(server: FileServer, file_id: str, user: str) -> NotFound | Gone:
    with pytest.raises((NotFound, Gone)) as raised:
        await downloads.visible_transfer(server, file_id, user)
    assert isinstance(raised.value, NotFound | Gone)
    return raised.value


async def test_expiry_deletes_the_data_and_leaves_a_tombstone(server: FileServer) -> None:
    done = await upload(server)
    assert done.completed_at is not None
    assert blob_path(server, done.id).read_bytes() == DATA
    assert await retention.sweep(server, done.completed_at + RETENTION - 1) == 0
    assert await downloads.visible_transfer(server, done.id, "bob") == done

    assert await retention.sweep(server, done.completed_at + RETENTION + 1) == 1

    assert not blob_path(server, done.id).exists()
    assert not upload_path(server, done.id).exists()
    assert await server.transfers.get(done.id) is None
    assert server.announce_wakeup.is_set()
    assert await server.transfers.pending_inbox_removals() == [done.id]
    for user in ("alice", "bob", "carol"):
        assert isinstance(await refusal(server, done.id, user), Gone)
    stranger = await refusal(server, done.id, "mallory")
    unknown = await refusal(server, "north." + "z" * 26, "mallory")
    assert isinstance(stranger, NotFound)
    assert stranger.message == unknown.message == STRANGER_MESSAGE


async def test_the_tombstone_goes_once_old_and_withdrawn_from_inboxes(
    server: FileServer,
) -> None:
    done = await upload(server)
    retired_at = done.expires_at + 1
    await retention.sweep(server, retired_at)
    later = retired_at + retention.TOMBSTONE_SECONDS + 1
    await retention.sweep(server, later)
    # The directory has not acknowledged the removal yet: the tombstone must stay.
    assert await server.transfers.tombstone(done.id) is not None
    await server.transfers.mark_inbox_removed(done.id)
    await retention.sweep(server, retired_at + retention.TOMBSTONE_SECONDS - 1)
    assert await server.transfers.tombstone(done.id) is not None
    await retention.sweep(server, later)
    assert await server.transfers.tombstone(done.id) is None
    assert isinstance(await refusal(server, done.id, "bob"), NotFound)


async def test_an_unfinished_upload_expires_with_its_area(server: FileServer) -> None:
    transfer = await start_upload(server)
    await write(server, transfer, DATA[:5])
    assert upload_path(server, transfer.id).stat().st_size == 5
    assert transfer.expires_at == pytest.approx(transfer.created_at + UPLOAD_EXPIRY)

    assert await retention.sweep(server, transfer.expires_at + 1) == 1

    assert not upload_path(server, transfer.id).exists()
    with pytest.raises(Gone):
        await uploads.find_upload(server, transfer.id)
    # Never complete, never announced: nothing to withdraw from inboxes.
    assert await server.transfers.pending_inbox_removals() == []


async def test_an_upload_being_written_is_left_for_the_next_sweep(
    server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(geodrop.metadata.sqlite, "LOCK_WAIT_SECONDS", 0.05)
    transfer = await start_upload(server)
    async with server.transfers.upload_lock(transfer.id):
        assert await retention.sweep(server, transfer.expires_at + 1) == 0
        assert upload_path(server, transfer.id).exists()
    assert await retention.sweep(server, transfer.expires_at + 1) == 1


async def test_every_receiver_downloading_brings_the_end_to_the_grace(
    server: FileServer,
) -> None:
    done = await upload(server)
    now = time.time()
    await retention.record_download(server, done, "alice", now)  # the sender: not counted
    await retention.record_download(server, done, "bob", now)
    kept = await server.transfers.get(done.id)
    assert kept is not None
    assert kept.downloads == 1
    assert kept.expires_at == done.expires_at  # carol has not got it
    await retention.record_download(server, done, "carol", now + 1)
    delivered = await server.transfers.get(done.id)
    assert delivered is not None
    assert delivered.expires_at == now + 1 + GRACE
    assert await retention.sweep(server, now + GRACE) == 0
    assert await retention.sweep(server, now + GRACE + 2) == 1
    assert not blob_path(server, done.id).exists()


async def test_max_downloads_makes_the_file_gone(server: FileServer) -> None:
    done = await upload(server)
    now = time.time()
    for _ in range(2):
        await retention.record_download(server, done, "bob", now)
    assert await downloads.visible_transfer(server, done.id, "carol") is not None
    await retention.record_download(server, done, "bob", now)  # the third: the limit
    for user in ("alice", "bob", "carol"):
        assert isinstance(await refusal(server, done.id, user), Gone)
    assert isinstance(await refusal(server, done.id, "mallory"), NotFound)
    limited = await server.transfers.get(done.id)
    assert limited is not None
    assert limited.state is TransferState.COMPLETE
    assert limited.expires_at == now + GRACE


async def test_tus_termination_leaves_a_tombstone_too(server: FileServer) -> None:
    done = await upload(server)
    await uploads.terminate(server, done)
    assert not blob_path(server, done.id).exists()
    with pytest.raises(Gone):
        await uploads.find_upload(server, done.id)
    assert await server.transfers.pending_inbox_removals() == [done.id]
