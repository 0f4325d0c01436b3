"""Which artifact paths of a run are files and which are directories, as this process knows.

A path of a run is either a file (it is bound) or a directory (some bound path lies
under it), never both: ``model`` and ``model/weights.txt`` cannot both be logged.
:class:`PathClaims` keeps that rule among the writers of one process, exactly: every
writer claims its paths here, under one lock, before it binds them. Across processes the
run's records carry it (see ``RunHandle``): a file binding at ``d``, or a directory
marker ``runs/<run_id>/dirs/<name key of d>`` that a writer creates before it binds the
first file under ``d``.

>>> claims = PathClaims("0" * 32)
>>> claims.claim(["model/weights.bin", "model/MLmodel"])
['model/weights.bin', 'model/MLmodel']
>>> claims.claim(["model"])
Traceback (most recent call last):
...
casstore.exceptions.ArtifactPathConflictError: cannot log artifact 'model' in run 000...
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from casstore.exceptions import ArtifactPathConflictError

__all__ = ["PathClaims", "parents", "directories"]


def parents(path: str) -> list[str]:
    """The directories ``path`` lies under, outermost first: ``a/b/c`` -> ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def directories(paths: Iterable[str]) -> dict[str, str]:
    """Every directory the ``paths`` lie under, outermost first, each with the first of the
    ``paths`` under it. Paths sharing a directory cost one dictionary lookup each."""
    out: dict[str, str] = {}
    seen_heads: set[str] = set()
    for p in paths:
        head = p.rpartition("/")[0]
        if head and head not in seen_heads:
            seen_heads.add(head)
            for d in parents(p):
                out.setdefault(d, p)
    return out


class PathClaims:
    """The files claimed (bound, or being bound) in one run by this process, the directories
    they make, and the directories whose marker record is known to be in the store. Thread-safe."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._files: set[str] = set()
        self._under: Counter[str] = Counter()  # directory -> claimed files under it
        self._example: dict[str, str] = {}  # directory -> a file under it, for messages
        self._marked: set[str] = set()

    def claim(self, paths: Iterable[str]) -> list[str]:
        """Claim clean artifact paths as files; return those newly claimed (the others were
        already). Raise :class:`ArtifactPathConflictError`, claiming nothing, if a path is a
        directory or lies under a file, among the claims or within ``paths``."""
        batch = list(dict.fromkeys(paths))
        dirs = directories(batch)
        in_batch = set(batch)
        with self._lock:
            for d, p in dirs.items():
                if d in self._files or d in in_batch:
                    raise ArtifactPathConflictError(self.run_id, p, d)
            for p in batch:
                if p in self._under or p in self._marked:
                    raise ArtifactPathConflictError(self.run_id, p, self._example.get(p) or f"{p}/...")
            new = [p for p in batch if p not in self._files]
            self._files.update(new)
            self._count(new, 1)
            return new

    def _count(self, paths: list[str], sign: int) -> None:
        """Add ``sign`` to the count of claimed files under each directory of ``paths``."""
        heads = Counter(p.rpartition("/")[0] for p in paths)
        first = directories(paths)
        for head, n in heads.items():
            if not head:
                continue
            for d in [*parents(head), head]:
                self._under[d] += sign * n
                if sign > 0:
                    self._example.setdefault(d, first[d])
                elif self._under[d] <= 0:
                    del self._under[d]
                    if d not in self._marked:
                        self._example.pop(d, None)

    def release(self, paths: Iterable[str]) -> None:
        """Give back claims (from :meth:`claim`) of files that were not bound after all."""
        with self._lock:
            gone = [p for p in dict.fromkeys(paths) if p in self._files]
            self._files.difference_update(gone)
            self._count(gone, -1)

    def unmarked(self, dirs: Iterable[str]) -> list[str]:
        """Those of ``dirs`` whose marker record this process has not seen in the store."""
        with self._lock:
            return [d for d in dict.fromkeys(dirs) if d not in self._marked]

    def mark(self, dirs: Iterable[str]) -> None:
        """Note that the marker records of ``dirs`` are in the store."""
        with self._lock:
            self._marked.update(dirs)
