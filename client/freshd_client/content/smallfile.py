"""Small files: read one without ever blocking on a FIFO or a device; replace one
atomically."""

from __future__ import annotations

import errno
import os
import stat

MAX_BYTES = 16 << 20
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_small(path: str, *, follow: bool = True) -> bytes | None:
    """The content of the regular file at ``path`` (symlinks followed unless ``follow``
    is false), or None.

    None when it is missing or is not a regular file (a FIFO, socket, device or
    directory is never read; with ``follow=False`` neither is a symlink). Other failures
    raise OSError; a file larger than 16 MiB raises OSError(EFBIG).
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, _FLAGS if follow else _FLAGS | _NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        if not follow and exc.errno == errno.ELOOP:
            return None  # a symlink
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > MAX_BYTES:
            raise OSError(27, f"larger than {MAX_BYTES >> 20} MiB", path)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, *, durable: bool = False, mode: int = 0o666) -> None:
    """Replace the file at ``path`` with ``data`` in one step: written to a temporary
    file beside it (created with ``mode``, less the umask), then renamed over it, so a
    reader sees the old content or the new, never part of it. ``durable``: the data
    reaches the disk before the rename, and the rename before the return (a crash or a
    full disk leaves the old file whole). OSError when it cannot be written; the
    temporary file is removed whatever happened (also on Ctrl-C)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    except BaseException:
        import contextlib

        with contextlib.suppress(OSError):  # never made, or already renamed
            os.unlink(tmp)
        raise
