"""Files that are either complete or absent: write a temporary file, fsync,
rename over the target. A process killed mid-write leaves at most a *.tmp,
which the next write replaces."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(f) on a temporary file next to `path`, then rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def is_disk_full(e: OSError) -> bool:
    """The write failed for want of space: a full disk, a file too large, a quota."""
    return e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
