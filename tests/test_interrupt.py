"""Ctrl-C stops ``freshd index``, ``digest``, ``stamp`` and ``check`` at once (issue 21).

Real ``freshd`` subprocesses on generated trees big enough to take seconds; SIGINT is
sent once progress is seen (index records written, bytes read), to the process alone or
to its whole process group as a terminal does. Each must exit 130 with at most one line
on stderr and leave what it writes consistent: every record in the index is the
from-scratch digest of its package, and the next run works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from freshd_client.content.oneshot import digest_path
from freshd_client.spec import schema as sc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from gentree import generate

FRESHD = Path(sys.executable).parent / "freshd"
SIGNAL_DEADLINE_S = 60.0  # for progress to show; generous: the machine is shared
GONE_DEADLINE_S = 3.0  # a hang detector, not a speed claim (bench/bench_interrupt.py)
READ_BEFORE_SIGNAL = 20 << 20  # bytes read: well past the imports (~3 MB)
IMPORTING = 256 << 10  # bytes read by a new worker: its interpreter is up, importing
SITE = "lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def mono(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 packages, 40,000 files, ~400 MB: `freshd index` takes seconds."""
    root = tmp_path_factory.mktemp("interrupt") / "mono"
    generate(str(root), packages=200, files_per_package=200, mean_size=10_000)
    return root


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One package of ~200 MB in 2,000 files: one-shot hashing takes a second or more."""
    root = tmp_path_factory.mktemp("interrupt-one") / "one"
    generate(str(root), packages=1, files_per_package=2000, mean_size=100_000)
    return root / "packages" / "pkg_000"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No daemon: every answer is computed here."""
    home = tmp_path / "no-home"
    yield {
        **{k: v for k, v in os.environ.items() if not k.startswith("FRESHD_")},
        "FRESHD_HOME": str(home),
        "FRESHD_SOCKET": str(home / "freshd.sock"),
    }


def _start(argv: list[str | Path], env: dict[str, str]) -> subprocess.Popen[str]:
    # Its own session: a process group to signal as a terminal does, this one spared.
    return subprocess.Popen(
        [str(FRESHD), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _wait_for(proc: subprocess.Popen[str], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SIGNAL_DEADLINE_S
    while not condition():
        assert proc.poll() is None, f"{what}: the command ended first ({proc.returncode})"
        assert time.monotonic() < deadline, f"no progress seen: {what}"
        time.sleep(0.002)


def _interrupt(proc: subprocess.Popen[str], *, group: bool) -> tuple[float, str]:
    """SIGINT to ``proc`` (or its group); seconds until it is gone, and its stderr."""
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=GONE_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still running {GONE_DEADLINE_S} s after SIGINT")
    gone = time.monotonic() - sent
    assert proc.returncode == 130, err[-3000:]
    assert len(err.splitlines()) <= 1, err[-3000:]
    assert "Traceback" not in err
    assert not _group_alive(proc.pid, time.monotonic() + GONE_DEADLINE_S), "workers outlived it"
    return gone, err


def _group_alive(pgid: int, deadline: float) -> bool:
    """Whether a process of group ``pgid`` is still there at ``deadline``."""
    while True:
        alive = [pid for pid in _pids() if _stat(pid, 4) == pgid]
        if not alive or time.monotonic() > deadline:
            return bool(alive)
        time.sleep(0.01)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int, field: int) -> int | None:
    """Field ``field`` (0-based, after the command name) of /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return int(fields[field - 2]) if fields[0] not in ("Z", "X") else None


def _children(pid: int) -> list[int]:
    return [p for p in _pids() if _stat(p, 3) == pid]


def _read_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))
    except (OSError, StopIteration):
        return 0


def _indexed(db: Path) -> list[sc.PackageRecord]:
    """The package records of the index at ``db`` (none before it exists)."""
    if not (db / "data.mdb").exists():
        return []
    try:
        env = sc.open_env(str(db), readonly=True)
    except Exception:  # created but not initialised yet: no records either
        return []
    try:
        with env.begin() as txn:
            try:
                packages = env.open_db(sc.DB_PACKAGES, txn=txn, create=False)
            except Exception:
                return []
            return [sc.decode_package(v) for _k, v in txn.cursor(db=packages)]
    finally:
        env.close()


def _assert_exact(db: Path) -> int:
    """Every record of the index is its package's from-scratch digest; how many."""
    records = _indexed(db)
    for record in records:
        assert record.state == "clean", record
        assert record.tree == digest_path(record.path, "tree").tree, record.path
    return len(records)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["process", "group"])
def test_index_stops_at_once_and_leaves_a_consistent_index(
    mono: Path, tmp_path: Path, env: dict[str, str], group: bool
) -> None:
    db = tmp_path / "db"
    proc = _start(["index", mono, "--db", db, "--workers", "2"], env)
    _wait_for(proc, lambda: len(_indexed(db)) > 0, "index records written")
    _interrupt(proc, group=group)
    partial = _assert_exact(db)
    assert 0 < partial < 200  # stopped midway: what it wrote is correct
    again = subprocess.run(
        [FRESHD, "index", mono, "--db", db, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["packages"] == 200
    assert _assert_exact(db) == 200


@pytest.mark.slow
def test_ctrl_c_while_the_workers_start_prints_no_traceback(
    mono: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """The terminal signals the whole group: workers still importing what they need
    used to print a KeyboardInterrupt traceback each."""
    proc = _start(["index", mono, "--db", tmp_path / "db", "--workers", "2"], env)
    _wait_for(
        proc,
        lambda: any(_read_bytes(c) > IMPORTING for c in _children(proc.pid)),
        "a worker importing",
    )
    _interrupt(proc, group=True)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["process", "group"])
def test_digest_stops_at_once(big: Path, env: dict[str, str], group: bool) -> None:
    proc = _start(["digest", big], env)
    _wait_for(proc, lambda: _read_bytes(proc.pid) > READ_BEFORE_SIGNAL, "bytes hashed")
    _interrupt(proc, group=group)


def _venv(base: Path, source: Path) -> Path:
    """A venv with ``source`` recorded as installed (PEP 610 ``direct_url.json``)."""
    dist_info = base / "venv" / SITE / "pkg_000-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (base / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-000\nVersion: 0.1\n")
    (dist_info / "RECORD").write_text("pkg_000-0.1.dist-info/METADATA,,\n")
    url = {"url": source.as_uri(), "dir_info": {}}
    (dist_info / "direct_url.json").write_text(json.dumps(url))
    return base / "venv"


def _freshd(env: dict[str, str], *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRESHD, *map(str, argv)], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.mark.slow
def test_stamp_stops_at_once_and_writes_nothing_half_done(
    big: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    venv = _venv(tmp_path, big)
    proc = _start(["stamp", "--venv", venv], env)
    _wait_for(proc, lambda: _read_bytes(proc.pid) > READ_BEFORE_SIGNAL, "bytes hashed")
    _interrupt(proc, group=True)
    assert not (venv / ".freshd" / "stamps.json").exists()
    assert _freshd(env, "stamp", "--venv", venv).returncode == 0
    checked = _freshd(env, "check", "--venv", venv)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_check_stops_at_once_and_the_next_check_answers(
    big: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    venv = _venv(tmp_path, big)
    assert _freshd(env, "stamp", "--venv", venv).returncode == 0
    for path in big.rglob("*"):  # same content, new stat identities: check must rehash
        if path.is_file() and not path.is_symlink():
            os.utime(path)
    proc = _start(["check", "--venv", venv], env)
    _wait_for(proc, lambda: _read_bytes(proc.pid) > READ_BEFORE_SIGNAL, "bytes hashed")
    _interrupt(proc, group=True)
    checked = _freshd(env, "check", "--venv", venv)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("fresh")
