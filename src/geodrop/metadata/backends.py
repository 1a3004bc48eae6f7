"""Opening the metadata store a configuration names."""

from __future__ import annotations

from geodrop.config import MetadataConfig, PostgresMetadataConfig, SqliteMetadataConfig
from geodrop.metadata.base import InboxStore, TransferStore
from geodrop.metadata.postgres_inbox import PostgresInboxStore
from geodrop.metadata.postgres_transfers import PostgresTransferStore
from geodrop.metadata.sqlite import SqliteInboxStore, SqliteTransferStore


def open_transfer_store(config: MetadataConfig) -> TransferStore:
    """A region's transfers in the configured backend; it connects on first use."""
    if isinstance(config, SqliteMetadataConfig):
        return SqliteTransferStore(config.path)
    if isinstance(config, PostgresMetadataConfig):
        return PostgresTransferStore(config.dsn, pool_size=config.pool_size)
    raise NotImplementedError(f"metadata kind {config.kind!r}")


def open_inbox_store(config: MetadataConfig) -> InboxStore:
    """The directory's inboxes in the configured backend; it connects on first use."""
    if isinstance(config, SqliteMetadataConfig):
        return SqliteInboxStore(config.path)
    if isinstance(config, PostgresMetadataConfig):
        return PostgresInboxStore(config.dsn, pool_size=config.pool_size)
    raise NotImplementedError(f"metadata kind {config.kind!r}")
