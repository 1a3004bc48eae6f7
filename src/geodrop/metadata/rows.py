"""Rows of either SQL backend (SQLite, PostgreSQL) as metadata objects.

Both schemas keep the same columns under the same names; ``tus_metadata`` is JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
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


def usage_query(sender: str, since: str) -> str:
    """The query :func:`usage_from_row` reads, with a backend's placeholders for the
    sender and the window's start: bytes from the triggers' running total
    (``sender_bytes``), uploads since from the sender indexes alone (tombstones hold no
    bytes but still count as uploads). Only placeholders go in, never values."""
    return (
        f"SELECT (SELECT bytes_held FROM sender_bytes WHERE sender = {sender}) AS held,"  # noqa: S608
        f" (SELECT COUNT(*) FROM transfers"
        f"  WHERE sender = {sender} AND created_at >= {since}) AS transfers,"
        f" (SELECT MIN(created_at) FROM transfers"
        f"  WHERE sender = {sender} AND created_at >= {since}) AS oldest_transfer,"
        f" (SELECT COUNT(*) FROM tombstones"
        f"  WHERE sender = {sender} AND created_at >= {since}) AS tombstones,"
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
