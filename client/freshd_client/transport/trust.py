"""Whom freshd believes: only what the user's own account controls (docs/security.md).

An installer that believes "fresh" skips a reinstall, so whoever can answer in the
daemon's place can make a user run old or foreign code. Each check here keeps other
local users out of one path to that answer:

- ``private_dir``: the socket's directory is the effective user's, mode 0700, not a
  symlink; checked through a descriptor opened with ``O_NOFOLLOW``, so what is checked
  is what was opened, not what the path named a moment earlier;
- ``peer_uid`` / ``check_daemon``: the user at the other end of a Unix socket, as the
  kernel recorded it when the connection was made (``SO_PEERCRED``; ``LOCAL_PEERCRED``
  on macOS and the BSDs); the client believes only a daemon of its own user, and the
  daemon serves only its own user;
- ``index_dir``: an index directory is read or written only when it is the user's and
  nobody else can write to it;
- ``read_private``: a secret (the TCP token) is read only from a regular file of the
  user's that nobody else can read, never through a symlink.

Root and the user's own processes are trusted: they can read the index, trace the
daemon or replace the code anyway.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from freshd_client.errors import (
    UnsafePathError,
    UntrustedDaemonError,
    UntrustedIndexError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms at start-up)
if TYPE_CHECKING:
    from typing import Protocol

    class SockoptSocket(Protocol):
        """What the checks need of a socket: ``socket.socket``, or the socket object an
        asyncio transport hands out (``get_extra_info("socket")``)."""

        def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


PRIVATE_DIR_MODE = 0o700
_UCRED = "iII"
"""Linux ``struct ucred``: pid_t pid, uid_t uid, gid_t gid."""
_XUCRED_HEAD = "II"
"""The head of BSD/macOS ``struct xucred``: u_int cr_version (0), uid_t cr_uid."""
_LOCAL_PEERCRED = {"darwin": 1, "freebsd": 1, "dragonfly": 1}
"""``LOCAL_PEERCRED`` from <sys/un.h>, for the Pythons whose socket module does not name it."""
_XUCRED_BUFFER = 128  # larger than any xucred (76 bytes on macOS, 84 on FreeBSD)
_ELSEWHERE = "choose another socket directory with XDG_RUNTIME_DIR, FRESHD_SOCKET or --socket"


def who(uid: int) -> str:
    """``uid 1001 (mallory)``, or ``uid 1001`` when the account has no name."""
    import pwd  # deferred: only error messages name accounts

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


# -- the socket's directory --------------------------------------------------------------


def private_dir(path: str, *, create: bool = False) -> tuple[int, int]:
    """Check that ``path`` is a directory of the effective user with mode 0700 and not a
    symlink (with ``create``, make it so when it is missing); its (st_dev, st_ino).

    No exception for sticky directories: in one, another user can still bind a socket
    of her own. Raises UnsafePathError naming the path, its owner, its mode and what
    to do.
    """
    created = create and _make_dir(path)
    try:
        seen = os.lstat(path)
    except OSError as exc:
        raise UnsafePathError(f"cannot use socket directory {path}: {_reason(exc)}") from None
    if stat.S_ISLNK(seen.st_mode):
        raise UnsafePathError(
            f"socket directory {path} is a symlink owned by {who(seen.st_uid)}, not a "
            f"directory: whoever controls its target could answer in your daemon's place; "
            f"remove it, or {_ELSEWHERE}"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # ENOTDIR; ELOOP when it became a symlink since the lstat
        raise UnsafePathError(
            f"cannot use socket directory {path}: {_reason(exc)}; {_ELSEWHERE}"
        ) from None
    try:
        st = os.fstat(fd)
        euid = os.geteuid()
        if created and st.st_uid == euid and stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
            os.fchmod(fd, PRIVATE_DIR_MODE)  # the umask narrowed it; the descriptor, not the path
            st = os.fstat(fd)
    finally:
        os.close(fd)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != euid or mode != PRIVATE_DIR_MODE:
        todo = (
            f"it is not yours: have its owner or root remove it, or {_ELSEWHERE}"
            if st.st_uid != euid
            else "make it private (chmod 700)"
        )
        raise UnsafePathError(
            f"socket directory {path} is owned by {who(st.st_uid)} with mode {mode:04o}; "
            f"it must be yours ({who(euid)}) with mode 0700, or another user could answer "
            f"in your daemon's place: {todo}"
        )
    return st.st_dev, st.st_ino


def _make_dir(path: str) -> bool:
    """Create ``path`` (mode 0700; its parents as the umask says); False if it exists."""
    parent = os.path.dirname(path)
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        return False  # checked as found: whoever made it
    except OSError as exc:
        raise UnsafePathError(
            f"cannot create socket directory {path}: {_reason(exc)}; {_ELSEWHERE}"
        ) from None
    return True


# -- the user at the other end -------------------------------------------------------------


def peer_uid(sock: SockoptSocket) -> int | None:
    """The effective uid of the process that made the other end of the connected Unix
    socket ``sock``, as the kernel recorded it then; None where the system cannot tell.
    Raises OSError when the call fails."""
    import socket  # deferred (~9 ms): readers of the index alone never need it
    import struct

    if hasattr(socket, "SO_PEERCRED"):  # Linux
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(_UCRED))
        return int(struct.unpack(_UCRED, raw)[1])
    option = getattr(
        socket, "LOCAL_PEERCRED", _LOCAL_PEERCRED.get(sys.platform.rstrip("0123456789"))
    )
    if option is not None:  # macOS, FreeBSD, DragonFly
        level = getattr(socket, "SOL_LOCAL", 0)
        raw = sock.getsockopt(level, option, _XUCRED_BUFFER)
        version, uid = struct.unpack_from(_XUCRED_HEAD, raw)
        return int(uid) if version == 0 else None
    return None


def check_daemon(sock: SockoptSocket, address: str) -> None:
    """Raise UntrustedDaemonError unless the process serving ``address`` (connected as
    ``sock``) runs as the effective user: another user's answers are never believed."""
    try:
        uid = peer_uid(sock)
    except OSError as exc:
        raise UntrustedDaemonError(
            f"cannot tell which user serves {address} ({_reason(exc)}): "
            "its answers are not believed"
        ) from None
    if uid is None:
        raise UntrustedDaemonError(
            f"this system cannot tell which user serves {address}: its answers are not believed"
        )
    euid = os.geteuid()
    if uid != euid:
        raise UntrustedDaemonError(
            f"the process serving {address} runs as {who(uid)}, not as you ({who(euid)}): "
            "its answers are not believed (another user may have planted the socket; "
            "see docs/security.md)"
        )


# -- the index and its files ---------------------------------------------------------------


def index_dir(path: str) -> None:
    """Raise UntrustedIndexError unless the index directory at ``path`` (if it exists)
    belongs to the effective user and nobody else can write to it: an index another
    user can write could claim anything is fresh."""
    try:
        st = os.stat(path)
    except OSError:
        return  # missing or unreachable: opening it says so
    euid = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != euid:
        raise UntrustedIndexError(
            f"index directory {path} is owned by {who(st.st_uid)} with mode {mode:04o}, "
            f"not by you ({who(euid)}): its records could claim anything is fresh; use "
            "your own index (FRESHD_HOME, FRESHD_INDEX or --db)"
        )
    if mode & 0o022:
        raise UntrustedIndexError(
            f"index directory {path} has mode {mode:04o}: other users can write to it and "
            "could plant records claiming anything is fresh; make it private (chmod 700)"
        )


def read_private(path: str, what: str) -> str:
    """The text of ``path`` (``what`` names it in errors), read only when it is a
    regular file of the effective user that nobody else can read or write, opened
    without following a symlink. Raises UnsafePathError, or OSError when it cannot be
    opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{what} {path} is a symlink: it is never followed (its target could be "
                "anyone's); remove it"
            ) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        problem = unsafe_file(st)
        if problem:
            raise UnsafePathError(f"{what} {path} {problem}")
        return fh.read(64 * 1024).decode("utf-8", "replace")


def unsafe_file(st: os.stat_result) -> str | None:
    """Why a file with status ``st`` is not private to the effective user (as the rest
    of a sentence), or None when it is: a regular file of the user's, mode 0600 or
    narrower."""
    euid = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != euid:
        return f"is owned by {who(st.st_uid)}, not by you ({who(euid)}): remove it"
    if mode & 0o077:
        return (
            f"has mode {mode:04o}: other users may have read it; remove it (freshd serve "
            "makes a new one)"
        )
    return None


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
