"""Model-based churn against the oracle (issue 5, item 1).

A seeded random driver (``churn_model.Churn``) mutates packages in one watched root.
After each step (one to three operations) the daemon is checked two ways, in a random
order: ``fast`` answers polled until they equal the oracle, never saying fresh for a
digest the content no longer has once a change was visible; and a ``sync`` answer plus
the package list compared exactly with digests recomputed from scratch.

``make test`` runs two fixed seeds; ``make soak`` (``pytest -m soak``, ``--soak-seed``,
``--soak-minutes``) keeps drawing seeds until its time is up. A failure names its seed
and lists every operation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon_harness", "churn_model")
from churn_model import Churn, check_fast, check_sync, soak_seeds  # noqa: E402
from daemon_harness import Factory  # noqa: E402

pytest_plugins = ["daemon_harness"]

SHORT_SEEDS = (20240501, 7)
SHORT_STEPS = 150
SOAK_STEPS = 300


def drive(factory: Factory, seed: int, base: Path, steps: int) -> tuple[int, int]:
    """Run ``steps`` checked steps of seed ``seed``; (operations, changes caught dirty)."""
    churn = Churn(seed, base)
    daemon = factory(churn.root, args=("--workers", "2", "--rescan-seconds", "0.5"))
    caught = 0
    expect = churn.expected()
    with churn.failure("the initial index"):
        check_sync(daemon, churn.root, expect, {})
    for n in range(steps):
        before = expect
        lines = [churn.step() for _ in range(churn.rng.randint(1, 3))]
        churn.log.append("; ".join(lines))
        expect = churn.expected()
        with churn.failure(f"step {n}"):
            if churn.rng.random() < 0.5:
                caught += check_fast(daemon, expect, before, single=len(lines) == 1)
                check_sync(daemon, churn.root, expect, before)
            else:
                check_sync(daemon, churn.root, expect, before)
                check_fast(daemon, expect, before, single=len(lines) == 1)
    daemon.stop()
    return sum(line.count(";") + 1 for line in churn.log), caught


@pytest.mark.parametrize("seed", SHORT_SEEDS)
def test_churn_matches_the_oracle(freshd_factory: Factory, tmp_path: Path, seed: int) -> None:
    operations, _caught = drive(freshd_factory, seed, tmp_path / "churn", SHORT_STEPS)
    assert operations >= SHORT_STEPS


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_churn_soak(
    freshd_factory: Factory,
    tmp_path: Path,
    pytestconfig: pytest.Config,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    seeds, operations, caught = [], 0, 0
    options = pytestconfig.getoption("soak_seed"), pytestconfig.getoption("soak_minutes")
    for seed in soak_seeds(*options):
        done, seen = drive(freshd_factory, seed, tmp_path / f"churn{seed}", SOAK_STEPS)
        seeds.append(seed)
        operations += done
        caught += seen
    report(
        capsys,
        f"churn soak: {operations} operations in {len(seeds) * SOAK_STEPS} checked steps, "
        f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), {caught} changes caught dirty by a "
        f"fast probe, {time.monotonic() - started:.0f} s",
    )


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A line on the terminal (the figures a soak run is for), past output capturing."""
    with capsys.disabled():
        print(f"\n{line}")
