"""``locations``: a path a user names, and a ``HOST:PORT`` address, read once for all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from freshd.config import parse_tcp
from freshd.errors import ConfigError
from freshd_client.errors import DaemonError, PackagePathError
from freshd_client.transport.http import HttpTransport
from freshd_client.transport.locations import real_path, split_host_port

TOKEN = secrets.token_hex(8)


def test_the_empty_path_names_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PackagePathError, match="an empty path names no directory"):
        real_path("")
    assert real_path(".") == os.path.realpath(tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:7420", ("127.0.0.1", 7420)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:7420", ("::1", 7420)),
        ("::1:7420", ("::1", 7420)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:+80", None),
        ("127.0.0.1: 80", None),
        ("127.0.0.1:٨٠", None),  # digits, but not ASCII ones
        ("127.0.0.1:000000080", None),
        ("127.0.0.1:", None),
        (":80", None),
        ("[]:80", None),
        ("127.0.0.1", None),
        ("", None),
    ],
)
def test_host_port(raw: str, expected: tuple[str, int] | None) -> None:
    assert split_host_port(raw) == expected


@pytest.mark.parametrize("raw", ["127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:٨٠", "[::1]:65536"])
def test_the_server_and_the_client_refuse_the_same_addresses(raw: str) -> None:
    """They read HOST:PORT apart once, and disagreed: ``freshd serve --tcp`` took a
    port that the client refused to connect to."""
    with pytest.raises(DaemonError, match="not a HOST:PORT address"):
        HttpTransport(tcp=raw, token=TOKEN)
    with pytest.raises(ConfigError, match="Expected HOST:PORT"):
        parse_tcp(raw)


def test_the_server_binds_port_0_but_no_client_connects_to_it() -> None:
    assert parse_tcp("[::1]:0") == ("::1", 0)
    with pytest.raises(DaemonError, match="not a HOST:PORT address"):
        HttpTransport(tcp="127.0.0.1:0", token=TOKEN)
