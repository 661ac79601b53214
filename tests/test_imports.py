"""The heavy-import guard: the client and the client-side CLI verbs stay light.

A ``freshd status`` must start within a few milliseconds of a bare interpreter, and an
installer importing ``freshd_client`` must not pay for the daemon's web stack. Each
check runs in a fresh interpreter and inspects ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

HEAVY = (
    "fastapi",
    "uvicorn",
    "pydantic",
    "watchdog",
    "httpx",
    "starlette",
    "anyio",
    "prometheus_client",
)
"""The daemon's dependencies (and httpx): none may load on the client side."""
DEFERRED = ("lmdb", "blake3", "http.client", "inspect")
"""Loaded only when used: not by ``import freshd_client`` itself."""
FRESHD = str(Path(sys.executable).parent / "freshd")


def loaded_by(code: str, *args: str) -> set[str]:
    """The top-level and dotted module names ``code`` leaves in sys.modules."""
    # sys.modules as ``code`` left it: json is imported only after the snapshot
    probe = code + "\nimport sys\n_seen = sorted(sys.modules)\n"
    probe += "import json\nprint(json.dumps(_seen))\n"
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_import_freshd_client_is_light() -> None:
    modules = loaded_by("import freshd_client")
    assert heavy(modules) == []
    assert sorted(m for m in DEFERRED if m in modules) == []


def test_client_queries_are_light(tmp_path: Path, pkg: Path) -> None:
    index = tmp_path / "index"
    proc = subprocess.run([FRESHD, "index", str(pkg), "--db", str(index)], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    code = textwrap.dedent(
        """
        import sys
        from freshd_client import Client, DaemonNotRunningError
        index, pkg, sock = sys.argv[1:]
        digest = "b3t2:" + "00" * 32
        with Client(index_dir=index, transport="direct", socket_path=sock) as c:
            assert c.is_fresh(pkg, digest) is None  # no daemon record: unknown
            c.check_many([(pkg, digest)])
            c.lookup(pkg)
            c.lookup(name="demo-pkg")
        with Client(index_dir=index, transport="http", socket_path=sock) as c:
            assert c.is_fresh(pkg, digest, consistency="sync") is None
            try:
                c.status()
            except DaemonNotRunningError:
                pass
        """
    )
    modules = loaded_by(code, str(index), str(pkg), str(tmp_path / "none.sock"))
    assert heavy(modules) == []


def test_client_side_cli_verbs_are_light(tmp_path: Path, pkg: Path) -> None:
    sock = str(tmp_path / "none.sock")
    verbs = [
        ["status", "--socket", sock],
        ["status", "--json", "--socket", sock],
        ["ls", "--socket", sock],
        ["add", str(pkg), "--socket", sock],
        ["remove", str(pkg), "--socket", sock],
        ["digest", str(pkg)],
        ["digest", str(pkg), "--scope", "meta", "--json"],
    ]
    code = textwrap.dedent(
        """
        import json, sys
        from freshd.cli import main, verb_parsers
        verbs = json.loads(sys.argv[1])
        commands = verb_parsers()
        if "check" in commands and sys.argv[3] == "with-check":
            verbs.append(["check", "--venv", sys.argv[2]])
        for argv in verbs:
            try:
                main(argv)
            except SystemExit:
                pass
        """
    )
    assert heavy(loaded_by(code, json.dumps(verbs), str(tmp_path), "with-check")) == []
    daemon_verbs = [v for v in verbs if v[0] != "digest"]
    modules = loaded_by(code, json.dumps(daemon_verbs), str(tmp_path), "")
    # the talk-to-the-daemon verbs need neither LMDB nor dataclasses (inspect: ~10 ms)
    assert sorted(m for m in (*DEFERRED, "dataclasses") if m in modules) == []


def test_the_guard_notices_a_heavy_import() -> None:
    assert heavy(loaded_by("import freshd_client, starlette")) == ["starlette"]


def test_freshd_run_is_light(tmp_path: Path, pkg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``freshd run`` starts every container: no heavy module, no logging (unless asked
    for), nor dataclasses on the one-shot scan it runs for a stamped local install
    (typing is loaded: its named tuples, issue 22). The exec is replaced so the probe
    survives."""
    from freshd_client.stamps import stamp
    from test_venv import fake_venv, install

    monkeypatch.setenv("FRESHD_SOCKET", str(tmp_path / "none.sock"))  # no daemon
    venv = fake_venv(tmp_path / "venv")
    install(venv, pkg)
    assert stamp(str(venv))[1] == []
    code = textwrap.dedent(
        """
        import os, sys
        def no_exec(*args):
            raise SystemExit(0)
        os.execvpe = no_exec
        from freshd.cli import main
        try:
            main(["run", "--venv", sys.argv[1], "--", "true"])
        except SystemExit:
            pass
        """
    )
    assert (pkg / ".gitignore").exists()
    modules = loaded_by(code, str(venv))
    assert "freshd_client.scan" in modules  # the probe did hash the package
    assert heavy(modules) == []
    # nor the TOML parser:
    # the stamp's manifest holds the project rules with the digest of the bytes they
    # were parsed from, and the file set, kept while the rule files hold the same bytes
    unwanted = ("lmdb", "dataclasses", "inspect", "tomllib", "logging", "shtab")
    assert sorted(m for m in unwanted if m in modules) == []


def test_an_untouched_freshd_run_reads_no_json(
    tmp_path: Path, pkg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where nothing changed since the last all-fresh check, ``freshd run`` answers from
    the whole-venv verdict: no JSON, no hashing, no scanner."""
    from test_venv import fake_venv, install

    monkeypatch.setenv("FRESHD_SOCKET", str(tmp_path / "none.sock"))  # no daemon
    venv = fake_venv(tmp_path / "venv")
    install(venv, pkg)
    fill = textwrap.dedent(
        """
        import sys
        from freshd_client import identity, quick, stamps
        identity.RACY_WINDOW_NS = 0  # files written just now
        assert stamps.stamp(sys.argv[1])[1] == []
        stamps.verify(sys.argv[1])
        assert quick.load(sys.argv[1]) is not None
        """
    )
    loaded_by(fill, str(venv))
    code = textwrap.dedent(
        """
        import os, sys
        def no_exec(file, argv, env):
            assert not [k for k in env if k.startswith("FRESHD_DIGEST")]  # not a uv venv
            raise SystemExit(0)
        os.execvpe = no_exec
        from freshd.cli import main
        try:
            main(["run", "--venv", sys.argv[1], "--", "true"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        """
    )
    modules = loaded_by(code, str(venv))
    assert "freshd_client.quick" in modules
    # (``re`` is loaded by argparse: one parser, issue 22)
    unwanted = ("json", "blake3", "freshd_client.scan", "freshd_client.verified")
    assert sorted(m for m in unwanted if m in modules) == []


def test_freshd_status_and_ls_stay_light() -> None:
    """``freshd status`` and ``ls`` ask the daemon with the stdlib client alone: no web
    stack, no ``http.client`` (argparse is loaded: one parser, issue 22)."""
    from client_fakes import FakeServer
    from test_client_http import daemon_route

    sock_dir = tempfile.mkdtemp(prefix="fd")  # short: AF_UNIX paths are limited
    server = FakeServer(daemon_route, socket_path=os.path.join(sock_dir, "freshd.sock"))
    try:
        code = textwrap.dedent(
            """
            import io, sys
            from contextlib import redirect_stdout
            from freshd.cli import main
            out = io.StringIO()
            with redirect_stdout(out):
                codes = [main([verb, "--socket", sys.argv[1]]) for verb in ("status", "ls")]
            assert codes == [0, 0], codes
            printed = out.getvalue()
            assert "ready  pid 4242" in printed and "/src/mono/libs/core" in printed, printed
            """
        )
        modules = loaded_by(code, server.address)
    finally:
        server.close()
        os.rmdir(sock_dir)
    assert heavy(modules) == []
    assert "http.client" not in modules


def test_the_daemon_serves_before_loading_fastapi() -> None:
    """A starting daemon answers health from ``freshd.guard``; FastAPI and pydantic
    (~0.3 s) load once the index is ready."""
    modules = loaded_by("import freshd.guard, freshd.queries, uvicorn")
    assert sorted(m for m in modules if m.split(".")[0] in ("fastapi", "pydantic")) == []


def test_the_crawl_starts_before_loading_prometheus_client() -> None:
    """What the daemon imports before its workers have their first jobs (the daemon and
    its engine) leaves prometheus_client (~30 ms) and uvicorn to be loaded afterwards."""
    modules = loaded_by("import freshd.cli, freshd.config, freshd.daemon, freshd.engine")
    assert sorted(m for m in modules if m.split(".")[0] in ("prometheus_client", "uvicorn")) == []


def test_metrics_are_made_once_whichever_thread_uses_them_first() -> None:
    code = textwrap.dedent(
        """
        import threading
        from freshd.metrics import Metrics
        names = ["events", "overflows", "rescans", "rehashed_files", "rehashed_bytes",
                 "queue_depth", "dirty", "packages", "index_bytes", "stale_readers", "queries",
                 "latency", "sync_seconds", "registry"]
        for _round in range(20):
            metrics, seen, start = Metrics(), {}, threading.Barrier(len(names))
            def use(name):
                start.wait()
                seen[name] = getattr(metrics, name)
            threads = [threading.Thread(target=use, args=(n,)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert set(seen) == set(names)
            assert all(v is getattr(metrics, k) for k, v in seen.items())
            metrics.events.inc(3)
            text = metrics.render().decode()
            assert "freshd_events_total 3.0" in text and "freshd_sync_seconds_bucket" in text
        try:
            metrics.no_such_metric
        except AttributeError:
            pass
        else:
            raise AssertionError("an unknown name must raise AttributeError")
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
