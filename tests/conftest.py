"""Fixtures shared by the integration and end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from geodrop.config import MIN_S3_PART_SIZE, S3StorageConfig
from support.cluster import Cluster, running_cluster
from support.layouts import EMBEDDED, MIXED, cluster_options, layout_backends
from support.postgres import PostgresServer, running_postgres
from support.seaweedfs import SeaweedFS, running_seaweedfs

# The browser tests' fixtures (browser, browser_pages, screenshot_dir).
pytest_plugins = ["support.browser"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A whole cluster (directory + north, east, south) shared by one test module."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def cluster_root(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (started on first use, stopped at the end)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The ``postgresql://`` URL of a new, empty database of its own for one test."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One real SeaweedFS (S3 on loopback, key required) for the whole test session."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_storage(seaweedfs: SeaweedFS) -> Iterator[S3StorageConfig]:
    """geodrop's storage config for a fresh bucket, with S3's smallest parts (5 MiB)."""
    bucket = seaweedfs.new_bucket()
    yield seaweedfs.storage_config(bucket, part_size=MIN_S3_PART_SIZE)
    seaweedfs.drop_bucket(bucket)


_LAYOUTS = [
    pytest.param(EMBEDDED, id=EMBEDDED),
    pytest.param(MIXED, id=MIXED, marks=[pytest.mark.s3, pytest.mark.postgres]),
]


@pytest.fixture(scope="module", params=_LAYOUTS)
def layout_options(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Cluster options of each layout the end-to-end flow must work in (support/layouts.py).

    Fresh buckets and databases per module; pass to ``running_cluster(root, **options)``
    (a module may start several clusters: each takes the same backing stores, so start
    them one after another).
    """
    with layout_backends(request.param, request) as backends:
        yield cluster_options(request.param, backends)


@pytest.fixture(scope="module")
def layout_cluster(
    layout_options: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A whole cluster in each layout, shared by one test module."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), **layout_options) as running:
        yield running
