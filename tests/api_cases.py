"""Requests the HTTP API must refuse with a 4xx JSON error.

Shared by tests/test_daemon.py, which sends them to a real daemon, and tests/test_app.py,
which checks the in-process app answers each with its 4xx error body.
"""

from __future__ import annotations

import json
from typing import Any

NO_DIGEST = "b3t2:" + "0" * 64


def fresh_body(**fields: Any) -> bytes:
    """A ``POST /v1/fresh`` body asking about one item: ``fields`` replace its defaults."""
    item = {"path": "/nowhere/pkg", "digest": NO_DIGEST, **fields}
    return json.dumps({"items": [item], "sync": False}).encode()


BAD_REQUESTS: dict[str, tuple[str, str, bytes | None]] = {
    "malformed-json": ("POST", "/v1/fresh", b'{"items": [}'),
    "empty-body": ("POST", "/v1/fresh", b""),
    "not-utf8": ("POST", "/v1/fresh", b'{"items": ["\xff\xfe"]}'),
    "body-is-a-list": ("POST", "/v1/fresh", b"[]"),
    "body-is-null": ("POST", "/v1/fresh", b"null"),
    "items-not-a-list": ("POST", "/v1/fresh", b'{"items": "all"}'),
    "item-not-an-object": ("POST", "/v1/fresh", b'{"items": [3]}'),
    "path-wrong-type": ("POST", "/v1/fresh", fresh_body(path=7)),
    "digest-wrong-type": ("POST", "/v1/fresh", fresh_body(digest=["b3t2:"])),
    "sync-wrong-type": ("POST", "/v1/fresh", b'{"items": [], "sync": [true]}'),
    "timeout-negative": ("POST", "/v1/fresh", b'{"items": [], "timeout_ms": -1}'),
    "timeout-huge": ("POST", "/v1/fresh", b'{"items": [], "timeout_ms": 1e400}'),
    "timeout-string": ("POST", "/v1/fresh", b'{"items": [], "timeout_ms": "soon"}'),
    "unknown-field": ("POST", "/v1/fresh", b'{"items": [], "consistency": "sync"}'),
    "relative-path": ("POST", "/v1/fresh", fresh_body(path="core")),
    "dot-relative-path": ("POST", "/v1/fresh", fresh_body(path="./core")),
    "empty-path": ("POST", "/v1/fresh", fresh_body(path="")),
    "nul-in-path": ("POST", "/v1/fresh", fresh_body(path="/tmp/a\x00b")),
    "path-too-long": ("POST", "/v1/fresh", fresh_body(path="/" + "a" * 5000)),
    "digest-garbage": ("POST", "/v1/fresh", fresh_body(digest="nope")),
    "digest-unknown-algorithm": ("POST", "/v1/fresh", fresh_body(digest="md5:" + "0" * 32)),
    "digest-short": ("POST", "/v1/fresh", fresh_body(digest="b3t2:abcd")),
    "digest-not-hex": ("POST", "/v1/fresh", fresh_body(digest="b3t2:" + "z" * 64)),
    "digest-old-format": ("POST", "/v1/fresh", fresh_body(digest="b3t1:" + "0" * 64)),
    "scope-mismatch": ("POST", "/v1/fresh", fresh_body(scope="meta")),
    "scope-unknown": ("POST", "/v1/fresh", fresh_body(scope="both")),
    "too-many-items": (
        "POST",
        "/v1/fresh",
        json.dumps({"items": [{"path": "/p", "digest": NO_DIGEST}] * 10_001}).encode(),
    ),
    "deeply-nested-json": ("POST", "/v1/fresh", b"[" * 200_000 + b"]" * 200_000),
    "huge-integer": ("POST", "/v1/fresh", b'{"items": [], "timeout_ms": ' + b"9" * 5000 + b"}"),
    "sync-malformed-json": ("POST", "/v1/sync", b'{"paths": ['),
    "sync-empty-body": ("POST", "/v1/sync", b""),
    "sync-body-is-a-list": ("POST", "/v1/sync", b'["/a"]'),
    "sync-paths-not-a-list": ("POST", "/v1/sync", b'{"paths": "/a"}'),
    "sync-path-wrong-type": ("POST", "/v1/sync", b'{"paths": [7]}'),
    "sync-relative-path": ("POST", "/v1/sync", b'{"paths": ["core"]}'),
    "sync-nul-in-path": ("POST", "/v1/sync", b'{"paths": ["/tmp/a\\u0000b"]}'),
    "sync-path-too-long": ("POST", "/v1/sync", json.dumps({"paths": ["/" + "a" * 5000]}).encode()),
    "sync-timeout-negative": ("POST", "/v1/sync", b'{"timeout_ms": -1}'),
    "sync-timeout-fraction": ("POST", "/v1/sync", b'{"timeout_ms": 1.5}'),
    "sync-unknown-field": ("POST", "/v1/sync", b'{"paths": [], "sync": true}'),
    "sync-too-many-paths": ("POST", "/v1/sync", json.dumps({"paths": ["/p"] * 10_001}).encode()),
    "lookup-without-query": ("GET", "/v1/packages/lookup", None),
    "lookup-empty-path": ("GET", "/v1/packages/lookup?path=", None),
    "lookup-path-twice": ("GET", "/v1/packages/lookup?path=core&path=/a", None),
    "lookup-path-too-long": ("GET", "/v1/packages/lookup?path=/" + "a" * 5000, None),
    "lookup-name-too-long": ("GET", "/v1/packages/lookup?name=" + "a" * 300, None),
    "lookup-nul-in-path": ("GET", "/v1/packages/lookup?path=/a%00b", None),
    "lookup-path-and-name": ("GET", "/v1/packages/lookup?path=/a&name=a", None),
    "lookup-relative-path": ("GET", "/v1/packages/lookup?path=core", None),
    "lookup-unknown-name": ("GET", "/v1/packages/lookup?name=no-such-package", None),
    "add-root-relative": ("POST", "/v1/roots", b'{"path": "relative/dir"}'),
    "add-root-missing": ("POST", "/v1/roots", b'{"path": "/no/such/dir/anywhere"}'),
    "add-root-a-file": ("POST", "/v1/roots", b'{"path": "/proc/version"}'),
    "add-root-wrong-type": ("POST", "/v1/roots", b'{"path": 5}'),
    "add-root-malformed": ("POST", "/v1/roots", b'{"path": '),
    "remove-root-unknown": ("DELETE", "/v1/roots?path=/not/a/root", None),
    "remove-root-relative": ("DELETE", "/v1/roots?path=not/a/root", None),
    "remove-root-without-path": ("DELETE", "/v1/roots", None),
    "unknown-route": ("GET", "/v1/nothing-here", None),
    "wrong-method": ("PUT", "/v1/fresh", b"{}"),
}
