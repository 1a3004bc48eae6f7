"""The async client library: what the CLI, the tests and users' own code share."""

from geodrop.client._client import Client, ProgressCallback
from geodrop.client._models import (
    Delivery,
    FileStatus,
    InboxEntry,
    InboxPage,
    Location,
    Progress,
    ReceivedFile,
    SentFile,
)

__all__ = [
    "Client",
    "Delivery",
    "FileStatus",
    "InboxEntry",
    "InboxPage",
    "Location",
    "Progress",
    "ProgressCallback",
    "ReceivedFile",
    "SentFile",
]
