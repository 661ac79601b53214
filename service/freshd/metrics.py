"""Prometheus metrics of one daemon (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric the daemon exports; one instance per daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "freshd_events", "File-system events received from the watcher", registry=r
        )
        self.overflows = Counter(
            "freshd_overflows", "Times the kernel's event queue overflowed", registry=r
        )
        self.rescans = Counter("freshd_rescans", "Packages rescanned after events", registry=r)
        self.rehashed_files = Counter(
            "freshd_rehashed_files",
            "Files hashed again (not reused by the stat fast path)",
            registry=r,
        )
        self.rehashed_bytes = Counter("freshd_rehashed_bytes", "Bytes hashed", registry=r)
        self.queue_depth = Gauge(
            "freshd_queue_depth", "Events and commands waiting for the engine", registry=r
        )
        self.dirty = Gauge("freshd_dirty_packages", "Packages waiting to be rehashed", registry=r)
        self.packages = Gauge("freshd_packages", "Packages in the index", registry=r)
        self.index_bytes = Gauge("freshd_index_bytes", "Size of the LMDB data file", registry=r)
        # route: a declared route's path, or "other"; never the path a client sent, which
        # would let it add series without bound.
        self.queries = Counter(
            "freshd_queries",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "freshd_query_seconds",
            "HTTP request latency, by route",
            ["route"],
            buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0, 5.0),
            registry=r,
        )
        self.sync_seconds = Histogram(
            "freshd_sync_seconds",
            "Time from writing a cookie to seeing it processed",
            buckets=(2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0, 5.0),
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
