"""The collector's own metrics, on ``http://<host>:<collector_metrics_port>/metrics`` (0: not served).

Its own registry, so a collector running inside another process (tests) never mixes with that
process's metrics. Names: docs/collector.md.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.wal_samples = Gauge("pycemaker_collector_wal_samples", "Samples in the write-ahead file, not yet stored in the database.", registry=r)
        self.wal_bytes = Gauge("pycemaker_collector_wal_bytes", "Size of the write-ahead file in bytes.", registry=r)
        self.wal_max_bytes = Gauge("pycemaker_collector_wal_max_bytes", "The write-ahead file's bound (collector_spill_max_bytes).", registry=r)
        self.wal_full = Gauge(
            "pycemaker_collector_wal_full",
            "1 while the write-ahead file is at its bound and drops its oldest samples (until the database stores them all).",
            registry=r,
        )
        self.wal_dropped = Counter(
            "pycemaker_collector_wal_dropped_samples",
            "Samples dropped from the full write-ahead file (backfilled from Prometheus once the database answers).",
            registry=r,
        )
        self.database_up = Gauge("pycemaker_collector_database_up", "1 when the last write to the database succeeded.", registry=r)
        self.last_tick = Gauge("pycemaker_collector_last_tick_timestamp_seconds", "Grid time of the last tick (Unix seconds).", registry=r)
        self.samples = Counter("pycemaker_collector_samples", "Samples collected by live ticks.", registry=r)
        # Labelled by service: the configured targets (or the default service), so the label set is bounded.
        self.service_samples = Counter(
            "pycemaker_collector_service_samples", "Samples collected by live ticks, per service.", ["service"], registry=r
        )
        self.service_missing = Gauge(
            "pycemaker_collector_service_missing_streams",
            "Streams of the service with no data at the last tick (its target not scraped, or a query failing).",
            ["service"],
            registry=r,
        )

    def serve(self, port: int, host: str) -> None:
        """Serve ``/metrics`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
        log.info("collector metrics on http://%s:%d/metrics", host, port)


__all__ = ["CollectorMetrics"]
