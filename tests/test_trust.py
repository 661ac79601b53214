"""Trust boundaries (issue 18, docs/security.md): only the user's own daemon is believed,
and the index stays the user's own.

The hostile cases use two real accounts made for this module (``useradd``, removed
afterwards): ``victim`` runs freshd, ``mallory`` plants directories, sockets and
indexes; each runs through ``setpriv``, since root passes every permission check that
matters here. Without root or the account tools those cases are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DEMO_FILES, make_tree

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    FRESHD,
    Factory,
    make_package,
    oracle,
    start_prefixed,
    wait_until,
    write,
)
from freshd_client.errors import (  # noqa: E402
    UnsafePathError,
    UntrustedDaemonError,
    UntrustedIndexError,
)
from freshd_client.transport import trust  # noqa: E402
from freshd_client.transport.direct import DirectTransport  # noqa: E402
from freshd_client.transport.http import HttpTransport  # noqa: E402
from test_venv import fake_venv, install  # noqa: E402

pytest_plugins = ["daemon_harness"]

PYTHON = sys.executable
_LOCKED = "lock"  # useradd/userdel when another process holds /etc/passwd's lock


# -- two accounts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A real account of this machine, and how to run a command as it."""

    name: str
    uid: int
    gid: int

    @property
    def prefix(self) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]

    def who(self) -> str:
        return f"uid {self.uid} ({self.name})"

    def run(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )

    def python(self, code: str, *args: str, env: dict[str, str]) -> str:
        """Run ``code`` in this account's Python; its stdout (it must exit 0)."""
        proc = self.run([PYTHON, "-c", code, *args], env)
        assert proc.returncode == 0, proc
        return proc.stdout

    def chown(self, *paths: Path) -> None:
        """Give ``paths`` and everything below them to this account."""
        for path in paths:
            for dirpath, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(dirpath, name), self.uid, self.gid)
            os.lchown(path, self.uid, self.gid)


def _account_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """useradd/userdel, retried while another process (another test run) holds the lock."""
    deadline = time.monotonic() + DEADLINE
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE, check=False)
        if proc.returncode == 0 or _LOCKED not in proc.stderr or time.monotonic() > deadline:
            return proc
        time.sleep(0.05)  # a poll period while the lock is held elsewhere


def _useradd(name: str) -> Account:
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    made = _account_tool(
        ["useradd", "--system", "--no-create-home", "--user-group", "--shell", shell, name]
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a test account with useradd: {made.stderr.strip()}")
    import pwd

    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="module")
def accounts() -> Iterator[tuple[Account, Account]]:
    """(victim, mallory): two accounts made for this module, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating the two test accounts (useradd) needs root")
    missing = [tool for tool in ("useradd", "userdel", "setpriv") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: cannot create or switch to a second account")
    made: list[Account] = []
    try:
        for role in ("victim", "mallory"):
            made.append(_useradd(f"fd{role}{os.getpid()}"))
        yield made[0], made[1]
    finally:
        for account in made:
            removed = _account_tool(["userdel", account.name])
            assert removed.returncode == 0, removed.stderr


@pytest.fixture
def victim(accounts: tuple[Account, Account]) -> Account:
    return accounts[0]


@pytest.fixture
def mallory(accounts: tuple[Account, Account]) -> Account:
    return accounts[1]


@pytest.fixture
def base() -> Iterator[Path]:
    """A shared directory like /tmp (mode 1777, root's): the default socket's parent when it
    is $TMPDIR. Short, for the 108-byte limit of socket paths."""
    path = Path(tempfile.mkdtemp(prefix="fdt"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def user_env(base: Path, **extra: str) -> dict[str, str]:
    """An account's environment: no FRESHD_* or XDG_RUNTIME_DIR, so defaults apply, with
    ``$TMPDIR`` = ``base`` (where the default socket directory is then made)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRESHD_", "XDG_", "VIRTUAL_ENV", "PYTEST"))
    }
    env.update(TMPDIR=str(base), HOME=str(base / "nohome"), **extra)
    return env


def owned_dir(account: Account, path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    os.chown(path, account.uid, account.gid)
    return path


def default_socket_dir(base: Path, account: Account) -> Path:
    """Where ``account``'s freshd puts its socket when only $TMPDIR is set."""
    return base / f"freshd-{account.uid}"


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- mallory's planted daemon -------------------------------------------------------------------

LIAR = """
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler


class Liar(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("freshd-api", "1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer({"status": "ready", "api_version": 1, "version": "0.1.0", "pid": os.getpid(),
                     "roots": [], "packages": 1, "files": 1, "pending": 0})

    def do_POST(self):
        items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["items"]
        fresh = [{"path": i["path"], "fresh": True, "state": "clean", "digest": i["digest"]}
                 for i in items]
        self.answer({"results": fresh, "synced": True})


class Server(socketserver.UnixStreamServer):
    def get_request(self):
        return self.socket.accept()[0], ("planted", 0)


os.umask(0)
server = Server(sys.argv[1], Liar)
print("listening", flush=True)
server.serve_forever()
"""
"""A daemon that answers "fresh" to everything: what another user would plant."""


@pytest.fixture
def plant(base: Path, mallory: Account) -> Iterator[object]:
    """``plant(path)``: mallory's liar listens at ``path`` (stopped after the test)."""
    running: list[subprocess.Popen[str]] = []

    def start(path: Path) -> None:
        proc = subprocess.Popen(
            [*mallory.prefix, PYTHON, "-c", LIAR, str(path)],
            env=user_env(base),
            stdout=subprocess.PIPE,
            text=True,
        )
        running.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "listening\n"

    try:
        yield start
    finally:
        for proc in running:
            proc.kill()
            proc.wait(DEADLINE)
            if proc.stdout is not None:
                proc.stdout.close()


ASK = """
import sys
from freshd_client import Client, FreshdError
try:
    with Client(transport="http") as c:
        print("answer", c.is_fresh(sys.argv[1], sys.argv[2]))
except FreshdError as exc:
    print(type(exc).__name__, exc)
"""
"""The victim's program asking its freshd (the default socket) about one digest."""


@dataclass
class Installed:
    """The victim's package, installed and stamped in a venv, then edited."""

    pkg: Path
    venv: Path
    old_tree: str


@pytest.fixture
def installed(base: Path, victim: Account) -> Installed:
    """A venv of the victim's with the demo package stamped, then one file of the package
    changed: only a stale verdict is true."""
    home = owned_dir(victim, base / "victim")
    pkg = make_tree(home / "demo", DEMO_FILES)
    venv = fake_venv(home / "venv")
    install(venv, pkg)
    victim.chown(home)
    # --force: the chown above changed ctimes after the install
    stamped = victim.run([FRESHD, "stamp", "--venv", str(venv), "--force"], user_env(base))
    assert stamped.returncode == 0, stamped
    old_tree = oracle(pkg).tree
    write(pkg / "src/demo/core.py", "def answer():\n    return 'changed'\n")
    return Installed(pkg, venv, old_tree)


def assert_checked_one_shot(victim: Account, base: Path, installed: Installed) -> None:
    """``freshd check`` and the client never take the planted answer: stale, by hashing."""
    env = user_env(base)
    checked = victim.run([FRESHD, "check", "--venv", str(installed.venv)], env)
    assert checked.returncode == 1, checked  # 1: some stale, named
    assert checked.stdout.startswith("stale"), checked.stdout
    assert "one-shot" in checked.stdout and "daemon" not in checked.stdout, checked.stdout
    ran = victim.run(
        [FRESHD, "run", "--venv", str(installed.venv), "--sync-cmd", "true", "--", "env"], env
    )
    assert "UV_NO_SYNC=1" not in ran.stdout, ran  # never told uv that stale code is fresh


# -- the socket directory -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o755], ids=["sticky", "world-writable", "hers"])
def test_a_socket_directory_another_user_made_is_refused(
    base: Path, victim: Account, mallory: Account, plant: object, installed: Installed, mode: int
) -> None:
    """Mallory makes the victim's default socket directory first (sticky and world-
    writable, or just hers) and serves in it: the victim's daemon refuses to start there,
    and the victim's clients refuse mallory's daemon."""
    planted_dir = owned_dir(mallory, default_socket_dir(base, victim), mode)
    planted = planted_dir / "freshd.sock"
    plant(planted)  # type: ignore[operator]
    env = user_env(base)

    serve = victim.run([FRESHD, "serve", str(installed.pkg), "--db", str(base / "vdb")], env)
    line = one_error_line(serve)
    assert f"socket directory {planted_dir} is owned by {mallory.who()}" in line, line
    assert f"mode {mode:04o}" in line and "0700" in line and "it is not yours" in line, line
    assert stat.S_ISSOCK(os.lstat(planted).st_mode)  # not the victim's to remove

    status = victim.run([FRESHD, "status"], env)
    line = one_error_line(status)
    assert f"{planted} runs as {mallory.who()}, not as you ({victim.who()})" in line, line
    asked = victim.python(ASK, str(installed.pkg), installed.old_tree, env=env)
    assert asked.startswith("UntrustedDaemonError ") and asked.count("\n") == 1, asked
    assert_checked_one_shot(victim, base, installed)


def test_a_symlinked_socket_directory_is_refused(
    base: Path, victim: Account, mallory: Account, plant: object, installed: Installed
) -> None:
    theirs = owned_dir(mallory, base / "mallory-run", 0o755)
    plant(theirs / "freshd.sock")  # type: ignore[operator]
    link = default_socket_dir(base, victim)
    link.symlink_to(theirs)
    os.lchown(link, mallory.uid, mallory.gid)
    env = user_env(base)

    serve = victim.run([FRESHD, "serve", str(installed.pkg), "--db", str(base / "vdb")], env)
    line = one_error_line(serve)
    assert f"socket directory {link} is a symlink owned by {mallory.who()}" in line, line
    status = victim.run([FRESHD, "status"], env)
    assert f"runs as {mallory.who()}" in one_error_line(status)
    assert_checked_one_shot(victim, base, installed)


def test_a_planted_socket_is_never_believed(
    base: Path, victim: Account, mallory: Account, plant: object, installed: Installed
) -> None:
    """No daemon of the victim's own runs; FRESHD_SOCKET names mallory's socket."""
    planted = owned_dir(mallory, base / "mallory-run", 0o755) / "freshd.sock"
    plant(planted)  # type: ignore[operator]
    env = user_env(base, FRESHD_SOCKET=str(planted))
    asked = victim.python(ASK, str(installed.pkg), installed.old_tree, env=env)
    assert asked == (
        f"UntrustedDaemonError the process serving {planted} runs as {mallory.who()}, not as "
        f"you ({victim.who()}): its answers are not believed (another user may have planted "
        "the socket; see docs/security.md)\n"
    )
    checked = victim.run([FRESHD, "check", "--venv", str(installed.venv)], env)
    assert checked.returncode == 1 and "one-shot" in checked.stdout, checked


def test_the_socket_directory_is_made_private(base: Path, victim: Account) -> None:
    """Missing, the default socket directory is made by the daemon: the victim's, 0700."""
    root = owned_dir(victim, base / "victim")
    pkg = make_package(root, "core")
    victim.chown(root)
    argv = [FRESHD, "serve", str(pkg), "--db", str(root / "db"), "--workers", "1"]
    proc = subprocess.Popen(
        [*victim.prefix, *argv], env=user_env(base), stderr=subprocess.PIPE, text=True
    )
    try:
        sock = default_socket_dir(base, victim) / "freshd.sock"
        wait_until(lambda: sock.exists() or proc.poll() is not None, "the victim's socket")
        st = os.stat(sock.parent)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (victim.uid, 0o700)
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_own_socket_directory_refusals(tmp_path: Path) -> None:
    """The checks that need no second account: a symlink, a file, a mode wider than 0700."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafePathError, match=r"is a symlink owned by uid 0"):
        trust.private_dir(str(link))
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafePathError, match="not a directory"):
        trust.private_dir(str(tmp_path / "file"))
    real.chmod(0o1700)
    with pytest.raises(UnsafePathError, match=r"mode 1700.*make it private \(chmod 700\)"):
        trust.private_dir(str(real))
    made = tmp_path / "made" / "freshd"
    trust.private_dir(str(made), create=True)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700


# -- peer credentials ---------------------------------------------------------------------------


def test_a_client_of_another_user_is_refused(
    base: Path, victim: Account, mallory: Account, freshd_factory: Factory
) -> None:
    """The victim's daemon serves the victim (and root, named by --allow-uid for this
    test's harness). Mallory cannot reach its socket; when the victim widens the
    socket's modes by mistake, the daemon itself refuses her, and her client refuses it."""
    home = owned_dir(victim, base / "victim")
    make_package(home / "src", "core")
    victim.chown(home)
    daemon = start_prefixed(
        freshd_factory, victim.prefix, home, [home / "src"], ["--workers", "1", "--allow-uid", "0"]
    )
    env = user_env(base, FRESHD_SOCKET=daemon.socket)
    raw_request = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.settimeout({DEADLINE})\n"
        "try:\n    s.connect(sys.argv[1])\n"
        "except OSError as exc:\n    print('connect:', exc.strerror)\n    sys.exit()\n"
        "s.sendall(b'GET /v1/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while chunk := s.recv(65536):\n    data += chunk\n"
        "print(data.decode())\n"
    )
    assert mallory.python(raw_request, daemon.socket, env=env) == "connect: Permission denied\n"

    os.chmod(os.path.dirname(daemon.socket), 0o711)  # noqa: S103 - the victim's mistake
    os.chmod(daemon.socket, 0o666)  # noqa: S103
    answer = mallory.python(raw_request, daemon.socket, env=env)
    head, _, body = answer.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/1.1 403 "), answer
    assert '"code": "forbidden_user"' in body, answer
    assert f"serves {victim.who()} only" in body and f"runs as {mallory.who()}" in body, body
    status = mallory.run([FRESHD, "status"], env)
    line = one_error_line(status)
    assert f"runs as {victim.who()}, not as you ({mallory.who()})" in line, line
    assert f"refused a connection on the Unix socket: it runs as {mallory.who()}" in daemon.log()
    ours = victim.run([FRESHD, "status", "--json"], env)
    assert ours.returncode == 0 and '"ready"' in ours.stdout, ours
    assert daemon.health()["status"] == "ready"  # root: named by --allow-uid


def test_peer_uid_is_the_connecting_process_user() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert trust.peer_uid(left) == os.geteuid()
        trust.check_daemon(left, "socketpair")


class _FakeSocket:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.asked: tuple[int, int, int] | None = None

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes:
        self.asked = (level, optname, buflen)
        return self.raw


def test_peer_uid_on_macos_and_the_bsds(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCAL_PEERCRED's struct xucred where SO_PEERCRED is missing; None elsewhere, which
    no answer is believed on."""
    monkeypatch.delattr(socket, "SO_PEERCRED")
    monkeypatch.setattr(socket, "LOCAL_PEERCRED", 1, raising=False)
    xucred = struct.pack("IIh2x16I", 0, 501, 1, *([20] * 16))
    fake = _FakeSocket(xucred)
    assert trust.peer_uid(fake) == 501
    assert fake.asked is not None and fake.asked[:2] == (0, 1)
    assert trust.peer_uid(_FakeSocket(struct.pack("II", 7, 501))) is None  # unknown version
    monkeypatch.delattr(socket, "LOCAL_PEERCRED")
    monkeypatch.setattr(sys, "platform", "darwin")  # a socket module that does not name it
    assert trust.peer_uid(fake) == 501
    monkeypatch.setattr(sys, "platform", "sunos5")
    assert trust.peer_uid(fake) is None
    with pytest.raises(UntrustedDaemonError, match="cannot tell which user serves x"):
        trust.check_daemon(fake, "x")


# -- the index --------------------------------------------------------------------------------


def test_an_index_of_another_user_is_refused(base: Path, victim: Account, mallory: Account) -> None:
    theirs = owned_dir(mallory, base / "mallory")
    make_package(theirs / "src", "core")
    mallory.chown(theirs)
    index = [FRESHD, "index", str(theirs / "src"), "--db", str(theirs / "db"), "--workers", "1"]
    made = mallory.run(index, user_env(base))
    assert made.returncode == 0, made
    for path in [theirs / "db", *(theirs / "db").iterdir()]:  # readable: only the owner differs
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = user_env(base, FRESHD_INDEX=str(theirs / "db"), FRESHD_SOCKET=str(base / "none.sock"))
    read = (
        "from freshd_client import Client, FreshdError\n"
        "try:\n"
        "    Client(transport='direct').open()\n"
        "except FreshdError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    answer = victim.python(read, env=env)
    assert answer.startswith(
        f"UntrustedIndexError index directory {theirs / 'db'} is owned by {mallory.who()} "
        f"with mode 0755, not by you ({victim.who()})"
    ), answer
    victims = owned_dir(victim, base / "victim")
    pkg = make_package(victims, "app")
    victim.chown(victims)
    for argv in (["serve", str(pkg)], ["index", str(pkg)]):
        line = one_error_line(victim.run([FRESHD, *argv, "--db", str(theirs / "db")], env))
        assert f"index directory {theirs / 'db'} is owned by {mallory.who()}" in line, line


def test_an_index_others_can_write_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "db"
    made = subprocess.run(
        [FRESHD, "index", str(make_package(tmp_path, "core")), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert made.returncode == 0, made
    db.chmod(0o777)
    with pytest.raises(UntrustedIndexError, match=r"has mode 0777: other users can write"):
        DirectTransport(str(db))


def test_every_file_of_the_index_is_private(tmp_path: Path) -> None:
    """Made 0700 / 0600; an index left wider by an older freshd is narrowed by its writer."""
    pkg = make_package(tmp_path, "core")
    db = tmp_path / "db"

    def index() -> None:
        done = subprocess.run(
            [FRESHD, "index", str(pkg), "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert done.returncode == 0, done

    def modes() -> dict[str, int]:
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [db, *db.iterdir()]}

    index()
    assert {"data.mdb", "lock.mdb", "freshd.lock"} <= set(modes()), modes()
    assert set(modes().values()) == {0o700, 0o600} and modes()["db"] == 0o700, modes()
    for path in [db, *db.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    index()
    assert modes() == {name: 0o700 if name == "db" else 0o600 for name in modes()}, modes()


# -- the token --------------------------------------------------------------------------------


def test_a_symlinked_token_is_refused(freshd_factory: Factory, tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "src", "core")
    db = tmp_path / "db"
    db.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "token"
    target.write_text("t" * 43 + "\n")  # someone else's choice of token
    (db / "token").symlink_to(target)
    daemon = freshd_factory(pkg, db=db, args=["--tcp", "127.0.0.1:0"], wait=False)
    assert daemon.proc is not None and daemon.proc.wait(DEADLINE) == 1
    lines = daemon.log().splitlines()
    assert lines == [
        f"Error: token file {db / 'token'} is a symlink: it is never followed (its target "
        "could be anyone's); remove it"
    ], lines
    assert target.read_text() == "t" * 43 + "\n"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FRESHD_INDEX", str(db))
        with pytest.raises(UnsafePathError, match="is a symlink"):
            HttpTransport(tcp="127.0.0.1:9")


def test_a_token_others_could_read_is_replaced(freshd_factory: Factory, tmp_path: Path) -> None:
    """Narrowing its mode would not un-read it: freshd serve makes a new one; a client
    refuses to send it meanwhile."""
    pkg = make_package(tmp_path / "src", "core")
    db = tmp_path / "db"
    db.mkdir(mode=0o700)
    old = "o" * 43
    (db / "token").write_text(old + "\n")
    (db / "token").chmod(0o644)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FRESHD_INDEX", str(db))
        with pytest.raises(UnsafePathError, match=r"has mode 0644: other users may have read it"):
            HttpTransport(tcp="127.0.0.1:9")
    daemon = freshd_factory(pkg, db=db, args=["--tcp", "127.0.0.1:0", "--workers", "1"])
    st = os.lstat(db / "token")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    new = (db / "token").read_text().strip()
    assert len(new) >= 32 and new != old
    assert "had mode 0644 (open to other users): replaced with a new token" in daemon.log()
