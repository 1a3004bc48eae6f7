"""The directory's Prometheus metrics: locate latency, region health, heartbeats received."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from geodrop.directory.context import Directory
from geodrop.web.metrics import LATENCY_BUCKETS


class _RegionHealthCollector(Collector):
    """Each region's health as the directory sees it, read when scraped."""

    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "geodrop_region_up",
            "1 while the region's heartbeats arrive within the timeout, else 0.",
            labels=["region"],
        )
        age = GaugeMetricFamily(
            "geodrop_region_heartbeat_age_seconds",
            "Seconds since the region's last heartbeat (since the directory started, if none).",
            labels=["region"],
        )
        for entry in self._directory.health.snapshot():
            region = str(entry["region"])
            up.add_metric([region], 1.0 if self._directory.health.is_alive(region) else 0.0)
            age.add_metric([region], float(entry["seconds_since_heartbeat"]))
        yield up
        yield age


class DirectoryMetrics:
    """The directory's own registry and the figures its handlers record."""

    def __init__(self, directory: Directory) -> None:
        self.registry = CollectorRegistry()
        self.locate_seconds = Histogram(
            "geodrop_locate_seconds",
            "Time to locate a client (address to region, carrier and access URL), by how "
            "it matched: override, geo, fallback, default; unavailable (no region alive) "
            "or error.",
            ["match"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "geodrop_heartbeats_received",
            "Heartbeats accepted from each region's file server.",
            ["region"],
            registry=self.registry,
        )
        for region in directory.config.region_names:
            self.heartbeats.labels(region)
        self.registry.register(_RegionHealthCollector(directory))


DIRECTORY_METRICS: web.AppKey[DirectoryMetrics] = web.AppKey("directory_metrics", DirectoryMetrics)
