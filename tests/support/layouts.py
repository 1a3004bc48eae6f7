"""Cluster layouts the end-to-end tests run in: the embedded default and a scaled-out one.

"mixed" is issue 6's layout: region north on SeaweedFS S3 + PostgreSQL with two
access-unit processes, the directory on PostgreSQL with two processes, regions east and
south on local FS + SQLite (the embedded default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from geodrop.config import MIN_S3_PART_SIZE
from support.cluster import RegionLayout
from support.postgres import PostgresServer
from support.seaweedfs import SeaweedFS

EMBEDDED: Final = "embedded"
MIXED: Final = "mixed"
SCALED_REGION: Final = "north"
SCALED_UNITS: Final = 2


@dataclass
class Backends:
    """The real servers a scaled-out layout needs (started by the session's fixtures)."""

    postgres: PostgresServer
    seaweedfs: SeaweedFS
    _made: list[tuple[str, str]] = field(default_factory=list)

    def s3_table(self) -> str:
        """A storage table for a fresh bucket, with S3's smallest parts (5 MiB)."""
        bucket = self.seaweedfs.new_bucket()
        self._made.append(("bucket", bucket))
        return self.seaweedfs.storage_table(bucket, part_size=MIN_S3_PART_SIZE)

    def postgres_table(self) -> str:
        """A metadata table for a fresh database."""
        dsn = self.postgres.create_database()
        self._made.append(("database", dsn))
        return f'{{ kind = "postgres", dsn = "{dsn}", pool_size = 4 }}'

    def drop(self) -> None:
        for kind, name in self._made:
            with contextlib.suppress(Exception):
                if kind == "bucket":
                    self.seaweedfs.drop_bucket(name)
                else:
                    self.postgres.drop_database(name)
        self._made.clear()


def cluster_options(layout: str, backends: Backends | None) -> dict[str, Any]:
    """Keyword arguments of :class:`support.cluster.Cluster` for ``layout``."""
    if layout == EMBEDDED:
        return {}
    assert backends is not None
    return {
        "layouts": {
            SCALED_REGION: RegionLayout(
                storage=backends.s3_table(),
                metadata=backends.postgres_table(),
                access_units=SCALED_UNITS,
            )
        },
        "directory_metadata": backends.postgres_table(),
        "directory_instances": 2,
    }


@contextlib.contextmanager
def layout_backends(layout: str, request: Any) -> Iterator[Backends | None]:
    """The servers ``layout`` needs, from the session fixtures; what it made is dropped after."""
    if layout == EMBEDDED:
        yield None
        return
    backends = Backends(
        request.getfixturevalue("postgres_server"), request.getfixturevalue("seaweedfs")
    )
    try:
        yield backends
    finally:
        backends.drop()
