"""Metadata interfaces: a region's transfers, and the directory's inboxes.

Each has an SQLite implementation (the embedded default); other backends
implement the same abstract classes so the services never change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum


class TransferState(StrEnum):
    UPLOADING = "uploading"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file on its way from a sender to its receivers.

    Its id is the upload id while uploading and the file id once complete.
    """

    id: str
    sender: str
    receivers: tuple[str, ...]
    filename: str
    size: int
    sha256: str | None
    created_at: float
    expires_at: float
    state: TransferState = TransferState.UPLOADING
    completed_at: float | None = None
    content_type: str = "application/octet-stream"
    tus_metadata: Mapping[str, str] = field(default_factory=dict)

    def may_access(self, user: str) -> bool:
        """Whether ``user`` may see this transfer at all (its sender or a receiver)."""
        return user == self.sender or user in self.receivers


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a receiver has had of one transfer."""

    file_id: str
    receiver: str
    announced: bool
    received_at: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """What one sender holds, for quotas."""

    bytes_held: int
    uploads_since: int


class TransferStore(ABC):
    """A region's transfers: uploads in progress and completed files."""

    @abstractmethod
    async def create(self, transfer: Transfer) -> None:
        """Record a new upload."""

    @abstractmethod
    async def get(self, transfer_id: str) -> Transfer | None:
        """The transfer, or None."""

    @abstractmethod
    async def complete(
        self, transfer_id: str, sha256: str, now: float, expires_at: float
    ) -> Transfer:
        """Mark an upload complete and queue an inbox announcement for each receiver."""

    @abstractmethod
    async def delete(self, transfer_id: str) -> None:
        """Forget a transfer and its deliveries."""

    @abstractmethod
    async def deliveries(self, transfer_id: str) -> list[Delivery]:
        """Per-receiver state of one transfer."""

    @abstractmethod
    async def unannounced(self, limit: int = 100) -> list[tuple[Transfer, str]]:
        """Completed transfers with a receiver whose inbox has not yet been told."""

    @abstractmethod
    async def mark_announced(self, transfer_id: str, receiver: str) -> None:
        """The receiver's inbox now holds the entry."""

    @abstractmethod
    async def mark_received(self, transfer_id: str, receiver: str, now: float) -> None:
        """The receiver has downloaded the whole file."""

    @abstractmethod
    async def expired(self, now: float, limit: int = 100) -> list[Transfer]:
        """Transfers whose upload expiry or retention has passed."""

    @abstractmethod
    async def usage(self, sender: str, since: float) -> Usage:
        """Bytes the sender's transfers hold (or will), and uploads created since ``since``."""

    @abstractmethod
    def upload_lock(self, transfer_id: str) -> AbstractAsyncContextManager[None]:
        """Exclusive right to write one upload.

        Raises:
            Locked: another request holds it and did not let go in time.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the store."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One file waiting for one receiver."""

    cursor: int
    receiver: str
    file_id: str
    sender: str
    filename: str
    size: int
    sha256: str
    region: str
    created_at: float


class InboxStore(ABC):
    """The directory's inboxes."""

    @abstractmethod
    async def add(self, entry: InboxEntry) -> InboxEntry:
        """Add an entry (idempotent per file and receiver); returns it with its cursor."""

    @abstractmethod
    async def list(self, receiver: str, after: int, limit: int) -> list[InboxEntry]:
        """The receiver's entries with a cursor greater than ``after``, oldest first."""

    @abstractmethod
    async def remove(self, file_id: str) -> None:
        """Drop every entry of a file (it expired or was deleted)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the store."""
