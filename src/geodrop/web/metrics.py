"""``GET /metrics`` in the Prometheus text format, from one application's own registry.

Each application keeps its own :class:`~prometheus_client.CollectorRegistry` (never the
process-wide default): tests build several applications in one process, and each
must count only its own requests.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

METRICS_PATH: Final = "/metrics"
# The classic text format (0.0.4): every Prometheus since 2.0 and every agent reads it,
# and geodrop's metric names need none of the newer format's escaping.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
# Latency buckets from 1 ms to 10 s: a negotiation or locate answers in milliseconds,
# unless a database, a peer region or the disk is in trouble.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def metrics_handler(
    registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]] | None = None
) -> Handler:
    """A handler exposing ``registry``; ``refresh`` first updates figures read only on demand."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        if refresh is not None:
            await refresh()
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    return metrics


class Outcome:
    """What a timed operation ended as: ``error`` unless the block sets another label."""

    __slots__ = ("label",)

    def __init__(self) -> None:
        self.label = "error"


class timed:  # noqa: N801 (a context manager named as the function it replaced)
    """Observe the block's duration in ``histogram`` under ``labels`` and its outcome.

    The outcome label is ``error`` unless the block sets ``outcome.label`` before it ends
    (the block knows best what it ended as: a located region's match, ``ok``). A class,
    not a generator: it wraps every locate and negotiation, where contextlib's
    generator machinery cost a tenth of a locate's own work.
    """

    __slots__ = ("_histogram", "_labels", "_outcome", "_started")

    def __init__(self, histogram: Histogram, *labels: str) -> None:
        self._histogram = histogram
        self._labels = labels
        self._outcome = Outcome()
        self._started = 0.0

    def __enter__(self) -> Outcome:
        self._started = time.perf_counter()
        return self._outcome

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self._started
        labels = (*self._labels, self._outcome.label)
        _labelled(self._histogram, labels).observe(elapsed)


# The few label sets a histogram is observed under: finding a child by its labels
# (prometheus_client's ``labels()``, a lock and validation) cost more than observing.
@functools.lru_cache(maxsize=4096)
def _labelled(histogram: Histogram, labels: tuple[str, ...]) -> Histogram:
    return histogram.labels(*labels)
