"""A store in a local directory.

Atomicity: every object is written to a temporary file in its final directory and
then published in one step: ``renameat2(RENAME_NOREPLACE)`` for create-if-absent
(fails if the name exists, so exactly one racer wins; ``os.link`` where the file
system lacks it) and ``os.replace`` for content-addressed blobs.
A process killed at any instant leaves at most a ``.tmp-*`` file, which readers
never see and garbage collection removes.

Durability: writes are not flushed one by one. :meth:`LocalBackend.flush` is a
barrier that flushes every write since the last barrier: a few files (at most
:data:`FSYNC_MAX`) are flushed each with ``fsync``, with the directories on their
paths; more, with a single ``syncfs(2)`` of the store's file system (``fsync`` of
each pending file where ``syncfs`` is unavailable). ``syncfs`` also writes whatever
else is waiting on that file system (a model file just saved by the training script,
say), so it is kept for large batches, where one call saves thousands.
The layers above call it before they publish a record
that references new data, so a power loss can never leave a record pointing at
lost bytes. ``durable=False`` (or ``CASSTORE_DURABLE=0``) turns the barrier into a
no-op, for scratch stores where speed matters more than surviving a power cut.

Large objects (chunks of at least :data:`DIRECT_MIN` bytes) are written with
``O_DIRECT`` where the file system allows it: the bytes go from an aligned buffer
to the disk without being copied into the page cache (a copy that costs as much CPU
as cutting and hashing, plus the write-back later), and the barrier is left with
little more than metadata. Their whole 4 KiB blocks are written so; the last part
block, if any, is then written through the page cache (``O_DIRECT`` cleared on the
open file) and left to the barrier, all before the object is published. (Writing it
padded and truncating the file to its length costs a read of that block from the
disk on ext4, which zeroes the rest of the block in the page cache.) Where the file system
refuses ``O_DIRECT`` (tmpfs, some network file systems), or with
``CASSTORE_DIRECT_IO=0``, large objects are written through the page cache and each
starts its own write-back at once (``sync_file_range``, without waiting), so the
barrier mostly finds it done; small objects are always left to the barrier.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import itertools
import mmap
import os
import stat
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from casstore._env import env_on
from casstore._files import start_writeback, sync_path
from casstore._libc import libc_function
from casstore.backend.base import Backend, ObjectInfo, nbytes, validate_key
from casstore.exceptions import ObjectNotFoundError, StoreFullError, StoreUnavailableError

try:
    import fcntl
except ImportError:  # not POSIX, and without O_DIRECT either
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalBackend"]

TMP_PREFIX = ".tmp-"
_QUARANTINE_PREFIX = TMP_PREFIX + "gcq-"  # an object renamed aside by delete_if_stale


_SYNCFS = libc_function("syncfs", ctypes.c_int)
#: a barrier over at most this many files written since the last one flushes each of
#: them (and the directories on their paths); over more, the whole file system at once
FSYNC_MAX = 16
# threads making the fsync calls of one barrier together
_FSYNC_THREADS = 8
#: ``renameat2(AT_FDCWD, old, AT_FDCWD, new, RENAME_NOREPLACE)``: publish a file under a name
#: only if the name is free, in one call (Linux 3.15+, glibc 2.28+)
_RENAMEAT2 = libc_function("renameat2", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
# smaller objects are left to the barrier: starting the write-back of each one is an I/O
# request of its own (on a virtual disk, an exit to the host), which costs more than
# the few pages it would save the barrier from writing
_EARLY_WRITEBACK_MIN = 256 << 10


#: a touch moves an object's mtime at least this far past its old one
_FRESHEN_STEP_NS = 1_000_000
#: the mode objects are created with, less the umask (0o644 under umask 022, 0o664 under 002)
_MODE = 0o666
#: objects at least this large are written with O_DIRECT where the file system allows
DIRECT_MIN = 256 << 10
_ALIGN = 4096  # buffer address and write length: a multiple of any disk's logical block
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_FADV_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 0) if hasattr(os, "posix_fadvise") else 0


class _TmpNames:
    """Names for temporary files: a random per-process prefix and a counter, cheaper than a
    UUID per file (no system call); a fork starts the child on a prefix of its own.
    ``O_EXCL`` still refuses any name that exists."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = f"{TMP_PREFIX}{os.getpid():x}{os.urandom(6).hex()}-"
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter)}"


_TMP_NAMES = _TmpNames()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_TMP_NAMES.reset)


class _AlignedBuffers(threading.local):
    """One page-aligned buffer per writing thread, grown to the largest object seen."""

    def get(self, size: int) -> mmap.mmap:
        buf: mmap.mmap | None = getattr(self, "buf", None)
        if buf is None or len(buf) < size:
            if buf is not None:
                buf.close()
            buf = self.buf = mmap.mmap(-1, max(size, 1 << 20))  # anonymous maps are page-aligned
        return buf


def _file_size(path: str) -> int | None:
    """The size of the regular file ``path``; None if there is none (as ``os.path.isfile``:
    missing, not reachable, or not a regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class LocalBackend(Backend):
    """Objects as files under a root directory."""

    supports_atomic_create = True
    exact_stale_delete = True
    concurrency = 1
    local = True

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        root = os.path.abspath(os.fspath(root))
        super().__init__(root)
        self.root = root
        self.durable = durable
        self._made_dirs: set[str] = set()
        #: directories this backend made since the last barrier that flushed them: their entries
        #: in their parents are flushed with them
        self._new_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._pending: list[str] = []  # written since the last flush (the first FSYNC_MAX + 1 only, with syncfs)
        self._dirty = False
        self._direct = bool(_O_DIRECT) and env_on("CASSTORE_DIRECT_IO")
        self._aligned = _AlignedBuffers()
        self._noreplace = _RENAMEAT2 is not None
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
        if os.sep == "/":
            return f"{self.root}/{key}"  # a validated key is '/'-separated plain names
        return os.path.join(self.root, *key.split("/"))

    def _ensure_dir(self, d: str) -> None:
        if d in self._made_dirs:
            return
        missing = []
        p = d
        while len(p) > len(self.root) and not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        if missing:
            os.makedirs(d, exist_ok=True)
            if self.durable:
                with self._lock:
                    self._new_dirs.update(missing)
        self._made_dirs.add(d)

    def _create_tmp(self, final: str, flags: int = 0) -> tuple[str, int]:
        # mode 0o666 less the umask, as every tool creates files: with umask 002 in a
        # directory of a shared group (see docs/operations.md), the group's other users may
        # freshen this object (utime), which gc's grace period relies on
        d = os.path.dirname(final)
        self._ensure_dir(d)
        tmp = os.path.join(d, _TMP_NAMES.next())
        flags |= os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return tmp, os.open(tmp, flags, _MODE)
        except FileNotFoundError:
            # the directory vanished (e.g. removed by gc after our cache saw it)
            self._made_dirs.discard(d)
            self._ensure_dir(d)
        except FileExistsError:
            tmp = os.path.join(d, f"{TMP_PREFIX}{uuid.uuid4().hex}")  # a left-over of a killed writer
        return tmp, os.open(tmp, flags, _MODE)

    def _write_tmp_direct(self, final: str, data: bytes | memoryview) -> str | None:
        """Write ``data`` to a new temporary file with O_DIRECT (see the module docstring);
        None, and direct writes switched off, if the file system refuses them."""
        whole = len(data) - len(data) % _ALIGN  # the bytes in whole blocks
        view = memoryview(self._aligned.get(whole))
        try:
            view[:whole] = memoryview(data)[:whole]
            try:
                tmp, fd = self._create_tmp(final, _O_DIRECT)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._direct = False  # this file system does not do O_DIRECT
                return None
            try:
                _write_all(fd, view[:whole])
                if whole < len(data):
                    fcntl.fcntl(fd, fcntl.F_SETFL, 0)  # O_DIRECT off: the last part block goes through the page cache
                    _write_all(fd, memoryview(data)[whole:])
            except BaseException as e:
                os.close(fd)
                _unlink_quietly(tmp)
                if isinstance(e, OSError) and e.errno == errno.EINVAL:
                    self._direct = False
                    return None
                raise
        finally:
            view.release()
        os.close(fd)
        return tmp

    def _write_tmp(self, final: str, data: bytes | memoryview) -> str:
        if self._direct and len(data) >= DIRECT_MIN:
            tmp = self._write_tmp_direct(final, data)
            if tmp is not None:
                return tmp
        tmp, fd = self._create_tmp(final)
        try:
            _write_all(fd, memoryview(data))
            if self.durable and len(data) >= _EARLY_WRITEBACK_MIN:
                # start the write-back now, so the disk works while the caller goes on and
                # the barrier (flush) finds little left to do; an error shows at the barrier
                start_writeback(fd)
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
            if _SYNCFS is None or len(self._pending) <= FSYNC_MAX:
                self._pending.append(path)

    def _wrap(self, key: str, e: OSError) -> Exception:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = self.free_bytes()
            what = "no space left on the device" if e.errno == errno.ENOSPC else "the disk quota is used up"
            return StoreFullError(f"{what} of store {self.root!r} writing {key!r} ({free} bytes free)", free=free)
        if e.errno in (errno.EACCES, errno.EPERM):
            return StoreUnavailableError(
                f"local store {self.root!r}: cannot access {key!r}: {e}. {_permission_hint(e.filename or self.root)}")
        return StoreUnavailableError(f"local store {self.root!r}: cannot access {key!r}: {e}")

    # ---- primitives --------------------------------------------------------------

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        try:
            tmp = self._write_tmp(final, data)
            if not self._publish_if_absent(tmp, final):
                return False
        except OSError as e:
            raise self._wrap(key, e) from e
        self._mark_dirty(final)
        return True

    def _publish_if_absent(self, tmp: str, final: str) -> bool:
        """Give ``tmp`` the name ``final`` unless that name exists (then drop ``tmp``):
        one ``renameat2(RENAME_NOREPLACE)`` where the file system has it, else a link
        and an unlink."""
        if self._noreplace:
            if _RENAMEAT2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(final), _RENAME_NOREPLACE) == 0:  # type: ignore[operator]
                return True
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                _unlink_quietly(tmp)
                return False
            if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                _unlink_quietly(tmp)
                raise OSError(err, os.strerror(err), final)
            self._noreplace = False  # this file system has no RENAME_NOREPLACE: link instead
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            _unlink_quietly(tmp)
        return True

    def _put_blob(self, key: str, data: bytes | memoryview) -> bool:
        final = self._path(key)
        try:
            if self._freshen(final, nbytes(data)):  # it exists, whole (and is now fresh)
                return False
            tmp = self._write_tmp(final, data)
            os.replace(tmp, final)
        except OSError as e:
            raise self._wrap(key, e) from e
        self._mark_dirty(final)
        return True

    @contextlib.contextmanager
    def _reading(self, key: str) -> Iterator[io.BufferedReader]:
        """The object ``key`` open for reading; a missing object raises ObjectNotFoundError."""
        try:
            with open(self._path(key), "rb") as f:
                yield f
        except (FileNotFoundError, NotADirectoryError) as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r}") from e
        except IsADirectoryError as e:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.root!r} (it is a directory)") from e
        except OSError as e:
            raise self._wrap(key, e) from e

    @contextlib.contextmanager
    def mapped(self, key: str) -> Iterator[bytes | memoryview]:
        # docstring inherited. Objects are published by rename and never written in place,
        # so a map holds the bytes of the file as it was opened (a later replacement or gc's
        # unlink does not touch them); only a file truncated in place by another program
        # while it is mapped would fault the reader (SIGBUS).
        with self._reading(validate_key(key)) as f:
            size = os.fstat(f.fileno()).st_size
            try:
                m = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) if size else None
            except OSError:  # a file system that cannot map files
                m = None
            data = f.read() if m is None and size else b""
        if m is None:
            yield data
            return
        try:
            with memoryview(m) as view:
                yield view
        finally:
            m.close()

    def _get(self, key: str, start: int | None, end: int | None) -> bytes:
        with self._reading(key) as f:
            if start is None:
                return f.read()
            stop = min(end if end is not None else start, os.fstat(f.fileno()).st_size)
            if stop <= start:
                return b""
            f.seek(start)
            return f.read(stop - start)

    def _get_into(self, key: str, buf: bytearray) -> bytes | bytearray:
        with self._reading(key) as f:
            if os.fstat(f.fileno()).st_size != len(buf):
                return f.read()
            got = f.readinto(buf)  # buffered: reads until buf is full or the file ends
            return buf if got == len(buf) else bytes(memoryview(buf)[:got])  # never bytes it did not read

    def prefetch(self, keys: Sequence[str]) -> None:
        # docstring inherited: posix_fadvise(WILLNEED) queues the reads and returns, so a
        # file read cold is read ahead while the caller still works on the ones before it
        # (one large file gets that from the kernel's readahead; many small ones do not)
        if not _FADV_WILLNEED:
            return
        for key in keys:
            try:
                fd = os.open(self._path(validate_key(key)), os.O_RDONLY | os.O_CLOEXEC)
            except (OSError, ValueError):
                continue
            try:
                os.posix_fadvise(fd, 0, 0, _FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def _stored_size(self, key: str) -> int | None:
        return _file_size(self._path(key))

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

    def _freshen(self, path: str, size: int | None = None) -> bool:
        """Freshen ``path``; whether it exists (with ``size``, of that many bytes)."""
        try:
            st = os.stat(path)
            # "now" of the file system's clock (the kernel's; on NFS the server's), which gc
            # reads too (its probe's mtime): never this process's clock, which may be behind
            os.utime(path)
            # and strictly later than before, even within one tick of that clock, so a writer
            # that removes what it alone created (a failed log) sees any reuse
            if os.stat(path).st_mtime_ns <= st.st_mtime_ns:
                t = st.st_mtime_ns + _FRESHEN_STEP_NS
                try:
                    os.utime(path, ns=(t, t))
                except PermissionError:  # another user's file: only "now" may be set
                    pass
            return size is None or st.st_size == size
        except FileNotFoundError:
            return False  # removed by gc since it was seen: the caller writes it anew
        except OSError:  # e.g. a read-only store: it may exist, unfreshened
            found = _file_size(path)
            return found is not None and (size is None or found == size)

    def touch(self, key: str) -> bool:
        # docstring inherited
        validate_key(key)
        return self._freshen(self._path(key))

    def free_bytes(self) -> int | None:
        # docstring inherited
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

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
            return self._settle(aside, final, older_than)
        except (FileNotFoundError, NotADirectoryError):  # from the rename: _settle handles its own
            return False
        except StoreUnavailableError:
            raise
        except OSError as e:
            raise self._wrap(key, e) from e
        except BaseException:
            # interrupted (Ctrl-C) between the rename and the decision: decide before giving up,
            # so an object a writer reused is not left aside, missing, until the next gc
            with contextlib.suppress(OSError):
                self._settle(aside, final, older_than)
            raise

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
        try:
            if _SYNCFS is not None and len(pending) > FSYNC_MAX:
                self._syncfs()
            else:
                self._fsync_each(pending)
        except OSError as e:
            with self._lock:  # not flushed: the next barrier tries these again
                self._pending[:0], self._dirty = pending, True
            raise StoreUnavailableError(f"local store {self.root!r}: the durability barrier failed: {e}") from e

    def flush_only(self, keys: Sequence[str]) -> None:
        # docstring inherited
        if not self.durable:
            return
        paths = [self._path(validate_key(k)) for k in keys]
        try:
            self._fsync_each(paths)
        except OSError as e:
            raise StoreUnavailableError(f"local store {self.root!r}: the durability barrier failed: {e}") from e

    def _syncfs(self) -> None:
        """One ``syncfs`` of the store's file system. Where that call fails, ``sync`` of every
        file system (an ``fsync`` of the root alone would not flush the files' data, and
        only the first files written are listed for flushing one by one)."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:  # type: ignore[operator]
                os.sync()
        finally:
            os.close(fd)

    def _fsync_each(self, pending: list[str]) -> None:
        """``fsync`` each file, its directory, and the parent of each directory this backend
        made since it was last flushed (up to one that existed: a directory another process
        made is that process's to flush, before it writes anything that names it).

        The calls are made at once from a few threads and all of them are waited for: the
        file system commits the journal once for the calls that wait together (ext4, xfs)
        instead of once per call, and no call's durability depends on another's order."""
        with self._lock:
            made = set(self._new_dirs)
        dirs = set()
        for p in pending:
            d = os.path.dirname(p)
            while d not in dirs and len(d) >= len(self.root):
                dirs.add(d)
                if d not in made:
                    break
                d = os.path.dirname(d)
        paths = [*pending, *sorted(dirs, key=len, reverse=True)]
        with ThreadPoolExecutor(min(_FSYNC_THREADS, len(paths)) or 1, thread_name_prefix="casstore-fsync") as pool:
            together: list[Future[None]] = []
            if len(paths) > 1:
                with contextlib.suppress(RuntimeError):  # the interpreter is exiting (a run ended at exit): no new threads
                    for p in paths:
                        together.append(pool.submit(_fsync_path, p))
            for p in paths[len(together):]:
                _fsync_path(p)
            for f in together:
                f.result()  # every call is waited for (the pool's exit); the first error is raised
        with self._lock:
            self._new_dirs -= dirs


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _permission_hint(path: str) -> str:
    """What to do when the store refuses this user: whose the path is, and how a store is
    shared by several users."""
    probe = path
    while probe and not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        owner = f" (it belongs to {_user(os.stat(probe).st_uid)})"
    except OSError:
        owner = ""
    return (f"You ({_user(os.geteuid())}) lack the permission for {probe!r}{owner}. A store that several users "
            "write needs a group they all belong to, with group write permission on its directories (see "
            "docs/operations.md, 'A store shared by several users')")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_path(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        sync_path(path)


