"""Hard links at scale (issue 21): a uv or pnpm-style cache linked into many packages.

Every file of the generated packages is a hard link to a file under ``cache/``, outside
the watched root, as ``cp -al`` from a cache leaves them. A real daemon must say so in
one line (not one per package), keep those packages unknown (a write through the
cache's name raises no event: never fresh), and not rehash them in a loop.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import Daemon, Factory, oracle, wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from freshd.engine import LINKED_OUT  # noqa: E402
from gentree import generate  # noqa: E402

pytest_plugins = ["daemon_harness"]

PACKAGES = 40
RESCAN_S = 0.2
RESCANS = re.compile(rb"^freshd_rescans_total (\S+)$", re.MULTILINE)


def _rescans(daemon: Daemon) -> float:
    answer = daemon.request("GET", "/metrics")
    assert answer.status == 200, answer
    found = RESCANS.search(answer.raw)
    assert found is not None, answer
    return float(found.group(1))


def _linked_tree(base: Path) -> tuple[Path, Path]:
    """The generated tree (every file linked from ``cache/``) and a package beside them
    whose pyproject.toml is a symlink: rescanned every ``--rescan-seconds`` by design
    (``Tracked.indirect``), it shows that the periodic rescans run."""
    generate(str(base), packages=PACKAGES, files_per_package=20, mean_size=500, hardlinks=True)
    packages = base / "packages"
    indirect = packages / "indirect"
    indirect.mkdir()
    (indirect / "project.toml").write_text('[project]\nname = "indirect"\n')
    (indirect / "pyproject.toml").symlink_to("project.toml")
    return packages, indirect


def test_many_linked_packages_one_warning_unknown_and_no_rehash_loop(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    packages, indirect = _linked_tree(tmp_path / "tree")
    linked = sorted(p for p in packages.iterdir() if p != indirect)
    args = ["--workers", "2", "--rescan-seconds", str(RESCAN_S), "--scrub-seconds", "0"]
    daemon = freshd_factory(packages, args=args)

    warnings = [line for line in daemon.log().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert f"{PACKAGES} package(s) hold hard-linked files" in warnings[0]

    digests = [(p, oracle(p).tree) for p in linked]
    for sync in (False, True):
        for result in daemon.fresh(digests, sync=sync)["results"]:
            assert (result["fresh"], result["state"]) == (None, "dirty"), result
    listed = daemon.packages()
    for path, digest in digests:  # exact digests, and why they are not trusted
        assert (listed[str(path)]["tree"], listed[str(path)]["error"]) == (digest, LINKED_OUT)

    # A window of several periodic rescans, seen through the indirect package's own:
    # the linked packages would add PACKAGES rescans each period if they were rehashed.
    before = _rescans(daemon)
    wait_until(lambda: _rescans(daemon) >= before + 3, "three periodic rescans")
    assert _rescans(daemon) - before < PACKAGES, "the linked packages are rehashed in a loop"


def test_a_write_through_the_cache_name_is_never_answered_fresh(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """The other name is outside every watched root: no event. Answers stay unknown;
    the stat sweep sees the shared inode's new mtime and ctime, and the stored digest
    becomes that of the new content, still never fresh."""
    packages, _indirect = _linked_tree(tmp_path / "tree")
    pkg = packages / "pkg_000"
    args = ["--workers", "2", "--scrub-seconds", "1"]
    daemon = freshd_factory(packages, args=args)
    old = oracle(pkg).tree
    target = pkg / "README.md"
    cache_name = next(p for p in (tmp_path / "tree" / "cache").iterdir() if p.samefile(target))
    with open(cache_name, "ab") as f:  # in place, through the name outside the root
        f.write(b"written through the cache\n")
    new = oracle(pkg).tree
    assert new != old
    for sync in (False, True):
        for result in daemon.fresh([(pkg, old), (pkg, new)], sync=sync)["results"]:
            assert result["fresh"] is None, f"a linked package answered (sync={sync}): {result}"
    wait_until(lambda: daemon.packages()[str(pkg)]["tree"] == new, "the sweep's rehash")
    for result in daemon.fresh([(pkg, old), (pkg, new)], sync=True)["results"]:
        assert (result["fresh"], result["state"]) == (None, "dirty"), result

    # The cache's names of its files removed, outside the root again (no event): the
    # sweep sees the link counts' ctime, and the package is clean and exact.
    for name in (tmp_path / "tree" / "cache").glob("pkg_000-*"):
        name.unlink()
    wait_until(lambda: daemon.packages()[str(pkg)]["state"] == "clean", "clean again")
    (result,) = daemon.fresh([(pkg, oracle(pkg).tree)], sync=True)["results"]
    assert result["fresh"] is True, result
