"""Rows of either SQL backend (SQLite, PostgreSQL) as metadata objects.

Both schemas keep the same columns under the same names; ``tus_metadata`` is JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from geodrop.metadata.base import InboxEntry, Transfer, TransferState, Usage


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str) -> Any: ...


def transfer_from_row(row: Row, receivers: Iterable[str]) -> Transfer:
    """The transfer a ``transfers`` row holds, with its receivers in order."""
    return Transfer(
        id=row["id"],
        sender=row["sender"],
        receivers=tuple(receivers),
        filename=row["filename"],
        size=row["size"],
        sha256=row["sha256"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        state=TransferState(row["state"]),
        completed_at=row["completed_at"],
        content_type=row["content_type"],
        tus_metadata=json.loads(row["tus_metadata"]),
        downloads=row["downloads"],
    )


# The columns of a transfer's row, in the order :func:`transfer_values` gives them.
TRANSFER_COLUMNS: Final = (
    "id, sender, filename, size, sha256, created_at,"
    " expires_at, state, completed_at, content_type, tus_metadata"
)


def transfer_values(transfer: Transfer) -> tuple[Any, ...]:
    """A transfer's row for :data:`TRANSFER_COLUMNS` (the inverse of
    :func:`transfer_from_row`, but for its receivers, which are rows of their own)."""
    return (
        transfer.id,
        transfer.sender,
        transfer.filename,
        transfer.size,
        transfer.sha256,
        transfer.created_at,
        transfer.expires_at,
        transfer.state.value,
        transfer.completed_at,
        transfer.content_type,
        json.dumps(dict(transfer.tus_metadata)),
    )


def inbox_entry_from_row(row: Row) -> InboxEntry:
    """The inbox entry an ``inbox`` row holds."""
    return InboxEntry(
        cursor=row["cursor"],
        receiver=row["receiver"],
        file_id=row["file_id"],
        sender=row["sender"],
        filename=row["filename"],
        size=row["size"],
        sha256=row["sha256"],
        region=row["region"],
        created_at=row["created_at"],
    )


UPLOAD_COUNT_BUCKET_SECONDS: Final = 3600


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """The arguments of :func:`usage_query` for uploads since ``since``: whole hours
    from ``first_full_hour`` on are read from the hourly counts, the part of an hour
    before it (``since`` up to ``boundary_end``) from the rows themselves."""

    since: float
    first_full_hour: int
    boundary_end: float


def usage_window(since: float) -> UsageWindow:
    first_full_hour = math.floor(since / UPLOAD_COUNT_BUCKET_SECONDS) + 1
    return UsageWindow(since, first_full_hour, first_full_hour * UPLOAD_COUNT_BUCKET_SECONDS)


def usage_query(sender: str, since: str, first_full_hour: str, boundary_end: str) -> str:
    """The query :func:`usage_from_row` reads, with a backend's placeholders for the
    sender and the :class:`UsageWindow`: bytes from the triggers' running total
    (``sender_bytes``); uploads since from the triggers' hourly counts
    (``sender_uploads``) and the rows of the window's first, partial hour (tombstones hold
    no bytes but still count as uploads), so a check reads a bounded number of rows
    however many uploads the sender made. Only placeholders go in, never values."""
    in_boundary = f"sender = {sender} AND created_at >= {since} AND created_at < {boundary_end}"
    return (
        f"SELECT (SELECT bytes_held FROM sender_bytes WHERE sender = {sender}) AS held,"  # noqa: S608
        f" (SELECT COALESCE(SUM(uploads), 0) FROM sender_uploads"
        f"  WHERE sender = {sender} AND hour >= {first_full_hour})"
        f" + (SELECT COUNT(*) FROM transfers WHERE {in_boundary}) AS transfers,"
        f" (SELECT MIN(created_at) FROM transfers"
        f"  WHERE sender = {sender} AND created_at >= {since}) AS oldest_transfer,"
        f" (SELECT COUNT(*) FROM tombstones WHERE {in_boundary}) AS tombstones,"
        f" (SELECT MIN(created_at) FROM tombstones"
        f"  WHERE sender = {sender} AND created_at >= {since}) AS oldest_tombstone"
    )


def usage_from_row(row: Row) -> Usage:
    """A sender's usage from a row of ``held`` (None: no row, nothing held), the counts
    ``transfers`` and ``tombstones`` of uploads in the window and their oldest times
    ``oldest_transfer`` and ``oldest_tombstone`` (None when there are none)."""
    oldest = [t for t in (row["oldest_transfer"], row["oldest_tombstone"]) if t is not None]
    return Usage(
        bytes_held=int(row["held"] or 0),
        uploads_since=int(row["transfers"]) + int(row["tombstones"]),
        oldest_since=min(oldest, default=None),
    )
