"""``freshd serve``: lock the index, bind the sockets, run the engine and the HTTP server.

Start-up order: the hashing processes (forked while nothing else is open), the
writer lock (a second daemon on the same index is refused, naming the first),
then the socket (a stale one left by a killed daemon is replaced, a live one
refused), then the engine (whose crawl watches each directory before it lists
it) and uvicorn. SIGINT/SIGTERM make uvicorn stop
accepting and drain; the engine then finishes its current step, records the
daemon as stopped, and the socket file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from freshd import __version__
from freshd.config import Config
from freshd.engine import Engine
from freshd.errors import DaemonStartError
from freshd.index import Index
from freshd.indexer import make_pool
from freshd.metrics import Metrics
from freshd.recent import RecentLog
from freshd.roots import choose, describe, here
from freshd_client import locations, trust

log = logging.getLogger("freshd")

_GRACEFUL_SECONDS = 3
_HEAD_START_S = 0.25


def serve(cfg: Config, roots: list[str]) -> int:
    """Run the daemon in the foreground until SIGINT/SIGTERM; the exit code. ``roots``
    (canonical): the roots of this run; none: those the index remembers
    (``freshd.roots``)."""
    recent = RecentLog()  # for `freshd status`: what went wrong lately
    logging.getLogger().addHandler(recent)
    _raise_open_files()
    owner = {"command": "freshd serve", "socket": cfg.socket}
    # Until uvicorn takes over, a stop signal is noted and honoured once it runs; after
    # its shutdown uvicorn re-raises the signal under this same no-op handler, so the
    # clean-up below always runs.
    late: dict[str, Any] = {"signals": []}  # the HTTP side, built while the engine crawls

    def noted(signum: int, _frame: object) -> None:
        late["signals"].append(signum)
        if "server" in late:
            late["server"].should_exit = True

    # The hashing processes are forked first, while this process has no thread, index,
    # lock or socket for them to inherit: ready at once, where spawned ones would spend
    # ~80 ms of CPU each importing, beside the start-up below on a small machine.
    pool = make_pool(cfg.workers, fork=True)
    previous = {sig: signal.signal(sig, noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Index(cfg.index_dir, owner=owner) as index, _listening(cfg) as sockets:
            return _run(cfg, roots, index, sockets, late, pool, recent)
    finally:
        logging.getLogger().removeHandler(recent)
        # The engine's, unless it never started (a refused socket, index or token): then
        # its idle workers are waited for, since a pool left running without waiting can
        # race the interpreter's exit (an EBADF traceback from its wake-up pipe).
        pool.shutdown(wait="engine" not in late, cancel_futures=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    cfg: Config,
    roots: list[str],
    index: Index,
    sockets: list[socket.socket],
    late: dict[str, Any],
    pool: Executor,
    recent: RecentLog,
) -> int:
    token = _token(cfg.index_dir) if cfg.tcp else None
    choice = choose(roots, index.roots(), here)
    for line in describe(choice):
        log.info("%s", line)
    metrics = Metrics()

    def publish(kind: str, data: dict[str, Any]) -> None:
        if "ctx" in late:
            late["ctx"].publish(kind, data)

    def fatal() -> None:
        if "server" in late:
            late["server"].should_exit = True  # a daemon that cannot keep the index current

    engine = Engine(
        index, cfg, choice.roots, metrics=metrics, publish=publish, on_fatal=fatal, pool=pool
    )
    engine.start()  # it watches and crawls while uvicorn loads
    late["engine"] = engine
    # Until every worker has its first job, the engine is on the start-up's critical path
    # (discovery, then the watches of the first packages); loading uvicorn beside it,
    # under one interpreter lock, would slow it ~3x. Clients connecting meanwhile wait in
    # the listening socket's backlog.
    engine.scanning.wait(_HEAD_START_S)
    metrics.load()
    import uvicorn

    from freshd.guard import staged_app
    from freshd.peers import own_user_only
    from freshd.queries import Context

    ctx = Context(
        engine=engine, index=index, metrics=metrics, socket=cfg.socket, token=token, recent=recent
    )
    late["ctx"] = ctx
    # Health and the hot routes answer at once; FastAPI (~0.3 s of CPU, which would slow
    # the crawl) is built once the index is ready, or for the first request needing it.
    app = staged_app(ctx)
    threading.Thread(
        target=lambda: engine.ready.wait() and app.prepare(), name="freshd-after-ready", daemon=True
    ).start()
    served = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",  # no route is a WebSocket: do not load the websockets package
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SECONDS,
    )
    served.load()  # resolves the HTTP protocol class, which then checks each peer's user
    served.http_protocol_class = own_user_only(served.http_protocol_class, cfg.allow_uids)
    server = uvicorn.Server(served)
    late["server"] = server
    server.should_exit = bool(late["signals"]) or engine.fatal is not None
    where = cfg.socket + (f" and tcp {_tcp_name(sockets[1])}" if cfg.tcp else "")
    log.info("freshd %s serving %s (index %s)", __version__, where, cfg.index_dir)
    try:
        server.run(sockets=sockets)
    finally:
        ctx.closing = True
        engine.stop()
        log.info("stopped")
    if engine.fatal:
        raise DaemonStartError(engine.fatal)
    return 0


def _raise_open_files() -> None:
    """Raise the soft limit of open files to the hard one (as Watchman does): the index,
    the sockets, the clients and watchdog's inotify descriptor share it, and running out
    leaves a directory unwatched (``Engine._verify_watched`` then names it)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # macOS refuses RLIM_INFINITY: keep the soft one
        log.debug("cannot raise the open files limit from %d to %d: %s", soft, hard, exc)


@contextlib.contextmanager
def _listening(cfg: Config) -> Iterator[list[socket.socket]]:
    sockets = [_unix_socket(cfg.socket)]
    try:
        if cfg.tcp:
            sockets.append(_tcp_socket(*cfg.tcp))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(cfg.socket).st_mode):
                os.unlink(cfg.socket)


def _unix_socket(path: str) -> socket.socket:
    directory = os.path.dirname(path)
    identity = trust.private_dir(directory, create=True)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: never a moment with a wider mode
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise DaemonStartError(f"cannot bind {path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old)
    try:
        os.chmod(path, 0o600)
        st = os.lstat(directory)
    except OSError as exc:
        sock.close()
        raise DaemonStartError(f"cannot use {path}: {exc.strerror or exc}") from exc
    if (st.st_dev, st.st_ino) != identity:  # bound by path: the checked directory must hold it
        sock.close()
        raise DaemonStartError(
            f"socket directory {directory} was replaced while the socket was bound"
        )
    sock.listen(128)
    return sock


def _clear_stale(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse one that still answers."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonStartError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise DaemonStartError(f"cannot check socket {path}: {exc.strerror or exc}") from exc
        log.info("removing stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise DaemonStartError(f"another daemon is serving {path} (stop it first)")


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DaemonStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    return sock


def _tcp_name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _token(index_dir: str) -> str:
    """The bearer token of TCP clients: created once (0600), then reused.

    An existing token that other users can read is replaced, not narrowed: it may have
    been read already. One that is a symlink, another user's or not a regular file is
    refused (docs/security.md).
    """
    path = locations.token_path(index_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
                log.warning(
                    "token file %s had mode %04o (open to other users): replaced with a new "
                    "token; TCP clients read it from the file",
                    path,
                    stat.S_IMODE(st.st_mode),
                )
                os.unlink(path)
                return _token(index_dir)
            token = trust.read_private(path, "token file").strip()
        except OSError as exc:
            raise DaemonStartError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
        if len(token) < 32:
            raise DaemonStartError(
                f"token file {path} is malformed; delete it to make a new one"
            ) from None
        return token
    import secrets  # ~9 ms of start-up (hmac, hashlib's OpenSSL) when not needed

    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token
