"""Reading a local file in place: memory maps, made safe by a read lease.

The object store hashes a file it may hold already through maps (:func:`hash_leased`),
and stores content it lacks from maps under a lease as well
(:class:`FileLease`, used by ``StoringPasses.store_leased``): cut, and hashed by chunk
and whole, where the file lies in the page cache.

Reading a file into a buffer copies every byte out of the page cache, and on two cores
that copy and the cache misses it causes cost about half as much again as BLAKE3
itself. A memory map lets the hash read the page cache in place. It has one hazard: a
process touching a mapped page past the end of a file truncated meanwhile is killed
with SIGBUS, and Python cannot catch that.

A read lease (``fcntl(F_SETLEASE, F_RDLCK)``, Linux) rules it out. The kernel grants
one only while nobody has the file open for writing, and while it is held, an open for
writing or a truncate by anyone waits until the holder lets go (or, at the latest,
until ``fs.lease-break-time``, 45 s by default, has passed). So the file can neither
change nor shrink while it is mapped. The holder is told of a waiting writer by a
signal, chosen here among those ignored by default (SIGURG, SIGWINCH) and only if the
program handles neither, so the notice changes nothing for the program. After each
window the lease is looked at; when a writer waits, it is given up at once and the
caller reads the rest as usual, so a writer waits for one window at most. Windows are
of 4 MiB, then 64 MiB, which bounds the memory the maps add to the resident set,
and a window that comes slowly (a cold, slow disk) ends the mapping: the small first one
tells a cold file early. The windows after it are large because each costs a little (the
map, the threads of the hash started and joined again, its last stretch hashed by one
thread while the other waits): one pass over 256 MiB of cached file took 1.25x the time of
one map of the whole file in windows of 16 MiB, 1.06x in windows of 64 MiB
(``benchmarks/bench_local_paths.py --only hash``).

Where no lease can be had (another platform, a file system without leases, a file
open for writing or owned by another user, both signals handled), or with
``CASSTORE_MAP_FILES=0``, nothing is mapped: :func:`hash_leased` returns 0 and the
caller reads the whole file (and stores it by reading it).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import time
from typing import Protocol

from casstore._env import env_on

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileLease", "hash_leased", "leases_supported"]

#: the first window
FIRST_WINDOW = 4 << 20
#: the windows that follow while each comes in less than ``_SLOW`` seconds
WINDOW = 64 << 20
# a window that took longer ends the mapping, so a writer never waits long (a window
# after one that came in time comes in a few seconds even from a slow disk)
SLOW = 0.25

_SETLEASE: int = getattr(fcntl, "F_SETLEASE", -1)
_GETLEASE: int = getattr(fcntl, "F_GETLEASE", -1)
_SETSIG: int = getattr(fcntl, "F_SETSIG", -1)
_WILLNEED: int | None = getattr(os, "POSIX_FADV_WILLNEED", None)


class _Hasher(Protocol):
    def update(self, data: mmap.mmap, /) -> object: ...


def leases_supported() -> bool:
    """Whether this platform has read leases (the file system may still refuse one)."""
    return min(_SETLEASE, _GETLEASE, _SETSIG) >= 0


def _quiet_signal() -> int | None:
    """A signal the kernel may send about a waiting writer without effect on the
    program: one it neither handles nor has asked for (ignored by default)."""
    for sig in (signal.SIGURG, signal.SIGWINCH):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN):
            return sig
    return None


class FileLease:
    """A read lease on a file open as ``fd`` (read-only), held from ``with`` to its end
    while nobody comes to write, and maps of the file while it holds.

    ``held`` says whether the lease was granted (never with ``CASSTORE_MAP_FILES=0``);
    :meth:`intact`, whether it still holds: once a writer waits it does not, and the
    holder must drop every map it made and leave the ``with`` block soon."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.held = False
        self.size = 0

    def __enter__(self) -> FileLease:
        if not leases_supported() or not env_on("CASSTORE_MAP_FILES"):
            return self
        sig = _quiet_signal()
        if sig is None:
            return self
        try:
            fcntl.fcntl(self.fd, _SETSIG, sig)
            fcntl.fcntl(self.fd, _SETLEASE, fcntl.F_RDLCK)
        except OSError:  # open for writing somewhere, not the owner, no leases on this file system
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.fd, _SETSIG, 0)
            return self
        self.held = True
        self.size = os.fstat(self.fd).st_size  # fixed while the lease is held
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, _SETLEASE, fcntl.F_UNLCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, _SETSIG, 0)

    def intact(self) -> bool:
        """Whether the lease still holds: granted, and no writer waiting."""
        return self.held and fcntl.fcntl(self.fd, _GETLEASE) == fcntl.F_RDLCK

    def map(self, offset: int, length: int, ahead: int = 0) -> mmap.mmap | None:
        """A read-only map of ``length`` bytes from ``offset`` (a multiple of
        ``mmap.ALLOCATIONGRANULARITY``), the disk asked first for them and ``ahead`` bytes
        more; None if the file cannot be mapped (some file systems)."""
        if _WILLNEED is not None:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.fd, offset, length + ahead, _WILLNEED)
        try:
            return mmap.mmap(self.fd, length, prot=mmap.PROT_READ, offset=offset)
        except OSError:
            return None


def hash_leased(lease: FileLease, hasher: _Hasher, *, first: int = FIRST_WINDOW, window: int = WINDOW) -> int:
    """Feed ``hasher`` the file under ``lease`` from its start, through memory maps;
    return how many bytes were fed. Fewer than the file holds when a writer came to wait,
    when a window came slowly, or 0 when no lease was granted (always with
    ``CASSTORE_MAP_FILES=0``): the caller gives the lease up and hashes the rest (from
    that offset) by reading it. When all ``lease.size`` bytes were fed, the caller may
    hold on to the lease for more work on the file as it was hashed."""
    if not lease.held:
        return 0
    done = 0
    step = first
    while done < lease.size:
        n = min(step, lease.size - done)
        start = time.monotonic()
        view = lease.map(done, n, ahead=window)  # read ahead: this window and the next
        if view is None:
            break  # the rest is read
        with view:
            hasher.update(view)
        done += n
        if not lease.intact():
            break  # a writer waits
        if time.monotonic() - start > SLOW:
            break  # a slow file (a cold, slow disk): read the rest, so no writer waits long
        step = window
    return done
