"""Signed records (``FRESHD_CACHE_KEY``, HMAC-SHA256) and tamper rejection (issue 23, item 5)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from pathlib import Path

import pytest

from ci_repo import PACKAGES, PATHS, Agent, make_mono
from test_ci_exec import exec_task, outputs

KEY = "s3cret-shared-by-trusted-agents"


@pytest.fixture
def agents(tmp_path: Path) -> tuple[Agent, Agent, Path]:
    a = make_mono(tmp_path / "agent-a" / "mono")
    b = tmp_path / "b" / "checkout"
    shutil.copytree(a, b)
    return (
        Agent(a, tmp_path / "pa", {"FRESHD_CACHE_KEY": KEY}),
        Agent(b, tmp_path / "pb", {"FRESHD_CACHE_KEY": KEY}),
        tmp_path / "store",
    )


def records_of(store: Path) -> dict[str, Path]:
    found = {}
    for path in (store / "records" / "build").iterdir():
        found[json.loads(path.read_text())["package"]] = path
    return found


def refused(done_stderr: str) -> list[str]:
    return [line for line in done_stderr.splitlines() if "stored result refused" in line]


def test_signed_records_replay_with_the_same_key(agents: tuple[Agent, Agent, Path]) -> None:
    a, b, store = agents
    exec_task(a, store)
    for path in records_of(store).values():
        record = json.loads(path.read_text())
        sig = record.pop("sig")
        # the signature is HMAC-SHA256 over the canonical JSON of the rest
        body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        assert sig == "hmac-sha256:" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    done = exec_task(b, store)
    assert b.statuses(done.stderr) == dict.fromkeys(PACKAGES, "replayed")


def test_another_key_or_no_signature_is_a_logged_miss(
    tmp_path: Path, agents: tuple[Agent, Agent, Path]
) -> None:
    a, b, store = agents
    exec_task(a, store)
    other = Agent(b.root, tmp_path / "pb", {"FRESHD_CACHE_KEY": "another key"})
    done = exec_task(other, store)
    assert other.statuses(done.stderr) == dict.fromkeys(PACKAGES, "ran")
    assert len(refused(done.stderr)) == 4
    assert all("wrong signature" in line for line in refused(done.stderr))

    # an untrusted agent (no key) writes unsigned records: a keyed agent refuses them
    untrusted = tmp_path / "untrusted-store"
    exec_task(Agent(a.root, tmp_path / "pu"), untrusted)
    done = exec_task(b, untrusted)
    assert b.statuses(done.stderr) == dict.fromkeys(PACKAGES, "ran")
    assert all("unsigned record" in line for line in refused(done.stderr))


def test_a_tampered_record_is_refused(agents: tuple[Agent, Agent, Path]) -> None:
    a, b, store = agents
    exec_task(a, store)
    path = records_of(store)["util"]
    record = json.loads(path.read_text())
    evil = b"#!/bin/sh\necho owned\n"
    sha = hashlib.sha256(evil).hexdigest()
    (store / "blobs" / "sha256" / sha).write_bytes(evil)
    record["outputs"][0]["sha256"] = sha  # the signature no longer matches
    path.write_text(json.dumps(record))
    done = exec_task(b, store)
    assert b.statuses(done.stderr)["util"] == "ran"
    (line,) = refused(done.stderr)
    assert line.endswith(
        "util: stored result refused: wrong signature (tampered, or signed with another key)"
    )
    assert evil not in {data for data, _x in outputs(b.root).values()}


def test_a_tampered_output_is_refused_and_nothing_is_restored(
    agents: tuple[Agent, Agent, Path],
) -> None:
    a, b, store = agents
    exec_task(a, store)
    record = json.loads(records_of(store)["web"].read_text())
    wheel = next(o for o in record["outputs"] if o["path"] == "dist/web.whl")
    blob = store / "blobs" / "sha256" / wheel["sha256"]
    blob.write_bytes(blob.read_bytes() + b"trojan")
    done = exec_task(b, store)
    assert b.statuses(done.stderr)["web"] == "ran"
    assert "does not match its SHA-256" in "\n".join(refused(done.stderr))
    # what B has is what B built, not the tampered blob
    assert (b.root / PATHS["web"] / "dist/web.whl").read_bytes() == (
        a.root / PATHS["web"] / "dist/web.whl"
    ).read_bytes()


def test_the_task_command_is_not_needed_for_a_replay(agents: tuple[Agent, Agent, Path]) -> None:
    a, b, store = agents
    exec_task(a, store)
    done = exec_task(b, store, cmd="exit 9")  # a replay never runs the command
    assert done.returncode == 0
    assert b.statuses(done.stderr) == dict.fromkeys(PACKAGES, "replayed")
    assert done.stdout.count("building ") == 4
