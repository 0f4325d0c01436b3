"""The C library's functions that :mod:`os` lacks (``syncfs``, ``sync_file_range``,
``renameat2``), reached through the process's own symbols, or None where the platform's
C library has no such function."""

from __future__ import annotations

import ctypes

__all__ = ["libc_function"]


def _loaded_libc() -> ctypes.CDLL | None:
    """The C library this process already runs on, reached through the process's own symbols
    (no search of the file system for it), or None where that cannot be done."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # TypeError: a platform without dlopen(NULL)
        return None


_LIBC = _loaded_libc()


def libc_function(name: str, *argtypes: type) -> object | None:
    """The C library's function ``name`` (returning an int, setting errno), or None where
    this platform's C library lacks it."""
    try:
        fn = getattr(_LIBC, name)
    except AttributeError:  # no such function, or no C library
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]
