"""Local files a writer stores: opened, read whole and checked for changes, with
errors that say what is wrong with the file (:class:`LocalFileError`)."""

from __future__ import annotations

import os
import stat as stat_mod

from casstore.exceptions import LocalFileError

__all__ = ["open_local", "is_small", "read_whole", "changed"]


def open_local(path: str) -> tuple[int, os.stat_result]:
    """Open a local file to be stored: its descriptor and status; :class:`LocalFileError`
    saying what is wrong (missing, a directory, not readable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise LocalFileError(f"cannot log {path!r}: no such file") from e
    except IsADirectoryError as e:
        raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file (log directories with log_artifacts)") from e
    except PermissionError as e:
        raise LocalFileError(f"cannot log {path!r}: permission denied") from e
    except OSError as e:
        raise LocalFileError(f"cannot log {path!r}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def is_small(before: os.stat_result, limit: int) -> bool:
    """Whether the file of status ``before`` is a regular file of at most ``limit`` (> 0) bytes."""
    return limit > 0 and stat_mod.S_ISREG(before.st_mode) and before.st_size <= limit


def read_whole(fd: int, path: str, before: os.stat_result) -> bytes:
    """All of a regular file open as ``fd`` (status ``before``); :class:`LocalFileError` if
    it cannot be read or changes while it is read."""
    try:
        data = _read_upto(fd, before.st_size + 1)  # one more byte shows a file that grew
        after = os.fstat(fd)
    except OSError as e:
        raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
    if len(data) != after.st_size or changed(before, after):
        raise LocalFileError(
            f"{path!r} changed while it was being stored (size {before.st_size} -> {after.st_size}); "
            "nothing was recorded. Log it again once it is no longer being written."
        )
    return data


def _read_upto(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from ``fd``: fewer only at its end."""
    data = os.read(fd, n)
    if len(data) in (0, n):
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def changed(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether a file was written to between two ``fstat`` calls."""
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (after.st_size, after.st_mtime_ns, after.st_ctime_ns)
