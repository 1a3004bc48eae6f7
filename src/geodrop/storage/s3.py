"""The S3 storage unit: uploads as multipart uploads, files as objects.

Keys: ``{prefix}uploads/{id}/state`` is an upload's state object (s3_uploads.py) and
``{prefix}files/{id}`` its file. Every access-unit process of a region may continue
any upload, since everything an upload needs to go on is in its state object; the
metadata layer's upload lock keeps two writers off one upload.

An upload whose sha256 this process could not follow (another process wrote some of
it) is completed into ``files/{id}`` to be read back before its commit: the object then
exists early, but only the metadata's "complete" record makes a file downloadable, and
deleting the upload deletes that object too. A crash between creating a multipart upload
and recording it leaves an orphan no state names: operators add the bucket lifecycle
rule AbortIncompleteMultipartUpload.

The client opens on first use, so constructing the store does no I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiobotocore.response import StreamingBody
from botocore.exceptions import ClientError

from geodrop.config import MIN_S3_PART_SIZE, S3StorageConfig
from geodrop.errors import Conflict, NotFound, OffsetMismatch, PayloadTooLarge
from geodrop.storage.base import UNKNOWN_FREE_BYTES, BlobStore, StoredBlob, UploadWriter
from geodrop.storage.s3_objects import S3Objects, is_missing
from geodrop.storage.s3_uploads import (
    MAX_PARTS,
    Part,
    RunningHashes,
    S3UploadWriter,
    UploadState,
    load_state,
    part_ranges,
    save_state,
    state_offset,
)

logger = logging.getLogger(__name__)

MAX_PART_SIZE: Final = 5 * 1024**3  # S3's largest part
_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes ``[start, stop)`` of one source object."""

    key: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class S3Blob(StoredBlob):
    """A committed file in S3, streamed by ranged GETs (or handed out presigned)."""

    def __init__(self, objects: S3Objects, key: str, size: int, *, presign: bool) -> None:
        self._objects = objects
        self._key = key
        self._presign = presign
        self._open: set[StreamingBody] = set()
        self.size = size

    def local_file(self) -> None:
        return None

    async def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        stop = min(stop, self.size)
        if start >= stop:
            return
        body = await self._objects.open_range(self._key, start, stop)
        self._open.add(body)
        try:
            while chunk := await body.read(_READ_CHUNK):
                yield chunk
        finally:
            self._open.discard(body)
            body.close()

    async def close(self) -> None:
        # A download abandoned mid-stream leaves its body open: its connection goes.
        for body in self._open:
            body.close()
        self._open.clear()

    async def presigned_url(
        self, ttl_seconds: int, *, content_type: str, content_disposition: str
    ) -> str | None:
        if not self._presign:
            return None
        return await self._objects.presigned_get(
            self._key,
            ttl_seconds,
            content_type=content_type,
            content_disposition=content_disposition,
        )


class S3BlobStore(BlobStore):
    """A region's files in one bucket (under ``prefix``) of an S3-compatible store."""

    def __init__(self, config: S3StorageConfig) -> None:
        self.config = config
        self.objects = S3Objects(config)
        self._hashes = RunningHashes()

    async def create_upload(self, upload_id: str) -> None:
        """Begin the multipart upload and record it in an empty state.

        Raises:
            FileExistsError: the upload exists already.
            InsufficientStorage: storage is full.
        """
        if await self.objects.head(self.objects.state_key(upload_id)) is not None:
            raise FileExistsError(f"upload {upload_id} exists")
        multipart_id = await self.objects.create_multipart(self.objects.file_key(upload_id))
        await save_state(self.objects, upload_id, UploadState(multipart_id))
        self._hashes.forget(upload_id)

    async def upload_offset(self, upload_id: str) -> int:
        """The offset the upload's state records; NotFound once committed (or never made)."""
        return (await state_offset(self.objects, upload_id))[1]

    @asynccontextmanager
    async def open_writer(self, upload_id: str, offset: int) -> AsyncIterator[UploadWriter]:
        state = await load_state(self.objects, upload_id)
        if state.offset != offset:
            raise OffsetMismatch(f"upload is at offset {state.offset}, not {offset}")
        writer = S3UploadWriter(
            self.objects,
            self._hashes,
            upload_id,
            state,
            part_size=self.config.part_size,
            parallel_parts=self.config.parallel_parts,
        )
        try:
            yield writer
        except BaseException as failure:
            # The request failed (or was cancelled): keep what did arrive all the same.
            try:
                await writer.finish()
            except Exception as also:
                if also is not failure:
                    logger.exception("upload %s: recording its state failed", upload_id)
            raise
        await writer.finish()

    async def upload_sha256(self, upload_id: str) -> str:
        """From this process's running hash, or else by assembling the file and reading it."""
        multipart_id, offset = await state_offset(self.objects, upload_id)
        digest = self._hashes.digest(upload_id, multipart_id, offset)
        if digest is not None:
            return digest
        state = await load_state(self.objects, upload_id)
        sha = hashlib.sha256()
        if not state.parts and not state.assembled:
            await self._hashes.update(sha, state.tail)
            return sha.hexdigest()
        if not state.assembled:
            state = await self._assemble(upload_id, state, record=True)
        if state.offset:
            key = self.objects.file_key(upload_id)
            body = await self.objects.open_range(key, 0, state.offset)
            try:
                hashing: asyncio.Future[None] | None = None
                while chunk := await body.read(_READ_CHUNK):
                    if hashing is not None:
                        await hashing
                    hashing = self._hashes.update(sha, chunk)
                if hashing is not None:
                    await hashing
            finally:
                body.close()
        return sha.hexdigest()

    async def _assemble(self, upload_id: str, state: UploadState, *, record: bool) -> UploadState:
        """Complete the upload into its file's object, the tail as its last part.

        Safe to repeat after a crash half-way: S3 completes a completed upload again,
        and a store that forgot it has the object to show for it.
        """
        key = self.objects.file_key(upload_id)
        parts = list(state.parts)
        if not parts:
            # Nothing in parts (the bytes, if any, are all in the tail): one plain PUT.
            await self.objects.put(key, state.tail)
            await self.objects.abort(key, state.multipart_id)
        else:
            try:
                if state.tail:
                    number = state.next_number
                    etag = await self.objects.upload_part(
                        key, state.multipart_id, number, state.tail
                    )
                    parts.append(Part(number, len(state.tail), etag))
                await self.objects.complete(
                    key, state.multipart_id, [(part.number, part.etag) for part in parts]
                )
            except ClientError as exc:
                if not is_missing(exc):
                    raise
                head = await self.objects.head(key)
                if head is None or head.size != state.offset:
                    raise Conflict("upload storage is inconsistent") from exc
        assembled = UploadState(state.multipart_id, tuple(parts), b"", assembled=True)
        if record:
            await save_state(self.objects, upload_id, assembled)
        return assembled

    async def commit(self, upload_id: str) -> None:
        """Complete the multipart upload into the file's object, then drop the state.

        Idempotent: called again after a crash between the two, it finds the file.

        Raises:
            NotFound: there is no such upload, and no such file either.
        """
        try:
            state = await load_state(self.objects, upload_id)
        except NotFound:
            if await self.objects.head(self.objects.file_key(upload_id)) is not None:
                return
            raise
        if not state.assembled:
            await self._assemble(upload_id, state, record=False)
        await self.objects.delete(self.objects.state_key(upload_id))
        self._hashes.forget(upload_id)

    async def concatenate(self, upload_id: str, partial_ids: Sequence[str]) -> None:
        """Make the partial uploads the parts of this one, copied inside S3.

        Each partial is first assembled into its own object (a partial still wholly in
        its tail is copied from its state object). A part but the last must hold 5 MiB
        (S3's rule): a smaller partial in the middle is read through this process and
        joined with the bytes after it; a small remainder at the end becomes the tail.
        """
        final = await load_state(self.objects, upload_id)
        if final.offset or final.assembled:
            raise Conflict("a concatenated upload must be empty")
        partials = await asyncio.gather(
            *(load_state(self.objects, partial_id) for partial_id in partial_ids)
        )
        sources = await asyncio.gather(
            *(self._source(pid, state) for pid, state in zip(partial_ids, partials, strict=True))
        )
        copied, tail = plan_parts([source for source in sources if source.size])
        if len(copied) >= MAX_PARTS:
            raise PayloadTooLarge(f"a concatenated upload holds at most {MAX_PARTS} parts")
        key = self.objects.file_key(upload_id)
        slots = asyncio.Semaphore(self.config.parallel_parts)

        async def send(number: int, segments: list[Segment]) -> Part:
            async with slots:
                if len(segments) == 1:
                    only = segments[0]
                    etag = await self.objects.copy_part(
                        key, final.multipart_id, number, only.key, only.start, only.stop
                    )
                else:
                    data = await self._read(segments)
                    etag = await self.objects.upload_part(key, final.multipart_id, number, data)
            return Part(number, sum(segment.size for segment in segments), etag)

        parts = await asyncio.gather(
            *(send(number, segments) for number, segments in enumerate(copied, start=1))
        )
        tail_bytes = await self._read(tail)
        await save_state(
            self.objects, upload_id, UploadState(final.multipart_id, tuple(parts), tail_bytes)
        )
        self._hashes.forget(upload_id)

    async def _source(self, partial_id: str, state: UploadState) -> Segment:
        """Where a partial upload's bytes can be copied from, as one object range."""
        if not state.parts and not state.assembled:
            # All of it is the tail, at the end of the state object: copy it from there.
            end = len(state.encode())
            return Segment(self.objects.state_key(partial_id), end - len(state.tail), end)
        if not state.assembled:
            state = await self._assemble(partial_id, state, record=True)
        return Segment(self.objects.file_key(partial_id), 0, state.offset)

    async def _read(self, segments: Sequence[Segment]) -> bytes:
        pieces = [await self.objects.get_range(s.key, s.start, s.stop) for s in segments]
        return b"".join(pieces)

    async def open_file(self, file_id: str) -> StoredBlob:
        key = self.objects.file_key(file_id)
        head = await self.objects.head(key)
        if head is None:
            raise NotFound("no such file")
        return S3Blob(self.objects, key, head.size, presign=self.config.downloads == "presign")

    async def delete_upload(self, upload_id: str) -> None:
        """Abort the multipart upload, drop an object assembled from it, then the state."""
        self._hashes.forget(upload_id)
        try:
            state = await load_state(self.objects, upload_id)
        except NotFound:
            return  # gone already, or committed: the file is not the upload's to delete
        key = self.objects.file_key(upload_id)
        if state.assembled:
            await self.objects.delete(key)
        await self.objects.abort(key, state.multipart_id)
        # The state goes last: a crash before this leaves it to find and delete again.
        await self.objects.delete(self.objects.state_key(upload_id))

    async def delete_file(self, file_id: str) -> None:
        await self.objects.delete(self.objects.file_key(file_id))

    async def free_bytes(self) -> int:
        """Unknown (:data:`UNKNOWN_FREE_BYTES`): S3 reports no free space, so the object
        store's own limits (quotas, full volumes, which fail the write with 507) apply
        instead, and negotiation is never refused up front."""
        return UNKNOWN_FREE_BYTES

    async def close(self) -> None:
        await self.objects.close()
        self._hashes.close()


def plan_parts(
    sources: Sequence[Segment], min_part: int = MIN_S3_PART_SIZE, max_part: int = MAX_PART_SIZE
) -> tuple[list[list[Segment]], list[Segment]]:
    """Cut ``sources``, in order, into parts and a tail.

    A part of one segment is copied inside S3; a part of several (small sources and
    the bytes that bring them to ``min_part``) is read through. Every part holds at
    least ``min_part`` and at most ``max_part`` bytes; the tail holds less than
    ``min_part``.

    Returns:
        The parts, each as its segments, and the tail's segments.
    """
    parts: list[list[Segment]] = []
    gathering: list[Segment] = []
    gathered = 0
    for source in sources:
        position = source.start
        while position < source.stop:
            if gathering:
                take = min(min_part - gathered, source.stop - position)
                gathering.append(Segment(source.key, position, position + take))
                gathered += take
                position += take
                if gathered >= min_part:
                    parts.append(gathering)
                    gathering, gathered = [], 0
            elif source.stop - position >= min_part:
                for start, stop in part_ranges(source.stop - position, max_part):
                    parts.append([Segment(source.key, position + start, position + stop)])
                position = source.stop
            else:
                gathering = [Segment(source.key, position, source.stop)]
                gathered = source.stop - position
                position = source.stop
    return parts, gathering
