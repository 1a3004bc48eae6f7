"""Metadata interfaces: a region's transfers, and the directory's inboxes.

Each has an SQLite implementation (the embedded default); other backends
implement the same abstract classes so the services never change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


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
    # Complete downloads by receivers, counted for limits.max_downloads.
    downloads: int = 0

    def may_access(self, user: str) -> bool:
        """Whether ``user`` may see this transfer at all (its sender or a receiver)."""
        return user == self.sender or user in self.receivers


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What is left of a transfer once it expired or was deleted, for a bounded time.

    Enough to tell its sender and receivers "expired" (410) rather than "not found",
    and nothing about the file itself: no name, size or digest. ``created_at`` stays so
    that deleting an upload never gives back a slot of the sender's uploads a day.
    """

    id: str
    sender: str
    receivers: tuple[str, ...]
    created_at: float
    expired_at: float

    def may_access(self, user: str) -> bool:
        """Whether ``user`` was the transfer's sender or one of its receivers."""
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
    # When the oldest upload counted in ``uploads_since`` was created (None: none was):
    # once it leaves the window, the count drops by one.
    oldest_since: float | None = None


@dataclass(frozen=True, slots=True)
class UnitLinkLoad:
    """One access unit's figures for one link, shared so every unit sees the region's load."""

    link: str
    active_transfers: int
    rate_bytes_per_second: float
    bytes_sent: int
    bytes_received: int


class TransferStore(ABC):
    """A region's transfers: uploads in progress and completed files.

    One store may be shared by several access-unit processes (PostgreSQL): every lock
    below then holds across all of them, not only within one process.
    """

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
    async def mark_announced_many(self, deliveries: Sequence[tuple[str, str]]) -> None:
        """Each ``(transfer_id, receiver)``'s inbox now holds its entry (one transaction)."""

    async def mark_announced(self, transfer_id: str, receiver: str) -> None:
        """The receiver's inbox now holds the entry."""
        await self.mark_announced_many([(transfer_id, receiver)])

    @abstractmethod
    async def mark_received(
        self,
        transfer_id: str,
        receiver: str,
        now: float,
        *,
        grace_seconds: float,
        max_downloads: int = 0,
    ) -> Transfer | None:
        """The receiver has downloaded the whole file: count the download, note the first time.

        Once every receiver has the file, or ``max_downloads`` complete downloads were
        counted (0: no limit), ``expires_at`` becomes at most ``now + grace_seconds``;
        it never moves later. A user who is not a receiver changes nothing.

        Returns:
            The transfer as it now stands, or None if there is no such transfer.
        """

    @abstractmethod
    async def expired(self, now: float, limit: int = 100) -> list[Transfer]:
        """Transfers whose upload expiry or retention has passed."""

    @abstractmethod
    async def retire(self, transfer_id: str, now: float) -> Tombstone | None:
        """Replace a transfer by its tombstone, in one transaction.

        Its deliveries go too; if it was complete, removing its receivers' inbox
        entries is queued (see :meth:`pending_inbox_removals`), since an announcement
        may be on its way. Call it once the transfer's data is deleted.

        Returns:
            The tombstone (the existing one if the transfer was already retired), or
            None if there is no such transfer.
        """

    @abstractmethod
    async def tombstone(self, transfer_id: str) -> Tombstone | None:
        """The tombstone of a retired transfer, or None."""

    @abstractmethod
    async def pending_inbox_removals(self, limit: int = 100) -> list[str]:
        """Ids of retired files whose inbox entries the directory has not yet removed."""

    @abstractmethod
    async def mark_inbox_removed(self, transfer_id: str) -> None:
        """The directory has removed every inbox entry of the retired file."""

    @abstractmethod
    async def forget_tombstones(self, expired_before: float, limit: int = 1000) -> int:
        """Delete tombstones of transfers retired before ``expired_before``.

        A tombstone whose inbox removal is still pending is kept until it is done.

        Returns:
            How many were deleted.
        """

    async def create_admitted(
        self, transfer: Transfer, admit: Callable[[Usage], None], since: float
    ) -> None:
        """Create ``transfer`` if ``admit`` lets it in, given the usage of its sender
        since ``since`` (:meth:`usage`), as one step: two creations at once are never
        both admitted against the same usage.

        This default holds the sender's lock (:meth:`sender_lock`) across reading the
        usage and creating; a store that can do both in one transaction does that.

        Raises:
            Whatever ``admit`` raises; nothing is created then.
        """
        async with self.sender_lock(transfer.sender):
            admit(await self.usage(transfer.sender, since))
            await self.create(transfer)

    @abstractmethod
    async def usage(self, sender: str, since: float) -> Usage:
        """Bytes the sender's transfers hold (or will), and uploads created since ``since``.

        Retired transfers hold no bytes, but their tombstones still count as uploads.
        """

    @abstractmethod
    async def bytes_stored(self) -> int:
        """Bytes the region's transfers hold or will hold: a complete file its size, an
        unfinished upload its declared size (what storage must keep room for); retired
        transfers nothing. The region's "storage used", whatever the storage unit."""

    @abstractmethod
    def upload_lock(self, transfer_id: str) -> AbstractAsyncContextManager[None]:
        """Exclusive right to write one upload.

        Raises:
            Locked: another request holds it and did not let go in time.
        """

    @abstractmethod
    def sender_lock(self, sender: str) -> AbstractAsyncContextManager[None]:
        """Exclusive right to create an upload for ``sender``, so that two negotiations at
        once cannot both pass the same quota check. Waits as long as it takes."""

    @abstractmethod
    def try_exclusive(self, job: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process may run the background ``job`` (e.g. "expiry") now.

        Yields True while no other process sharing the store runs it, False otherwise
        (the caller skips its round). Never waits.
        """

    @abstractmethod
    async def publish_link_loads(
        self, unit: str, loads: Sequence[UnitLinkLoad], now: float
    ) -> None:
        """Record access unit ``unit``'s current figures for each of its links."""

    @abstractmethod
    async def other_units_link_loads(self, unit: str, fresh_after: float) -> list[UnitLinkLoad]:
        """Per link, the sum of every *other* unit's figures published after ``fresh_after``.

        A store only one process uses returns [].
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the store."""


# What :meth:`InboxStore.listen` passes when any receiver's inbox may have changed.
ANY_RECEIVER: Final = "*"


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
    async def add_many(self, entries: Sequence[InboxEntry]) -> list[InboxEntry]:
        """Add entries in one transaction (each idempotent per file and receiver); returns
        them, in order, with their cursors."""

    async def add(self, entry: InboxEntry) -> InboxEntry:
        """Add an entry (idempotent per file and receiver); returns it with its cursor."""
        return (await self.add_many([entry]))[0]

    @abstractmethod
    async def list(self, receiver: str, after: int, limit: int) -> list[InboxEntry]:
        """The receiver's entries with a cursor greater than ``after``, oldest first."""

    @abstractmethod
    async def remove(self, file_id: str) -> None:
        """Drop every entry of a file (it expired or was deleted)."""

    @abstractmethod
    async def listen(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(receiver)`` whenever an entry is added for ``receiver`` by this
        or any other process sharing the store; runs until cancelled.

        ``changed(ANY_RECEIVER)`` means "any receiver may have new entries": a store
        whose notifications can be lost (a dropped database connection) calls it once it
        listens again, and every waiter must then look again.
        """

    @abstractmethod
    async def record_heartbeat(
        self, region: str, links: Sequence[dict[str, object]], now: float
    ) -> None:
        """A region's file server is alive at wall-clock ``now`` with these link figures."""

    @abstractmethod
    async def heartbeats(self) -> Sequence[RegionBeat]:
        """The last heartbeat of every region that has sent one."""

    @abstractmethod
    async def close(self) -> None:
        """Release the store."""


@dataclass(frozen=True, slots=True)
class RegionBeat:
    """A region's last heartbeat as the directory's store holds it."""

    region: str
    last_beat: float
    beats: int
    links: list[dict[str, object]]
