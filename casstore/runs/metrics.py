"""Metric buffering: points are kept in memory and written in batches.

A run handle buffers ``(key, value, step, timestamp)`` points and writes them as
one ``runs/<id>/metrics/<segment>`` object when ``flush_points`` are waiting, when
the oldest waiting point is ``flush_seconds`` old (checked on each log and by one
background thread), when the run ends, and at interpreter exit (also the exit of a
``multiprocessing`` child, which skips ``atexit``). A process killed
with SIGKILL loses at most the points logged since the last batch. A forked child
starts with an empty buffer, so no point is written twice.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from typing import Protocol

from casstore.runs.records import MetricPoint

__all__ = ["MetricBuffer", "register_flushable", "hold", "release", "FLUSH_POINTS", "FLUSH_SECONDS"]

FLUSH_POINTS = 1000
FLUSH_SECONDS = 5.0


class MetricBuffer:
    """Points waiting to be written; thread-safe."""

    def __init__(self, flush_points: int = FLUSH_POINTS, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_points = max(1, flush_points)
        self.flush_seconds = flush_seconds
        self.lock = threading.Lock()
        self._points: list[MetricPoint] = []
        self._since: float = 0.0

    def add(self, point: MetricPoint) -> bool:
        """Buffer a point; return whether a flush is due."""
        with self.lock:
            if not self._points:
                self._since = time.monotonic()
            self._points.append(point)
            return len(self._points) >= self.flush_points or time.monotonic() - self._since >= self.flush_seconds

    def due(self) -> bool:
        with self.lock:
            return bool(self._points) and time.monotonic() - self._since >= self.flush_seconds

    def take(self) -> list[MetricPoint]:
        with self.lock:
            pts, self._points = self._points, []
            return pts

    def put_back(self, points: list[MetricPoint]) -> None:
        """Return points whose write failed to the front of the buffer."""
        with self.lock:
            self._points[:0] = points
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
    with _LIVE_LOCK:
        _LIVE.add(obj)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_flusher, name="casstore-metrics", daemon=True)
            _thread.start()


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


@atexit.register
def _flush_all_at_exit() -> None:
    for obj in _snapshot():
        try:
            obj._flush_at_exit()
        except Exception as e:
            _warn(f"casstore: buffered metrics could not be written at exit: {type(e).__name__}: {e}")


class _Anchor:
    """Keeps the multiprocessing after-fork hook registered (its registry holds weak refs)."""


_ANCHOR = _Anchor()


def _register_multiprocessing_exit(_: object = None) -> None:
    # multiprocessing children leave through os._exit, which skips atexit; they run
    # multiprocessing's exit finalizers instead. A child's bootstrap clears the finalizers
    # it inherited and then runs the after-fork hooks, which register ours again.
    from multiprocessing import util

    util.Finalize(None, _flush_all_at_exit, exitpriority=100)


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
