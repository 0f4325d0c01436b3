"""Metric buffering: points are kept in memory and written in batches.

A run handle buffers ``(key, value, step, timestamp)`` points and writes them as
one ``runs/<id>/metrics/<segment>`` object when ``flush_points`` are waiting, when
the oldest waiting point is ``flush_seconds`` old (checked on each log and by one
background thread), when the run ends, and at interpreter exit (also the exit of a
``multiprocessing`` child, which skips ``atexit``). Each point is also appended to
the handle's write-ahead log (:mod:`casstore.runs.wal`) before ``log_metric``
returns, so a process killed with SIGKILL loses none: the next reader or writer
recovers them. A forked child starts with an empty buffer, so no point is written twice.

At interpreter exit the buffers are written *before* ``concurrent.futures`` shuts its
thread pools down (a handler of ``threading``'s own exit hooks, which run before those
pools refuse work and before ``atexit``), since a remote backend's client needs them;
``atexit`` runs it again as a fallback. A point that still cannot be written then is
kept in its write-ahead log, said on stderr, and the process exits with status 1.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook is registered before ours, so ours runs first
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from casstore.runs.records import FLUSH_POINTS, FLUSH_SECONDS, MetricPoint

if TYPE_CHECKING:
    from casstore.runs.wal import WalWriter

__all__ = ["MetricBuffer", "register_flushable", "hold", "release", "FLUSH_POINTS", "FLUSH_SECONDS"]


class MetricBuffer:
    """Points waiting to be written; thread-safe."""

    def __init__(self, flush_points: int = FLUSH_POINTS, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_points = max(1, flush_points)
        self.flush_seconds = flush_seconds
        self.lock = threading.Lock()
        self._points: list[MetricPoint] = []
        self._seqs: list[int] = []  # each point's number in the write-ahead log (-1: none)
        self._since: float = 0.0

    def add(self, point: MetricPoint, wal: WalWriter | None = None) -> bool:
        """Append a point to ``wal`` (if any), then buffer it; return whether a flush is due."""
        with self.lock:
            seq = wal.append(point) if wal is not None else -1
            if not self._points:
                self._since = time.monotonic()
            self._points.append(point)
            self._seqs.append(seq)
            return len(self._points) >= self.flush_points or time.monotonic() - self._since >= self.flush_seconds

    def due(self) -> bool:
        with self.lock:
            return bool(self._points) and time.monotonic() - self._since >= self.flush_seconds

    def take(self) -> tuple[list[MetricPoint], list[int]]:
        """The buffered points and their write-ahead log numbers, leaving the buffer empty."""
        with self.lock:
            pts, self._points = self._points, []
            seqs, self._seqs = self._seqs, []
            return pts, seqs

    def put_back(self, points: list[MetricPoint], seqs: list[int]) -> None:
        """Return points whose write failed to the front of the buffer."""
        with self.lock:
            self._points[:0] = points
            self._seqs[:0] = seqs
            self._since = time.monotonic()

    def __len__(self) -> int:
        return len(self._points)


class Flushable(Protocol):
    def _flush_if_due(self) -> None: ...

    def _flush_at_exit(self) -> None: ...

    def _forget_after_fork(self) -> None: ...


_LIVE: weakref.WeakSet[Flushable] = weakref.WeakSet()
#: writers with buffered points, held strongly so a dropped handle still gets flushed
_PENDING: dict[int, Flushable] = {}
_LIVE_LOCK = threading.Lock()
_thread: threading.Thread | None = None


def register_flushable(obj: Flushable) -> None:
    """Track ``obj`` for the background flusher, interpreter exit and fork."""
    global _thread
    _register_early_exit()
    with _LIVE_LOCK:
        _LIVE.add(obj)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_flusher, name="casstore-metrics", daemon=True)
            _thread.start()


_early_registered = False


def _register_early_exit() -> None:
    """Flush at exit before thread pools shut down: ``threading``'s exit hooks run last
    registered first, and before ``concurrent.futures`` refuses new work. Registered when
    the first writer appears, after the libraries a backend needs have registered theirs."""
    global _early_registered
    if _early_registered:
        return
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - CPython has had it since 3.9
        return
    try:
        register(_flush_all_at_exit)
        _early_registered = True
    except RuntimeError:  # the interpreter is shutting down already
        pass


def hold(obj: Flushable) -> None:
    """Keep ``obj`` alive until :func:`release`: it has points to write."""
    with _LIVE_LOCK:
        _PENDING[id(obj)] = obj


def release(obj: Flushable) -> None:
    with _LIVE_LOCK:
        _PENDING.pop(id(obj), None)


def _snapshot() -> list[Flushable]:
    with _LIVE_LOCK:
        return list({id(o): o for o in [*_LIVE, *_PENDING.values()]}.values())


def _flusher() -> None:
    while True:
        time.sleep(max(0.2, FLUSH_SECONDS / 4))
        for obj in _snapshot():
            try:
                obj._flush_if_due()
            except Exception as e:  # a background thread must never die; the next flush retries
                _warn(f"casstore: could not write buffered metrics yet ({type(e).__name__}: {e}); will retry")


def _warn(msg: str) -> None:
    try:
        sys.stderr.write(msg + "\n")
    except (OSError, ValueError):
        pass


_exit_failures: list[str] = []


def _flush_all_at_exit() -> None:
    """Write every buffered point (each handle's ``_flush_at_exit``); remember failures."""
    del _exit_failures[:]
    for obj in _snapshot():
        try:
            obj._flush_at_exit()
        except Exception as e:
            _exit_failures.append(f"{type(e).__name__}: {e}")


@atexit.register
def _last_flush_at_exit() -> None:
    """The fallback (and the only flush when the early hook could not be registered); a
    point that could not be written makes the process exit with status 1."""
    _flush_all_at_exit()
    if _exit_failures:
        _warn("casstore: metric points could not be written at exit; they are kept in this machine's "
              "write-ahead log and are recovered by the next reader or writer of the run here: "
              + "; ".join(_exit_failures[:3]))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(1)


class _Anchor:
    """Keeps the multiprocessing after-fork hook registered (its registry holds weak refs)."""


_ANCHOR = _Anchor()


def _register_multiprocessing_exit(_: object = None) -> None:
    # multiprocessing children leave through os._exit, which skips atexit; they run
    # multiprocessing's exit finalizers instead. A child's bootstrap clears the finalizers
    # it inherited and then runs the after-fork hooks, which register ours again.
    from multiprocessing import util

    util.Finalize(None, _last_flush_at_exit, exitpriority=100)


_register_multiprocessing_exit()
__import__("multiprocessing.util").util.register_after_fork(_ANCHOR, _register_multiprocessing_exit)


def _after_fork_in_child() -> None:
    # another thread may have held these at the fork: start the child with fresh ones
    global _thread, _LIVE_LOCK
    _thread = None
    _LIVE_LOCK = threading.Lock()
    for obj in list(_LIVE):
        obj._forget_after_fork()
    _PENDING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
