"""Metric write-ahead logs: a point is in a local file before ``log_metric`` returns.

Each writer (a :class:`~casstore.runs.RunHandle` that logs metrics) appends every point
it accepts to a file of its own, ``<wal dir>/<run_id>/<writer>``, with one ``write(2)``
before ``log_metric`` returns, and holds an exclusive ``flock`` on it while it lives.
The operating system keeps what was written when the process is killed (SIGKILL, OOM),
though not across a power loss (nothing is synced; see docs/reliability.md).

A point gets a sequence number in its file; the metric segment that later carries it
names the file and the range of numbers it covers (``"wal": [writer, first, last]``).
So a reader of an open run adds the logged points no segment covers yet (from files of
dead and live writers alike) and counts none twice; a writer that opens the run, or
ends it, *replays* the file of a dead writer (its lock is free): it writes the points no
segment covers as one segment that says so, then removes the file. A writer removes its
own file once everything in it is in segments (at the end of its run or process).

Where the files are: inside a local store (``<root>/wal/``), so every process that reads
the store sees them; for a remote store, under this machine's cache directory
(``<cache>/wal/<store>/``), so the next writer or reader on the machine recovers them.

Framing: ``<u32 length><first 8 bytes of BLAKE3(payload)><payload>``, the payload the
msgpack of ``[seq, key, value, step, timestamp]``. A torn or damaged frame ends the
readable part of a file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Callable, Iterable

import msgpack
from blake3 import blake3

from casstore.backend import Backend, LocalBackend, MemoryBackend
from casstore.exceptions import StoreUnavailableError
from casstore.runs.layout import is_run_id, unique_suffix
from casstore.runs.records import MetricPoint

__all__ = ["WalDir", "WalWriter", "Covered", "uncovered", "wal_dir_for"]

_FRAME = struct.Struct("<I8s")
#: per writer file name, the ranges of sequence numbers segments carry
Covered = dict[str, list[tuple[int, int]]]


def _frame(seq: int, point: MetricPoint) -> bytes:
    payload: bytes = msgpack.packb([seq, *point], use_bin_type=True)
    return _FRAME.pack(len(payload), blake3(payload).digest()[:8]) + payload


def _parse(data: bytes) -> list[tuple[int, MetricPoint]]:
    out: list[tuple[int, MetricPoint]] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        n, check = _FRAME.unpack_from(data, pos)
        payload = data[pos + _FRAME.size: pos + _FRAME.size + n]
        if len(payload) != n or blake3(payload).digest()[:8] != check:
            break  # a torn tail (or damage): what follows is not trusted
        try:
            seq, key, value, step, ts = msgpack.unpackb(payload, raw=False)
            point: MetricPoint = (str(key), float(value), int(step), int(ts))
        except (ValueError, TypeError, msgpack.UnpackException):
            break
        out.append((int(seq), point))
        pos += _FRAME.size + n
    return out


def uncovered(entries: Iterable[tuple[int, MetricPoint]], ranges: list[tuple[int, int]]) -> list[tuple[int, MetricPoint]]:
    """The entries whose sequence number no range covers."""
    return [(s, p) for s, p in entries if not any(a <= s <= b for a, b in ranges)]


class WalWriter:
    """One writer's append-only file of points, locked while it lives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)
        for attempt in range(3):  # the run's directory may be removed by a writer closing its last log
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        self._fd: int | None = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._seq = 0

    def append(self, point: MetricPoint) -> int:
        """Append ``point``; return its sequence number. The bytes are in the OS when this returns."""
        if self._fd is None:
            raise StoreUnavailableError(f"the metric log {self.path} is closed")
        seq = self._seq
        frame = _frame(seq, point)
        try:
            written = os.write(self._fd, frame)
        except OSError as e:
            raise StoreUnavailableError(
                f"could not append a metric point to its write-ahead log {self.path} ({e.strerror}); "
                "the point was not logged. Free space there or set CASSTORE_CACHE_DIR, then log it again"
            ) from e
        if written != len(frame):  # pragma: no cover - a regular file takes a small write whole
            raise StoreUnavailableError(f"a short write to the metric log {self.path}; the point was not logged")
        self._seq += 1
        return seq

    def close(self, *, remove: bool) -> None:
        """Close the file (its lock goes with it); ``remove`` it first when everything in it
        is in segments."""
        if self._fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)
        self._fd = None
        if remove:
            try:  # the run's directory too, once its last log is gone (each costs a block on disk)
                os.rmdir(os.path.dirname(self.path))
            except OSError:
                pass  # another writer's log is in it

    def forget(self) -> None:
        """In a forked child: drop the inherited descriptor (the parent keeps file and lock)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


class WalDir:
    """The directory of the metric write-ahead logs of one store."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"WalDir({self.path!r})"

    def _run_dir(self, run_id: str) -> str:
        return os.path.join(self.path, run_id)

    def writer(self, run_id: str) -> WalWriter:
        return WalWriter(os.path.join(self._run_dir(run_id), unique_suffix()))

    def names(self, run_id: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self._run_dir(run_id)) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def read(self, run_id: str, name: str) -> list[tuple[int, MetricPoint]]:
        try:
            with open(os.path.join(self._run_dir(run_id), name), "rb") as f:
                return _parse(f.read())
        except FileNotFoundError:
            return []

    def pending(self, run_id: str, covered: Covered) -> list[MetricPoint]:
        """Points in the run's logs that no segment covers (``covered``), in log order."""
        out: list[MetricPoint] = []
        for name in self.names(run_id):
            out.extend(p for _s, p in uncovered(self.read(run_id, name), covered.get(name, [])))
        return out

    def replay_dead(self, run_id: str, covered: Callable[[], Covered],
                    write: Callable[[str, list[tuple[int, MetricPoint]]], None], *, skip: str | None = None) -> int:
        """For each log of ``run_id`` whose writer is gone (its lock is free), ``write`` the
        points no segment covers (``covered()`` is asked under the lock) and remove the log.
        Returns how many points were written."""
        n = 0
        for name in self.names(run_id):
            if name == skip:
                continue
            path = os.path.join(self._run_dir(run_id), name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        continue  # its writer is alive
                    raise
                try:
                    if os.fstat(fd).st_ino != os.stat(path).st_ino:
                        continue  # replayed and removed by another process meanwhile
                except FileNotFoundError:
                    continue
                with os.fdopen(os.dup(fd), "rb") as f:
                    entries = _parse(f.read())
                todo = uncovered(entries, covered().get(name, []))
                if todo:
                    write(name, todo)
                    n += len(todo)
                os.unlink(path)
            finally:
                os.close(fd)
        try:
            os.rmdir(self._run_dir(run_id))
        except OSError:
            pass  # not empty (a live writer) or gone
        return n

    def live(self) -> list[str]:
        """The logs whose writer is alive (it holds the lock), as ``<run_id>/<writer>``."""
        out = []
        for run_id in self.runs():
            for name in self.names(run_id):
                try:
                    fd = os.open(os.path.join(self._run_dir(run_id), name), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        out.append(f"{run_id}/{name}")
                    else:
                        raise
                finally:
                    os.close(fd)
        return out

    def runs(self) -> list[str]:
        """Run ids that have logs here."""
        try:
            return sorted(n for n in os.listdir(self.path) if is_run_id(n))
        except FileNotFoundError:
            return []


def wal_dir_for(backend: Backend) -> WalDir | None:
    """Where the metric logs of the store on ``backend`` go: inside a local store; under this
    machine's cache directory for a remote one; nowhere for a memory store (it dies with
    the process)."""
    if isinstance(backend, MemoryBackend):
        return None
    if isinstance(backend, LocalBackend):
        return WalDir(os.path.join(backend.root, "wal"))
    from casstore.objects.statcache import cache_dir

    return WalDir(os.path.join(cache_dir(), "wal", blake3(backend.url.encode()).hexdigest()[:16]))
