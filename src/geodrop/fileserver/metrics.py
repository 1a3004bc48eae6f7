"""A file server's Prometheus metrics: transfers and bytes per link, negotiation latency,
storage free and used.

Byte counters and active transfers are read from the link meters when scraped, so they
are exactly what the meters counted (and what heartbeats and link choice use). They are
this process's own figures: with several access units per region, each counts its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import StrEnum

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from geodrop.errors import GeodropError
from geodrop.fileserver.context import FileServer
from geodrop.storage.base import UNKNOWN_FREE_BYTES
from geodrop.web.metrics import LATENCY_BUCKETS, timed

logger = logging.getLogger(__name__)

LINK_LABELS = ("link", "carrier")


class Direction(StrEnum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


class _LinkCollector(Collector):
    """Bytes, active transfers and byte rate of every link, from the link meters."""

    def __init__(self, server: FileServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "geodrop_link_bytes_sent", "File bytes sent to clients on the link.", labels=LINK_LABELS
        )
        received = CounterMetricFamily(
            "geodrop_link_bytes_received",
            "File bytes received from clients on the link.",
            labels=LINK_LABELS,
        )
        active = GaugeMetricFamily(
            "geodrop_link_active_transfers",
            "Uploads and downloads moving bytes on the link now.",
            labels=LINK_LABELS,
        )
        rate = GaugeMetricFamily(
            "geodrop_link_rate_bytes_per_second",
            "The link's decaying average byte rate, both directions.",
            labels=LINK_LABELS,
        )
        meters = self._server.meters
        for load in meters.own_loads():
            labels = [load.link, meters.config(load.link).carrier]
            sent.add_metric(labels, load.bytes_sent)
            received.add_metric(labels, load.bytes_received)
            active.add_metric(labels, load.active_transfers)
            rate.add_metric(labels, load.rate_bytes_per_second)
        yield from (sent, received, active, rate)


class _StorageCollector(Collector):
    """The region's storage figures, as the last scrape read them (``refresh``).

    A figure the storage unit cannot tell (S3 reports no free space) or could not be
    read has no sample, rather than a made-up number: Prometheus then sees the series
    absent, which ``absent()`` and alerts handle, where a sentinel would pass for a
    real figure.
    """

    def __init__(self) -> None:
        self.free: int | None = None
        self.used: int | None = None

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily(
            "geodrop_storage_free_bytes",
            "Bytes the region's storage unit can still take, as it reports them; no sample "
            "when it cannot tell (an S3 store).",
        )
        if self.free is not None:
            free.add_metric([], self.free)
        used = GaugeMetricFamily(
            "geodrop_storage_used_bytes",
            "Bytes the region's files hold and its unfinished uploads will hold (their "
            "declared sizes), from the region's metadata: every access unit reports the "
            "same figure.",
        )
        if self.used is not None:
            used.add_metric([], self.used)
        yield from (free, used)


class FileServerMetrics:
    """One file server's own registry and the figures its handlers record."""

    def __init__(self, server: FileServer) -> None:
        self._server = server
        self.registry = CollectorRegistry()
        transfer_labels = (*LINK_LABELS, "direction")
        self.started = Counter(
            "geodrop_transfers_started",
            "Requests that began moving file bytes on a link: a tus PATCH or creation "
            "body (upload), a blob GET (download).",
            transfer_labels,
            registry=self.registry,
        )
        self.completed = Counter(
            "geodrop_transfers_completed",
            "Transfers that moved all their bytes.",
            transfer_labels,
            registry=self.registry,
        )
        self.failed = Counter(
            "geodrop_transfers_failed",
            "Transfers that ended early: connection lost, checksum mismatch, too many bytes.",
            transfer_labels,
            registry=self.registry,
        )
        self.negotiation_seconds = Histogram(
            "geodrop_negotiation_seconds",
            "Time to answer an upload or download negotiation, by outcome (ok, refused).",
            ["direction", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._storage = _StorageCollector()
        for link in server.region.links:
            for direction in Direction:
                for counter in (self.started, self.completed, self.failed):
                    counter.labels(link.name, link.carrier, direction)
        self.registry.register(_LinkCollector(server))
        self.registry.register(self._storage)

    async def refresh(self) -> None:
        """Update what is read only when scraped: the storage unit's free bytes, the
        bytes the region stores."""
        storage = self._storage
        try:
            free = await self._server.store.free_bytes()
            storage.free = None if free == UNKNOWN_FREE_BYTES else free
        except (GeodropError, OSError) as exc:
            storage.free = None
            logger.warning("metrics: storage free bytes unavailable: %s", exc)
        try:
            storage.used = await self._server.transfers.bytes_stored()
        except (GeodropError, OSError) as exc:
            storage.used = None
            logger.warning("metrics: storage used bytes unavailable: %s", exc)

    @contextmanager
    def transfer(self, link: str, direction: Direction) -> Iterator[None]:
        """Count one transfer on ``link``: active while the block runs, then done or failed."""
        labels = (link, self._server.meters.config(link).carrier, direction)
        self.started.labels(*labels).inc()
        with self._server.meters.transfer(link):
            try:
                yield
            except BaseException:
                self.failed.labels(*labels).inc()
                raise
        self.completed.labels(*labels).inc()


FILE_SERVER_METRICS: web.AppKey[FileServerMetrics] = web.AppKey(
    "file_server_metrics", FileServerMetrics
)


def metered_transfer(
    request: web.Request, link: str, direction: Direction
) -> AbstractContextManager[None]:
    """:meth:`FileServerMetrics.transfer` of the request's application."""
    return request.app[FILE_SERVER_METRICS].transfer(link, direction)


def timed_negotiation(direction: Direction) -> Callable[[Handler], Handler]:
    """Decorate a negotiation handler: its latency goes to ``geodrop_negotiation_seconds``."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def negotiation(request: web.Request) -> web.StreamResponse:
            histogram = request.app[FILE_SERVER_METRICS].negotiation_seconds
            with timed(histogram, direction) as outcome:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    # The plain-HTTP form answers with a redirect, raised.
                    outcome.label = "ok" if exc.status < 400 else "refused"
                    raise
                except GeodropError:
                    outcome.label = "refused"
                    raise
                outcome.label = "ok"
                return response

        return negotiation

    return decorate
