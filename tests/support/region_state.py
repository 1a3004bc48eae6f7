"""What a test cluster's region holds on disk and in its metadata, read from outside its process.

Also: setting a cluster's ``[limits]`` before it starts, and waiting for a condition.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from support.cluster import Cluster

# Generous request rates, so tests that poll hard never meet a 429 they did not ask for.
UNTHROTTLED: Mapping[str, int] = {
    "requests_per_minute_per_ip": 1_000_000,
    "requests_per_minute_per_user": 1_000_000,
}


def set_limits(cluster: Cluster, **limits: object) -> None:
    """Add keys to the ``[limits]`` table of a cluster that has not started yet."""
    text = cluster.config_path.read_text()
    assert "[limits]\n" in text
    lines = "".join(f"{key} = {value}\n" for key, value in limits.items())
    cluster.config_path.write_text(text.replace("[limits]\n", "[limits]\n" + lines, 1))


def set_storage_path(cluster: Cluster, region: str, path: Path) -> None:
    """Point a region of a cluster that has not started yet at another storage folder."""
    text = cluster.config_path.read_text()
    old = f'storage = {{ kind = "local", path = "{region}/blobs" }}'
    assert text.count(old) == 1
    cluster.config_path.write_text(
        text.replace(old, f'storage = {{ kind = "local", path = "{path}" }}')
    )


def storage_root(cluster: Cluster, region: str) -> Path:
    """The region's storage folder, as the cluster's configuration names it."""
    config = tomllib.loads(cluster.config_path.read_text())
    for table in config["regions"]:
        if table["name"] == region:
            path = Path(str(table["storage"]["path"]))
            return cluster.root / path  # an absolute path stays itself
    raise KeyError(region)


def file_path(cluster: Cluster, region: str, file_id: str) -> Path:
    """Where a region's storage unit keeps a committed file (storage/localfs.py)."""
    token = file_id.partition(".")[2]
    return storage_root(cluster, region) / "files" / region / token[:2] / file_id


def upload_path(cluster: Cluster, region: str, upload_id: str) -> Path:
    """Where a region's storage unit keeps an unfinished upload."""
    return storage_root(cluster, region) / "uploads" / upload_id


def metadata_rows(cluster: Cluster, region: str, table: str, row_id: str) -> list[dict[str, Any]]:
    """The rows of ``table`` with id ``row_id`` in a region's metadata, read-only."""
    assert table in ("transfers", "tombstones")
    path = cluster.root / region / "metadata.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchall()  # noqa: S608 - table checked above
        return [dict(row) for row in rows]
    finally:
        db.close()


def holdings(cluster: Cluster, sender: str, region: str = "north") -> tuple[frozenset[str], int]:
    """Every upload area and file a region stores, and how many transfers ``sender`` has there."""
    blobs = storage_root(cluster, region)
    stored = frozenset(str(p.relative_to(blobs)) for p in blobs.rglob(f"{region}.*"))
    database = cluster.root / region / "metadata.sqlite3"
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        query = "SELECT COUNT(*) FROM transfers WHERE sender = ?"
        (rows,) = db.execute(query, (sender,)).fetchone()
    finally:
        db.close()
    return stored, int(rows)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], seconds: float, what: str, step: float = 0.05
) -> float:
    """Wait until ``condition`` holds; returns how long it took.

    Raises:
        AssertionError: it did not hold within ``seconds``.
    """
    started = time.monotonic()
    while not await condition():
        waited = time.monotonic() - started
        assert waited < seconds, f"{what}: not within {seconds} s"
        await asyncio.sleep(step)
    return time.monotonic() - started
