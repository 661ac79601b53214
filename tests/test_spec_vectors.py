"""docs/digest-spec.md's test vectors, checked against freshd and a from-spec implementation."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from freshd_client.content.oneshot import digest_path
from freshd_client.errors import DigestFormatError
from freshd_client.spec import digest as dg
from git_oracle import Git

SPEC = Path(__file__).resolve().parent.parent / "docs" / "digest-spec.md"


def _spec_text() -> str:
    return SPEC.read_text(encoding="utf-8")


def _vectors() -> dict[str, Any]:
    match = re.search(r"```json vectors\n(.*?)```", _spec_text(), re.S)
    assert match, "docs/digest-spec.md lost its vectors block"
    vectors: dict[str, Any] = json.loads(match.group(1))
    return vectors


def reference_digest(entries: list[tuple[bytes, bytes, bytes]], scope: str) -> str:
    """The spec's encoding, written from the document, sharing no code with freshd."""
    out = bytearray(b"freshd-digest\x002\x00" + scope.encode() + b"\x00")
    for path, kind, digest in sorted(entries):
        out += struct.pack("<I", len(path)) + path + kind + digest
    return {"tree": "b3t2:", "meta": "b3m2:"}[scope] + blake3(bytes(out)).hexdigest()


def _reference_package(vector: dict[str, Any], scope: str) -> str:
    """A vector's digest from its listed entries and the spec's encoding alone."""
    files = vector["files"]
    entries = []
    if scope == "tree":
        members = set(vector.get("tree_set", [f["path"] for f in files]))
        for f in files:
            if f["path"] in members:
                entries.append((f["path"].encode(), f["kind"].encode(), _b3(f["content"])))
    elif "meta_entries" in vector:
        for e in vector["meta_entries"]:
            if e["kind"] in ("f", "x"):
                raw = _b3(e["content"])
            elif e["kind"] == "d":
                raw = _b3("not a directory") if e.get("not_dir") else bytes(32)
            elif e["kind"] == "e":
                raw = bytes(32) if e["value"] is None else _b3(e["value"])
            else:
                raw = _b3(e["text"])
            entries.append((e["path"].encode(), e["kind"].encode(), raw))
    else:  # uv's default keys
        for f in files:
            if f["path"] in ("pyproject.toml", "setup.py", "setup.cfg"):
                entries.append((f["path"].encode(), f["kind"].encode(), _b3(f["content"])))
        if any(f["path"].startswith("src/") for f in files):
            entries.append((b"src", b"d", bytes(32)))
    return reference_digest(entries, scope)


def _b3(text: str) -> bytes:
    return blake3(text.encode()).digest()


def _materialize(root: Path, files: list[dict[str, str]]) -> None:
    for f in files:
        target = root / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if f["kind"] == "l":
            os.symlink(f["content"], target)
        else:
            target.write_bytes(f["content"].encode())
            target.chmod(0o755 if f["kind"] == "x" else 0o644)


@pytest.mark.parametrize("name", sorted(_vectors()))
@pytest.mark.parametrize("scope", ["tree", "meta"])
def test_package_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, scope: dg.Scope
) -> None:
    vector = _vectors()[name]
    _materialize(tmp_path, vector["files"])
    monkeypatch.delenv("FRESHD_VECTOR_UNSET", raising=False)
    for key, value in vector.get("env", {}).items():
        monkeypatch.setenv(key, value)
    result = digest_path(str(tmp_path), scope)
    assert (result.tree if scope == "tree" else result.meta) == vector[scope]
    assert _reference_package(vector, scope) == vector[scope]


def test_gitignore_vector_file_set_is_gits(tmp_path: Path) -> None:
    """The ``gitignore`` vector's ``tree_set`` is what the real git keeps."""
    vector = _vectors()["gitignore"]
    _materialize(tmp_path / "t", vector["files"])
    kept = Git(tmp_path / "git").kept(tmp_path / "t")
    assert {p.decode() for p in kept} == set(vector["tree_set"])


def test_encoding_vector_matches_spec() -> None:
    entries = [
        dg.Entry(b"b", dg.KIND_FILE, blake3(b"B").digest()),
        dg.Entry(b"a/x", dg.KIND_EXEC, blake3(b"").digest()),
        dg.Entry(b"src", dg.KIND_DIR, dg.NO_DIGEST),
    ]
    text = _spec_text()
    encoded = re.search(r"encoded hex:\s+([0-9a-f]+)", text)
    assert encoded
    assert dg.encode(entries, "meta").hex() == encoded.group(1)
    expected = re.search(r"digest:\s+(b3m2:[0-9a-f]{64})", text)
    assert expected
    assert dg.package_digest(entries, "meta") == expected.group(1)
    as_tuples = [(e.path, e.kind, e.digest) for e in entries]
    assert reference_digest(as_tuples, "meta") == expected.group(1)
    tree_two = re.search(r"tree scope:\s+(b3t2:[0-9a-f]{64})", text)
    assert tree_two
    assert dg.package_digest(entries[:2], "tree") == tree_two.group(1)
    empty = re.search(r"no entries, tree scope:\s+(b3t2:[0-9a-f]{64})", text)
    assert empty
    assert dg.package_digest([], "tree") == empty.group(1)


def test_scopes_never_collide() -> None:
    entries = [dg.Entry(b"pyproject.toml", dg.KIND_FILE, blake3(b"x").digest())]
    tree, meta = dg.package_digest(entries, "tree"), dg.package_digest(entries, "meta")
    assert tree[5:] != meta[5:]


def test_sorting_is_by_raw_bytes() -> None:
    # "a/b" (0x2f) sorts before "a-b" (0x2d)? No: 0x2d < 0x2f, so "a-b" first; and a
    # non-UTF-8 byte 0xff sorts after every ASCII name.
    raw = [b"a/b", b"a-b", b"\xff", b"Z", b"a"]
    entries = [dg.Entry(p, dg.KIND_FILE, dg.NO_DIGEST) for p in raw]
    assert dg.package_digest(entries, "tree") == reference_digest(
        [(p, b"f", dg.NO_DIGEST) for p in raw], "tree"
    )
    assert dg.encode(entries, "tree").index(b"a-b") < dg.encode(entries, "tree").index(b"a/b")


def test_parse_round_trip_and_rejects_garbage() -> None:
    text = dg.package_digest([], "meta")
    scope, raw = dg.parse(text)
    assert scope == "meta"
    assert dg.format_raw(scope, raw) == text
    for bad in (
        "",
        "b3t2:",
        "b3t2:zz" + "0" * 62,
        "sha1:" + "0" * 64,
        text + "0",
        "b3x2:" + "0" * 64,
        "b3t:" + "0" * 64,
    ):
        with pytest.raises(ValueError, match="not a freshd digest"):
            dg.parse(bad)


@pytest.mark.parametrize("old", ["b3t1:" + "0" * 64, "b3m1:" + "ab" * 32, "b3t3:" + "0" * 64])
def test_a_digest_of_another_format_version_is_refused_not_compared(old: str) -> None:
    with pytest.raises(DigestFormatError, match=f"format {old[3]}.*computes format 2"):
        dg.parse(old)
    assert issubclass(DigestFormatError, ValueError)  # callers that catch ValueError still do


def test_duplicate_paths_are_rejected() -> None:
    entry = dg.Entry(b"a", dg.KIND_FILE, dg.NO_DIGEST)
    with pytest.raises(ValueError, match="duplicate"):
        dg.encode([entry, entry], "tree")
