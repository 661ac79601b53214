"""The benchmarks keep running: a quick smoke run of each. Their timings are never checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
def test_bench_daemon_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_daemon.py"), "--quick", "--no-watchman"]
    cmd += ["--runs", "1", "--edits", "5", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["watchman"] is None
    freshd = report["freshd"]
    assert freshd["warm"]["own"][0]["hashed"] == 0  # a warm restart reuses every hash
    edit, churn = freshd["edit"], freshd["churn"]
    assert edit["clean_missing"] == edit["clean_wrong_digest"] == 0
    # Correctness, not speed: after the branch switch every digest is the one-shot one.
    assert churn["incorrect"] == 0
    assert churn["fresh_true"] == churn["packages"] == report["fileset"]["packages"]


@pytest.mark.slow
def test_bench_uv_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_uv.py"), "--runs", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    rebuilt = {(r["what"], r["state"]): r["rebuilt"] for r in report["rows"]}
    # What each row measures, not how fast: only plain uv after the round trip rebuilds.
    assert rebuilt == {
        ("uv run", "untouched"): 0,
        ("freshd run -- uv run", "untouched"): 0,
        ("freshd check", "after tar round trip"): 0,
        ("uv run", "after tar round trip"): 1,
        ("freshd run -- uv run", "after tar round trip"): 0,
    }
    assert set(report["goals"]) == {"round_trip_speedup", "untouched_overhead_ms"}


@pytest.mark.slow
def test_bench_load_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_load.py"), "--quick", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    for phase in ("idle", "churn"):
        assert report[phase]["errors"] == 0
        assert report[phase]["queries"] == 2 * 300
    assert report["churn"]["files_written"] > 0
    # Correctness, not speed: after the churn every package is exact.
    assert report["synced"] is True
    assert report["exact_after_churn"] == report["packages"] == 4


@pytest.mark.slow
def test_bench_scrub_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_scrub.py"), "--quick", "--no-daemon", "--runs", "1"]
    proc = subprocess.run(
        [*cmd, "--json"], capture_output=True, text=True, timeout=100, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    sweep = report["sweep"]
    # What it measures, not how fast: every sweep compared every recorded file.
    assert sweep["files"] == 6000
    assert {row["checked"] for row in sweep["periods"].values()} == {6000}


def test_bench_hotpaths(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    made = [sys.executable, str(BENCH / "gentree.py"), str(tree), "--packages", "2"]
    subprocess.run([*made, "--files-per-package", "20"], check=True, capture_output=True)
    cmd = [sys.executable, str(BENCH / "bench_hotpaths.py"), str(tree), "--packages", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4


@pytest.mark.slow
def test_bench_ci_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_ci.py"), "--quick", "--runs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # What it measures, not how fast: every figure is printed (the bench itself checks
    # that agent B reran exactly the changed package and its dependents, and that the
    # daemon's closure digests equal the hashed ones).
    lines = [line for line in proc.stdout.splitlines() if line.rstrip().endswith(" s")]
    assert len(lines) == 9, proc.stdout


@pytest.mark.slow
def test_bench_links_quick() -> None:
    cmd = [sys.executable, str(BENCH / "bench_links.py"), "--quick", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    # What it measures, not how fast: both trees started; the linked one said so in one
    # line and was not rehashed in a loop after ready.
    assert set(report["median_s"]) == {"plain", "hardlinks"}
    linked, plain = report["after_ready"]["hardlinks"], report["after_ready"]["plain"]
    assert (linked["warnings"], plain["warnings"]) == (1, 0)
    assert linked["linked_out_packages"] == report["tree"]["packages"]
    assert linked["rescans_total"] == plain["rescans_total"] == 0


def test_bench_cli_quick() -> None:
    freshd = str(Path(sys.executable).parent / "freshd")
    cmd = [sys.executable, str(BENCH / "bench_cli.py"), "--runs", "1", "--json"]
    proc = subprocess.run(
        [*cmd, "--baseline", freshd], capture_output=True, text=True, timeout=200, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["rows"]
    assert {(r["what"], r["build"]) for r in rows} >= {
        ("freshd status", "this build"),
        ("freshd status", "baseline"),
        ("python -S -c pass", "floor"),
    }
