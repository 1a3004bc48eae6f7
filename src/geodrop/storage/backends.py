"""Opening the storage unit a region's configuration names."""

from __future__ import annotations

from geodrop.config import LocalStorageConfig, S3StorageConfig, StorageConfig
from geodrop.storage.base import BlobStore
from geodrop.storage.localfs import LocalBlobStore
from geodrop.storage.s3 import S3BlobStore


def open_blob_store(config: StorageConfig) -> BlobStore:
    """The backend for ``config``; it connects on first use, so this never blocks."""
    if isinstance(config, LocalStorageConfig):
        return LocalBlobStore(config.path)
    if isinstance(config, S3StorageConfig):
        return S3BlobStore(config)
    raise NotImplementedError(f"storage kind {config.kind!r}")
