"""What operators see of a running test cluster: /metrics, /v1/status, the access log.

:class:`OperatedCluster` is a test cluster with an operator (``directory.operators``)
and, by default, JSON logs; the helpers scrape metrics, read the status as an operator
and parse a process's access-log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster, user_token
from support.region_state import set_limits

OPERATOR: Final = "operator"
JSON_LOGS: Final = '[logging]\nformat = "json"\n'

# A sample: metric name (with its _total, _count… suffix) and its labels, sorted.
Series = tuple[str, tuple[tuple[str, str], ...]]


class OperatedCluster(Cluster):
    """A test cluster whose ``directory.operators`` names :data:`OPERATOR`."""

    def toml(self) -> str:
        operators = f'[directory]\noperators = ["{OPERATOR}"]\n'
        return super().toml().replace("[directory]\n", operators, 1)


def series(name: str, **labels: str) -> Series:
    return name, tuple(sorted(labels.items()))


async def scrape(url: str) -> dict[Series, float]:
    """Every sample of the Prometheus text at ``url`` (a ``/metrics`` URL)."""
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "text/plain", answer.content_type
        text = await answer.text()
    samples: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[series(sample.name, **sample.labels)] = sample.value
    return samples


async def scrape_until(
    url: str, ready: Callable[[dict[Series, float]], bool], within: float = 10.0
) -> dict[Series, float]:
    """Scrape ``url`` until ``ready`` holds of the samples (a server counts a transfer's
    end a moment after the client has the last byte)."""
    deadline = time.monotonic() + within
    while True:
        samples = await scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


def delta(after: dict[Series, float], before: dict[Series, float], key: Series) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def operator_status(cluster: Cluster, user: str = OPERATOR) -> dict[str, Any]:
    """``GET /v1/status`` on the directory as ``user`` (an operator by default)."""
    headers = {"Authorization": f"Bearer {user_token(user)}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(cluster.directory_url + "/v1/status", headers=headers) as answer,
    ):
        assert answer.status == 200, await answer.text()
        body: dict[str, Any] = await answer.json()
    return body


def log_records(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of process ``name`` (``directory``, ``north``…), parsed."""
    records = []
    for line in (cluster.root / f"{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def access_records(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """The access-log lines of process ``name``."""
    return [r for r in log_records(cluster, name) if r.get("logger") == "geodrop.access"]


@contextlib.contextmanager
def running_operated_cluster(
    root: Path, limits: Mapping[str, object] | None = None, **options: Any
) -> Iterator[OperatedCluster]:
    """An :class:`OperatedCluster` with JSON logs (unless ``extra_toml`` says otherwise)
    and more ``[limits]`` keys if given."""
    options.setdefault("extra_toml", JSON_LOGS)
    cluster = OperatedCluster(root, **options)
    set_limits(cluster, **(limits or {}))
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
