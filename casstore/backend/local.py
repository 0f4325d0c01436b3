"""A store in a local directory.

Atomicity: every object is written to a temporary file in its final directory and
then published in one step: ``os.link`` for create-if-absent (fails if the name
exists, so exactly one racer wins) and ``os.replace`` for content-addressed blobs.
A process killed at any instant leaves at most a ``.tmp-*`` file, which readers
never see and garbage collection removes.

Durability: writes are not flushed one by one. :meth:`LocalBackend.flush` is a
barrier that flushes every write since the last barrier with a single
``syncfs(2)`` of the store's file system (``fsync`` of each pending file where
``syncfs`` is unavailable). Each write of 64 KiB or more starts its own
write-back at once (``sync_file_range``, without waiting), so the barrier mostly
finds it done; smaller objects are left to the barrier, which writes them together
(a write-back started for each of thousands of small files cost more than it saved).
The layers above call it before they publish a record
that references new data, so a power loss can never leave a record pointing at
lost bytes. ``durable=False`` (or ``CASSTORE_DURABLE=0``) turns the barrier into a
no-op, for scratch stores where speed matters more than surviving a power cut.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import threading
import uuid
from collections.abc import Iterator

from casstore.backend.base import Backend, ObjectInfo, validate_key
from casstore.exceptions import ObjectNotFoundError, StoreUnavailableError

__all__ = ["LocalBackend"]

TMP_PREFIX = ".tmp-"
_QUARANTINE_PREFIX = TMP_PREFIX + "gcq-"  # an object renamed aside by delete_if_stale


def _load_syncfs() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def _load_start_writeback() -> object | None:
    """``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``: start writing a file's dirty
    pages out without waiting (Linux); None where it is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_SYNC_FILE_RANGE = _load_start_writeback()
_SYNC_FILE_RANGE_WRITE = 2
#: objects smaller than this are flushed by the barrier alone (see the module docstring)
_WRITEBACK_MIN = 64 << 10


class LocalBackend(Backend):
    """Objects as files under a root directory."""

    supports_atomic_create = True
    exact_stale_delete = True
    concurrency = 1

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        root = os.path.abspath(os.fspath(root))
        super().__init__(root)
        self.root = root
        self.durable = durable
        self._made_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._pending: list[str] = []  # written since the last flush (fallback without syncfs)
        self._dirty = False
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise StoreUnavailableError(
                f"cannot create or open the local store directory {root!r}: {e.strerror}. "
                "Check the path and its permissions."
            ) from e
        if not os.path.isdir(root):
            raise StoreUnavailableError(f"local store path {root!r} exists but is not a directory")

    # ---- helpers -----------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def _ensure_dir(self, d: str) -> None:
        if d in self._made_dirs:
            return
        os.makedirs(d, exist_ok=True)
        self._made_dirs.add(d)

    def _write_tmp(self, final: str, data: bytes | memoryview) -> str:
        d = os.path.dirname(final)
        self._ensure_dir(d)
        tmp = os.path.join(d, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            # the directory vanished (e.g. removed by gc after our cache saw it)
            self._made_dirs.discard(d)
            self._ensure_dir(d)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.durable and _SYNC_FILE_RANGE is not None and len(data) >= _WRITEBACK_MIN:
                # start the write-back now, so the disk works while the caller goes on and
                # the barrier (flush) finds little left to do; an error shows at the barrier
                _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        return tmp

    def _mark_dirty(self, path: str) -> None:
        if not self.durable:
            return
        with self._lock:
            self._dirty = True
            if _SYNCFS is None:
                self._pending.append(path)

    def _wrap(self, key: str, e: OSError) -> Exception:
        if e.errno == errno.ENOSPC:
            return StoreUnavailableError(f"no space left on the device of store {self.root!r} writing {key!r}")
        return StoreUnavailableError(f"local store {self.root!r}: cannot access {key!r}: {e}")

    # ---- primitives --------------------------------------------------------------

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        if os.path.lexists(final):
            return False
        try:
            tmp = self._write_tmp(final, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            finally:
                _unlink_quietly(tmp)
        except OSError as e:
            raise self._wrap(key, e) from e
        self._mark_dirty(final)
        return True

    def _put_blob(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        try:
            if os.path.exists(final) and self._freshen(final):
                return False
            tmp = self._write_tmp(final, data)
            os.replace(tmp, final)
        except OSError as e:
            raise self._wrap(key, e) from e
        self._mark_dirty(final)
        return True

    def _get(self, key: str, start: int | None, end: int | None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if start is None:
                    return f.read()
                stop = min(end if end is not None else start, os.fstat(f.fileno()).st_size)
                if stop <= start:
                    return b""
                f.seek(start)
                return f.read(stop - start)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r}") from e
        except IsADirectoryError as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r} (it is a directory)") from e
        except OSError as e:
            raise self._wrap(key, e) from e

    def _exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def _list(self, prefix: str) -> Iterator[str]:
        # walk from the deepest directory that the prefix names completely
        head, _, _ = prefix.rpartition("/")
        start = self._path(head) if head else self.root
        if not os.path.isdir(start):
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            dirnames[:] = [d for d in dirnames if (base + d + "/").startswith(prefix) or prefix.startswith(base + d + "/")]
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                k = base + name
                if k.startswith(prefix):
                    yield k

    def _delete(self, key: str) -> None:
        _unlink_quietly(self._path(key))

    def _info(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError) as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r}") from e
        except OSError as e:
            raise self._wrap(key, e) from e
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r} (it is a directory)")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    # ---- extras ----------------------------------------------------------------------

    def _freshen(self, path: str) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False  # removed by gc since it was seen: the caller writes it anew
        except OSError:
            return os.path.isfile(path)  # e.g. a read-only store: it exists, unfreshened
        return True

    def touch(self, key: str) -> bool:
        # docstring inherited
        validate_key(key)
        return self._freshen(self._path(key))

    def delete_if_stale(self, key: str, older_than: float) -> bool:
        # docstring inherited
        # Exact: the object is first renamed aside (atomic), so a writer's utime either
        # reaches the inode before (and the mtime read below sees it) or fails with
        # ENOENT after (and the writer writes the object anew). A fresh object is put back.
        validate_key(key)
        final = self._path(key)
        d, name = os.path.split(final)
        aside = os.path.join(d, f"{_QUARANTINE_PREFIX}{int(older_than * 1e9)}-{uuid.uuid4().hex[:8]}-{name}")
        try:
            os.rename(final, aside)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as e:
            raise self._wrap(key, e) from e
        return self._settle(aside, final, older_than)

    def _settle(self, aside: str, final: str, older_than: float) -> bool:
        """Finish a stale delete: put the object back if it was touched at or after
        ``older_than``, else remove it. Return whether it was removed."""
        try:
            fresh = os.stat(aside).st_mtime >= older_than
            if fresh:
                try:
                    os.link(aside, final)
                except FileExistsError:
                    pass  # a writer stored it again meanwhile: same bytes
            os.unlink(aside)
        except FileNotFoundError:
            return False  # another gc settled it
        except OSError as e:
            raise StoreUnavailableError(f"local store {self.root!r}: cannot finish deleting {final!r}: {e}") from e
        return not fresh

    def clean_tmp(self, older_than: float) -> int:
        # docstring inherited
        n = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TMP_PREFIX):
                    continue
                p = os.path.join(dirpath, name)
                if name.startswith(_QUARANTINE_PREFIX):
                    # a stale delete interrupted between its rename and its decision
                    stamp, _, rest = name[len(_QUARANTINE_PREFIX):].partition("-")
                    original = rest.partition("-")[2]
                    if stamp.isdigit() and original:
                        self._settle(p, os.path.join(dirpath, original), int(stamp) / 1e9)
                        n += 1
                    continue
                try:
                    if os.stat(p).st_mtime < older_than:
                        _unlink_quietly(p)
                        n += 1
                except FileNotFoundError:
                    continue
        return n

    def flush(self) -> None:
        # docstring inherited
        if not self.durable:
            return
        with self._lock:
            if not self._dirty:
                return
            pending, self._pending, self._dirty = self._pending, [], False
        if _SYNCFS is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _SYNCFS(fd) != 0:  # type: ignore[operator]
                    os.fsync(fd)
            finally:
                os.close(fd)
            return
        dirs = set()
        for p in pending:
            _fsync_path(p)
            dirs.add(os.path.dirname(p))
        for d in dirs:
            _fsync_path(d)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


