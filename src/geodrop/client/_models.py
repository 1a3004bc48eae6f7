"""What the client library answers with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Location:
    """Where the directory placed this client."""

    client_ip: str
    region: str
    carrier: str
    match: str
    access_url: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Location:
        return cls(
            str(data["client_ip"]),
            str(data["region"]),
            str(data["carrier"]),
            str(data["match"]),
            str(data["access_url"]),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a transfer is; passed to progress callbacks."""

    phase: str  # "hashing", "upload" or "download"
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class SentFile:
    """A completed upload."""

    file_id: str
    name: str
    size: int
    sha256: str
    region: str
    link: str
    upload_url: str
    resumed_from: int
    # How many partial uploads it was sent as, in parallel (1: one ordinary upload).
    partials: int = 1


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A completed, verified download."""

    file_id: str
    path: Path
    size: int
    sha256: str
    region: str
    link: str
    url: str
    resumed_from: int


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A file waiting for the user."""

    cursor: int
    file_id: str
    sender: str
    name: str
    size: int
    sha256: str
    region: str
    created_at: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboxEntry:
        return cls(
            int(data["cursor"]),
            str(data["file_id"]),
            str(data["sender"]),
            str(data["name"]),
            int(data["size"]),
            str(data["sha256"]),
            str(data["region"]),
            float(data["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class InboxPage:
    entries: tuple[InboxEntry, ...]
    cursor: int


@dataclass(frozen=True, slots=True)
class Delivery:
    user: str
    announced: bool
    received_at: float | None


@dataclass(frozen=True, slots=True)
class FileStatus:
    """Where a sent file stands."""

    file_id: str
    region: str
    name: str
    size: int
    sha256: str | None
    sender: str
    state: str  # "uploading" or "complete"
    offset: int
    expires_at: float
    receivers: tuple[Delivery, ...]

    @property
    def received_by_all(self) -> bool:
        return all(d.received_at is not None for d in self.receivers)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileStatus:
        return cls(
            file_id=str(data["file_id"]),
            region=str(data["region"]),
            name=str(data["name"]),
            size=int(data["size"]),
            sha256=data.get("sha256"),
            sender=str(data["sender"]),
            state=str(data["state"]),
            offset=int(data["offset"]),
            expires_at=float(data["expires_at"]),
            receivers=tuple(
                Delivery(str(d["user"]), bool(d["announced"]), d.get("received_at"))
                for d in data["receivers"]
            ),
        )
