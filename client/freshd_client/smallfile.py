"""Read a small configuration file without ever blocking on a FIFO or a device."""

from __future__ import annotations

import os
import stat

MAX_BYTES = 16 << 20
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def read_small(path: str) -> bytes | None:
    """The content of the regular file at ``path`` (symlinks followed), or None.

    None when it is missing or is not a regular file (a FIFO, socket, device or
    directory is never read). Other failures raise OSError; a file larger than
    16 MiB raises OSError(EFBIG).
    """
    try:
        fd = os.open(path, _FLAGS)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
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
