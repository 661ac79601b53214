"""``freshd status`` says what a running daemon is doing (issue 21, item 7): how each
root is followed and why not, and the daemon's recent warnings and errors, in the
plain output and in ``--json``. Real daemons, real files, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import DEADLINE, FRESHD, Daemon, Factory, make_package, wait_until  # noqa: E402

pytest_plugins = ["daemon_harness"]


def status(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRESHD, "status", *args], env=daemon.env, capture_output=True, text=True, timeout=DEADLINE
    )


def test_a_root_gone_is_shown_with_its_reason_and_the_warning(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    kept = make_package(tmp_path / "kept", "alpha").parent.resolve()
    gone = make_package(tmp_path / "gone", "beta").parent.resolve()
    daemon = freshd_factory(kept, gone)
    before = json.loads(status(daemon, "--json").stdout)
    assert before["status"] == "ready" and before["recent"] == [], before

    shutil.rmtree(gone)  # for real: the daemon finds out by itself
    health = wait_until(
        lambda: (h := daemon.health())["watch"][str(gone)] == "missing" and h["recent"] and h,
        "the root found missing",
    )
    answer = status(daemon, "--json")
    assert answer.returncode == 0, answer
    shown = json.loads(answer.stdout)
    assert shown["status"] == "degraded"
    assert shown["watch"] == {str(kept): "watching", str(gone): "missing"}
    assert shown["reasons"] == {str(gone): "the directory was deleted or moved away"}
    warning = f"root {gone} disappeared; waiting for it to come back"
    assert [(r["level"], r["message"]) for r in shown["recent"]] == [("WARNING", warning)]
    assert shown["recent"][0]["time"].endswith("Z")
    assert health["recent"] == shown["recent"]

    plain = status(daemon)
    assert plain.returncode == 0, plain
    lines = plain.stdout.splitlines()
    assert lines[0].startswith("degraded  pid ")
    at = lines.index(f"roots     {gone} (missing: the directory was deleted or moved away)")
    assert lines[at + 1] == f"          {kept} (watching)"  # sorted: gone < kept
    recent = [line for line in lines if line.startswith("recent    ")]
    assert recent == [f"recent    {shown['recent'][0]['time']} WARNING {warning}"]


def test_status_socket_prints_the_path_with_or_without_a_daemon(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHD_", "XDG_"))}
    env["TMPDIR"] = str(tmp_path)
    no_runtime = subprocess.run(
        [FRESHD, "status", "--socket"], env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert no_runtime.returncode == 0, no_runtime
    assert no_runtime.stdout == f"{tmp_path}/freshd-{os.getuid()}/freshd.sock\n"
    runtime = subprocess.run(
        [FRESHD, "status", "--socket", "--json"],
        env={**env, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert json.loads(runtime.stdout) == {"socket": f"{tmp_path}/run/freshd/freshd.sock"}


def test_status_socket_finds_the_running_daemon(freshd_factory: Factory, tmp_path: Path) -> None:
    daemon = freshd_factory(make_package(tmp_path / "root", "alpha").parent)
    printed = status(daemon, "--socket").stdout.strip()
    assert printed == daemon.socket
    curl = shutil.which("curl")
    assert curl, "the README's curl line needs curl"
    answer = subprocess.run(
        [curl, "-s", "--unix-socket", printed, "http://freshd/v1/health"],
        capture_output=True,
        timeout=DEADLINE,
    )
    assert answer.returncode == 0 and json.loads(answer.stdout)["pid"] == daemon.pid
