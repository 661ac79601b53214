"""The daemon's and the CLI's settings: argument > ``FRESHD_*`` environment > default."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from freshd.errors import ConfigError
from freshd_client.transport import locations

SCRUB_SECONDS = 120.0
"""Default period of the stat sweep (``freshd.watch.scrub``): every indexed file is compared
with its record at least once in this many seconds; 0 disables it. From
bench/bench_scrub.py: a sweep of 60,000 files costs ~0.36 s of CPU and there are two a
period, 0.6 % of a core at 120 s (1.2 % at 60 s)."""


@dataclass(frozen=True, slots=True)
class Config:
    """Settings resolved once at start-up."""

    index_dir: str
    workers: int
    socket: str = ""
    tcp: tuple[str, int] | None = None
    settle_ms: float = 10.0
    rescan_seconds: float = 5.0
    canary_seconds: float = 1.0  # see Engine._canary: a fast answer is at most 3x this late
    scrub_seconds: float = SCRUB_SECONDS
    allow_uids: frozenset[int] = frozenset()
    """Users besides the daemon's own whose connections on the Unix socket are served."""


def _default_workers(env: Mapping[str, str]) -> int:
    raw = env.get("FRESHD_WORKERS")
    if raw is None:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    return _positive_int("FRESHD_WORKERS", raw)


def _positive_int(key: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(key, raw, "Not an integer.") from None
    if value < 1:
        raise ConfigError(key, raw, "Must be at least 1.")
    return value


def _non_negative_float(key: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(key, raw, "Not a number.") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(key, raw, "Must be a finite number, at least 0.")
    return value


def parse_tcp(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` for ``--tcp``; only loopback addresses are accepted."""
    split = locations.split_host_port(raw)
    if split is None:
        raise ConfigError(
            "--tcp", raw, "Expected HOST:PORT with PORT from 0 to 65535, e.g. 127.0.0.1:7420."
        )
    host, port = split
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("--tcp", raw, "HOST must be a loopback IP address.") from None
    if not address.is_loopback:
        raise ConfigError("--tcp", raw, "Only loopback addresses are allowed (127.0.0.1 or ::1).")
    return str(address), port


def parse_uids(key: str, raw: str) -> frozenset[int]:
    """A comma-separated list of numeric user ids (``--allow-uid 0,1001``)."""
    uids = set()
    for part in raw.split(","):
        if not part.strip().isdigit():
            raise ConfigError(key, raw, "Expected numeric user ids, comma-separated: 0,1001.")
        uids.add(int(part))
    return frozenset(uids)


def load(
    *,
    index_dir: str | None = None,
    workers: int | None = None,
    socket: str | None = None,
    tcp: str | None = None,
    settle_ms: float | None = None,
    rescan_seconds: float | None = None,
    canary_seconds: float | None = None,
    scrub_seconds: float | None = None,
    allow_uids: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from explicit arguments, then the environment, then defaults."""
    env = os.environ if env is None else env
    resolved_dir = index_dir or env.get("FRESHD_INDEX") or locations.index_dir()
    resolved_socket = socket or env.get("FRESHD_SOCKET") or locations.socket_path()
    settle = settle_ms if settle_ms is not None else env.get("FRESHD_SETTLE_MS", 10.0)
    rescan = rescan_seconds if rescan_seconds is not None else env.get("FRESHD_RESCAN_SECONDS", 5.0)
    canary = canary_seconds if canary_seconds is not None else env.get("FRESHD_CANARY_SECONDS", 1.0)
    scrub = (
        scrub_seconds
        if scrub_seconds is not None
        else env.get("FRESHD_SCRUB_SECONDS", SCRUB_SECONDS)
    )
    allowed = allow_uids if allow_uids is not None else env.get("FRESHD_ALLOW_UIDS", "")
    return Config(
        index_dir=os.path.abspath(os.path.expanduser(resolved_dir)),
        workers=_positive_int("--workers", workers)
        if workers is not None
        else _default_workers(env),
        socket=os.path.abspath(os.path.expanduser(resolved_socket)),
        tcp=parse_tcp(tcp) if tcp else None,
        settle_ms=_non_negative_float("--settle-ms", settle),
        rescan_seconds=max(0.1, _non_negative_float("--rescan-seconds", rescan)),
        canary_seconds=max(0.01, _non_negative_float("--canary-seconds", canary)),
        scrub_seconds=_non_negative_float("--scrub-seconds", scrub),
        allow_uids=parse_uids("--allow-uid", allowed) if allowed else frozenset(),
    )
