"""Memory that one thread allocates and another fills.

``bytearray(n)`` zeroes its memory, so the thread that creates it touches every page
of it, one fault at a time. :func:`unfilled` only allocates: the bytes are those the
allocator hands out, until a read fills them. The memory comes from the calling
thread's heap (malloc keeps one per thread), so what it frees there later is reused by
that thread, while the pages are faulted in by whichever thread fills them.

That reuse needs the buffers on the heap. glibc maps a large block apart (and unmaps it
when freed, so nothing reuses its memory) until the process has freed one block that
size: its mmap threshold then rises to that size. :func:`heap_up_to` frees one, so a
process's first load keeps its buffers on the heap as every later one does.
"""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["unfilled", "heap_up_to"]

_from_string_and_size: Any
try:  # a prototype of our own: setting restype on ctypes.pythonapi's would change it for everyone
    _from_string_and_size = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)(
        ("PyByteArray_FromStringAndSize", ctypes.pythonapi)
    )
except (AttributeError, OSError):  # an interpreter without the C API
    _from_string_and_size = None


def unfilled(n: int) -> bytearray:
    """A bytearray of ``n`` bytes whose content is not set, for a read to fill at once.
    The caller must never let out a byte that the read did not write."""
    if n < 0:
        raise ValueError(f"negative size {n}")
    if _from_string_and_size is None or n == 0:
        return bytearray(n)
    buf = _from_string_and_size(None, n)
    assert type(buf) is bytearray and len(buf) == n
    return buf


def heap_up_to(n: int) -> None:
    """Let the allocator serve buffers of up to ``n`` bytes (at most 32 MiB, glibc's
    limit) from its heap: allocate one and free it. No page of it is touched; elsewhere
    than glibc this does nothing but that."""
    block = unfilled(n)
    del block
