"""Backends on any fsspec file system.

:class:`FsspecBackend` is the generic fallback for file systems casstore has no
dedicated backend for (gcs, azure, sftp, ...). Its create-if-absent uses fsspec's
``pipe_file(mode="create")``, which each file system implements as well as it
can; for many it is an existence check followed by a write, so two writers racing
on the same new name may both believe they won. ``supports_atomic_create`` is
false for it; content-addressed data stays correct (racing writers write the same
bytes), but run records may see last-writer-wins under a race. Use a store whose
backend has ``supports_atomic_create`` for many concurrent writers.

:class:`MemoryBackend` keeps objects in fsspec's in-process memory file system;
one lock makes its create-if-absent atomic, which is exact because the memory
file system is private to the process.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from typing import Any

from casstore.backend.base import Backend, ObjectInfo, nbytes, validate_key
from casstore.exceptions import ObjectNotFoundError, StoreFullError, StoreUnavailableError

__all__ = ["FsspecBackend", "MemoryBackend"]

_CLIP_RANGES_ABOVE = 64 << 20


class FsspecBackend(Backend):
    """Objects as files of an fsspec file system under ``root``."""

    supports_atomic_create = False
    durable = False
    concurrency = 8

    def __init__(self, fs: Any, root: str, url: str | None = None) -> None:
        super().__init__(url or f"{fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]}://{root}")
        self.fs = fs
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _unavailable(self, key: str, e: Exception) -> StoreUnavailableError:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError(f"store {self.url!r} is full writing {key!r}: {e.strerror or e}; what the write "
                                  "left was removed. Free space (`casstore gc`), then log again")
        return StoreUnavailableError(f"store {self.url!r}: cannot access {key!r}: {type(e).__name__}: {e}")

    def _pipe(self, path: str, data: bytes, mode: str) -> None:
        """Write ``data`` at ``path``. A write that fails may have written part of it in
        place (these file systems have no atomic publication): what it left is removed,
        so no half-written object stays under a name a reader trusts."""
        try:
            try:
                self.fs.pipe_file(path, data, mode=mode)
            except FileNotFoundError:
                # file systems with real directories (local, sftp) want the parent made first
                self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
                self.fs.pipe_file(path, data, mode=mode)
        except OSError:
            try:
                if self.fs.exists(path):
                    self.fs.rm_file(path)
            except OSError:
                pass  # left for the size checks (blobs) and `verify` (records) to find
            raise

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            if self.fs.exists(path):
                return False
            self._pipe(path, data, "create")
        except FileExistsError:
            return False
        except OSError as e:
            raise self._unavailable(key, e) from e
        return True

    def _put_blob(self, key: str, data: bytes | memoryview) -> bool:
        path = self._path(key)
        try:
            if self._stored_size(key) == nbytes(data) and self.touch(key):
                return False  # stored whole (a partial object a killed writer left is replaced)
            self._pipe(path, bytes(data), "overwrite")
        except OSError as e:
            raise self._unavailable(key, e) from e
        return True

    def _get(self, key: str, start: int | None, end: int | None) -> bytes:
        path = self._path(key)
        try:
            if start is not None and end is not None and end - start > _CLIP_RANGES_ABOVE:
                # some file systems allocate the whole requested length before reading
                end = min(end, int(self.fs.size(path)))
                if end <= start:
                    return b""
            data: bytes = self.fs.cat_file(path, start=start, end=end)
            return data
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.url!r}") from e
        except IsADirectoryError as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.url!r} (it is a directory)") from e
        except OSError as e:
            raise self._unavailable(key, e) from e

    def _list(self, prefix: str) -> Iterator[str]:
        head, _, _ = prefix.rpartition("/")
        base = self._path(head) if head else self.root
        try:
            if not self.fs.exists(base):
                return
            found = self.fs.find(base, withdirs=False)
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._unavailable(prefix, e) from e
        strip = len(self.root) + 1 if self.root else 0
        for p in found:
            p = p.lstrip("/") if not self.root.startswith("/") else p
            k = p[strip:]
            if k.startswith(prefix):
                yield k

    def _delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._unavailable(key, e) from e

    def _info(self, key: str) -> ObjectInfo:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.url!r}") from e
        except OSError as e:
            raise self._unavailable(key, e) from e
        if info.get("type") == "directory":
            raise ObjectNotFoundError(f"no object {key!r} in store {self.url!r} (it is a directory)")
        return ObjectInfo(key, int(info.get("size") or 0), _mtime(info))

    def touch(self, key: str) -> bool:
        # docstring inherited
        validate_key(key)
        path = self._path(key)
        try:
            if not self.fs.exists(path):
                return False
            try:
                self.fs.touch(path, truncate=False)
            except (NotImplementedError, ValueError, TypeError):
                # no in-place touch: rewrite the same bytes (objects here are immutable)
                self.fs.pipe_file(path, self.fs.cat_file(path))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._unavailable(key, e) from e
        return True


def _mtime(info: dict[str, Any]) -> float:
    for field in ("mtime", "LastModified", "created", "last_modified"):
        v = info.get(field)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
    return 0.0


class MemoryBackend(FsspecBackend):
    """Objects in fsspec's process-local memory file system (``memory://name``)."""

    supports_atomic_create = True
    whole_objects = True  # written under one lock, in memory
    exact_stale_delete = True  # check and delete under the one lock that touch also takes
    concurrency = 1
    local = True  # in this process
    _lock = threading.Lock()  # one for all: the memory file system is shared by the process
    _touched: dict[str, float] = {}  # full path -> last touch, shared like the file system

    def __init__(self, root: str) -> None:
        import fsspec

        fs = fsspec.filesystem("memory")
        root = "/" + root.strip("/")
        super().__init__(fs, root, url=f"memory:/{root}")

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        with self._lock:
            path = self._path(key)
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, bytes(data))
            self._touched[path] = time.time()
            return True

    def _put_blob(self, key: str, data: bytes | memoryview) -> bool:
        with self._lock:
            if self._stored_size(key) == nbytes(data):
                self._touched[self._path(key)] = time.time()
                return False
            self.fs.pipe_file(self._path(key), bytes(data))
            self._touched[self._path(key)] = time.time()
            return True

    def _list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = list(super()._list(prefix))
        return iter(keys)

    def _delete(self, key: str) -> None:
        with self._lock:
            super()._delete(key)
            self._touched.pop(self._path(key), None)

    def _info(self, key: str) -> ObjectInfo:
        info = super()._info(key)
        return ObjectInfo(key, info.size, self._touched.get(self._path(key), info.mtime))

    def touch(self, key: str) -> bool:
        # docstring inherited
        validate_key(key)
        with self._lock:
            if self.fs.exists(self._path(key)):
                self._touched[self._path(key)] = time.time()
                return True
            return False

    def delete_if_stale(self, key: str, older_than: float) -> bool:
        # docstring inherited
        validate_key(key)
        with self._lock:
            try:
                info = super()._info(key)
            except ObjectNotFoundError:
                return False
            if self._touched.get(self._path(key), info.mtime) >= older_than:
                return False
            self.fs.rm_file(self._path(key))
            self._touched.pop(self._path(key), None)
            return True
