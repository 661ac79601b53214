"""With a daemon running, ``graph``, ``affected`` and ``exec`` take tree digests from its
index (sync consistency) and answer exactly as without one (issue 23, item 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ci_repo import PACKAGES, Agent, make_mono, write

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import Factory  # noqa: E402
from test_ci_exec import exec_task  # noqa: E402

pytest_plugins = ["daemon_harness"]


def graph(agent: Agent) -> dict[str, dict[str, object]]:
    answer = json.loads(agent.freshd("graph", "--json").stdout)
    return {p["name"]: p for p in answer["packages"]}


def digests(found: dict[str, dict[str, object]]) -> dict[str, tuple[object, object]]:
    return {n: (p["tree"], p["closure"]) for n, p in found.items()}


def test_the_index_gives_the_same_answers_as_hashing(
    tmp_path: Path, freshd_factory: Factory
) -> None:
    root = make_mono(tmp_path / "mono")
    daemon = freshd_factory(root)
    with_daemon = Agent(root, tmp_path / "pd", daemon.env)
    without = Agent(root, tmp_path / "ph")
    served, hashed = graph(with_daemon), graph(without)
    assert {p["digests_from"] for p in served.values()} == {"daemon"}
    assert {p["digests_from"] for p in hashed.values()} == {"hashed"}
    assert digests(served) == digests(hashed)

    # an edit made just before the question is seen (sync): never an old digest
    write(root / "libs/util/src/util/__init__.py", "from core import VALUE  # edited\n")
    served, hashed = graph(with_daemon), graph(without)
    assert digests(served) == digests(hashed)
    assert served["util"]["digests_from"] == "daemon"


def test_exec_with_a_daemon_replays_what_an_agent_without_one_ran(
    tmp_path: Path, freshd_factory: Factory
) -> None:
    a = make_mono(tmp_path / "a" / "mono")
    b = tmp_path / "b" / "checkout"
    shutil.copytree(a, b)
    store = tmp_path / "store"
    exec_task(Agent(a, tmp_path / "pa"), store)
    daemon = freshd_factory(b)
    agent_b = Agent(b, tmp_path / "pb", daemon.env)
    done = exec_task(agent_b, store)
    assert agent_b.statuses(done.stderr) == dict.fromkeys(PACKAGES, "replayed")
    write(b / "apps/web/src/web/__init__.py", "import util  # edited\n")
    done = exec_task(agent_b, store)
    expected = {n: "ran" if n == "web" else "replayed" for n in PACKAGES}
    assert agent_b.statuses(done.stderr) == expected
