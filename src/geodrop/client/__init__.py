"""The async client library: what the CLI, the tests and users' own code share."""

from geodrop.client._client import DEFAULT_RETRIES, Client, ProgressCallback
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
from geodrop.client._parallel import MAX_PARTIALS

__all__ = [
    "DEFAULT_RETRIES",
    "MAX_PARTIALS",
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
