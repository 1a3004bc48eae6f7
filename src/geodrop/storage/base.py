"""The storage unit's one interface: what every backend (local FS, S3, …) provides.

An upload is written at increasing offsets into an *upload area*; the bytes
received so far are the authoritative tus offset, so a crash at any byte leaves
the upload resumable from what actually reached storage. ``commit`` makes the
finished upload durable and visible as a file in one atomic step: nothing
half-written is ever visible as a file.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import BinaryIO, Final

from geodrop.errors import InsufficientStorage

# What :meth:`BlobStore.free_bytes` answers when the backend cannot tell (an object store
# reports no free space): large enough that negotiation never refuses on it, and
# recognisable, so that nothing reports it as a figure (the free-bytes metric omits it).
UNKNOWN_FREE_BYTES: Final = 1 << 62


# A full file system, or the storage user's disk quota reached: the region is full (507).
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def full_is_insufficient_storage() -> Iterator[None]:
    """Inside the block, a file system that is full raises :class:`InsufficientStorage`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise InsufficientStorage(
                "this region's storage is full; what was stored is kept, retry later"
            ) from None
        raise


class UploadWriter(ABC):
    """Appends to one upload, starting at the offset it was opened at."""

    offset: int

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Append ``data``; ``offset`` advances by its length.

        Raises:
            InsufficientStorage: storage is full; ``offset`` counts what was kept.
        """

    @abstractmethod
    async def rollback(self, offset: int) -> None:
        """Discard what was written past ``offset`` (a chunk that failed its checksum)."""

    def local_fd(self) -> int | None:
        """The upload's open file, positioned at ``offset``, for writes that bypass
        :meth:`write` (each reported with :meth:`wrote`); None where there is none."""
        return None

    def wrote(self, count: int) -> None:
        """``count`` bytes were written to :meth:`local_fd` at ``offset``."""
        raise NotImplementedError(f"{type(self).__name__} has no local file")


class StoredBlob(ABC):
    """A committed file, opened for reading."""

    size: int

    @abstractmethod
    def local_file(self) -> BinaryIO | None:
        """An open file for kernel sendfile, when the backend has one."""

    @abstractmethod
    def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        """The bytes ``[start, stop)`` as a stream (backends without a local file)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the blob."""

    async def presigned_url(
        self, ttl_seconds: int, *, content_type: str, content_disposition: str
    ) -> str | None:
        """A URL the client may fetch the bytes from directly (a presigned S3 GET, which
        honours Range), or None to have the link serve them.

        Args:
            ttl_seconds: how long the URL works.
            content_type: the ``Content-Type`` the URL's answers carry.
            content_disposition: the ``Content-Disposition`` they carry.
        """
        return None


class BlobStore(ABC):
    """The storage unit of one region."""

    @abstractmethod
    async def create_upload(self, upload_id: str) -> None:
        """Make an empty upload area for ``upload_id``.

        Raises:
            InsufficientStorage: storage is full.
        """

    @abstractmethod
    async def upload_offset(self, upload_id: str) -> int:
        """How many bytes of the upload have reached storage.

        Raises:
            NotFound: there is no such upload.
        """

    @abstractmethod
    def open_writer(self, upload_id: str, offset: int) -> AbstractAsyncContextManager[UploadWriter]:
        """A writer appending at ``offset``.

        Raises:
            OffsetMismatch: storage holds a different number of bytes.
            NotFound: there is no such upload.
        """

    @abstractmethod
    async def upload_sha256(self, upload_id: str) -> str:
        """The hex sha256 of everything received for the upload."""

    @abstractmethod
    async def commit(self, upload_id: str) -> None:
        """Make the upload durable and visible as the file of the same id, atomically.

        Raises:
            InsufficientStorage: storage is full; the upload stays whole, uncommitted.
        """

    async def store_whole(self, file_id: str, data: bytes) -> None:
        """Store a whole (small) file at once, durable and visible when this returns.

        Here through an upload area, as any upload; a backend may do it in fewer steps.

        Raises:
            InsufficientStorage: storage is full; nothing is visible.
        """
        await self.create_upload(file_id)
        async with self.open_writer(file_id, 0) as writer:
            await writer.write(data)
        await self.commit(file_id)

    @abstractmethod
    async def concatenate(self, upload_id: str, partial_ids: Sequence[str]) -> None:
        """Fill the empty upload ``upload_id`` with the whole uploads ``partial_ids``, in order
        (tus concatenation); the partial uploads stay as they are.

        Backends avoid moving the bytes through this process where they can (S3: each
        partial becomes a part of the final multipart upload by a server-side copy).

        Raises:
            NotFound: an upload does not exist.
            InsufficientStorage: storage is full; ``upload_id`` stays empty.
        """

    @abstractmethod
    async def open_file(self, file_id: str) -> StoredBlob:
        """Open a committed file.

        Raises:
            NotFound: there is no such file.
        """

    @abstractmethod
    async def delete_upload(self, upload_id: str) -> None:
        """Remove an upload area; removing a missing one is not an error."""

    @abstractmethod
    async def delete_file(self, file_id: str) -> None:
        """Remove a committed file; removing a missing one is not an error."""

    @abstractmethod
    async def free_bytes(self) -> int:
        """Space left for new uploads, or :data:`UNKNOWN_FREE_BYTES`."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the backend's resources."""
