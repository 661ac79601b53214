"""Prometheus metrics of one daemon (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the daemon exports; one instance per daemon.

    The instruments are made at their first use, or by ``load()``: importing
    prometheus_client takes ~30 ms of CPU (it loads http.server and ssl), which the
    daemon's start-up spends once its workers are hashing rather than before."""

    registry: CollectorRegistry
    events: Counter
    overflows: Counter
    rescans: Counter
    rehashed_files: Counter
    rehashed_bytes: Counter
    queue_depth: Gauge
    dirty: Gauge
    packages: Gauge
    linked_out: Gauge
    index_bytes: Gauge
    stale_readers: Gauge
    queries: Counter
    latency: Histogram
    sync_seconds: Histogram

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        """An instrument not made yet: make them all (called only for missing names)."""
        if name.startswith("_"):
            raise AttributeError(name)
        self.load()
        return object.__getattribute__(self, name)

    def load(self) -> None:
        """Make every instrument, once."""
        with self._lock:
            if "registry" not in self.__dict__:
                self._make()

    def _make(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
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
        self.linked_out = Gauge(
            "freshd_linked_out_packages",
            "Packages holding a hard-linked file with a name outside every watched file set "
            "(unknown, never fresh)",
            registry=r,
        )
        self.index_bytes = Gauge("freshd_index_bytes", "Size of the LMDB data file", registry=r)
        self.stale_readers = Gauge(
            "freshd_stale_readers_cleared",
            "LMDB reader slots of dead processes cleared since the daemon started",
            registry=r,
        )
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
        self.registry = r  # last: what load() checks

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
