"""Writing a user's files: whole or not at all, and on the disk once reported written.

Every file casstore writes outside a store (a download, ``casstore get``, a model loaded
into ``dst_path``, predictions written to a file) goes through :func:`write_file`: the
content goes to a temp file beside the destination, which is ``fsync``-ed, renamed into
place, and then the directory is ``fsync``-ed (and the parent of each directory the write
created, first), so that after a power loss the destination holds either what it held before or
the whole new file, never an empty or partial one. ``CASSTORE_DURABLE=0`` leaves the
``fsync`` calls out (a crash of the process is still safe; a power loss may not be), as it
does for a store; private temp directories pass ``durable=False``.

A durable write of a large file starts the write-back of every :data:`WRITEBACK_STEP`
bytes as soon as they are written (:func:`start_writeback`), so the disk writes while the
rest is read and verified and the ``fsync`` at the end waits for the last few MiB only
(a verified download of 256 MiB synced, taking turns on 2 busy cores: 0.37 s so, 0.48 s
with the write-back left to the ``fsync``, 0.34 s unsynced; ``benchmarks/bench_downloads.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import os
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from casstore._env import env_on
from casstore._libc import libc_function
from casstore.exceptions import CasstoreError, LocalFileError

__all__ = ["write_file", "write_files", "writer_count", "sync_path", "sync_tree", "make_dirs", "start_writeback"]

T = TypeVar("T")

#: a durable :func:`write_file` starts the write-back of each this many bytes once written
WRITEBACK_STEP = 8 << 20
#: ``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` (Linux)
_SYNC_FILE_RANGE = libc_function("sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2

#: threads at least that :func:`write_files` writes many synced files with: each spends
#: most of its time waiting for its file's ``fsync``, so more threads than cores keep the
#: disk busy (2,000 files of 1 to 8 KiB downloaded synced on 2 cores, taking turns: 0.72 s
#: and 1.20 s with 16 threads, 1.22 s and 1.73 s with 4; unsynced, more threads only add work)
SYNCING_WORKERS = 16

#: inside :func:`write_files`: the directories whose ``fsync`` waits for the last file
_DEFERRED: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("casstore_deferred_syncs", default=None)


def make_dirs(path: str | os.PathLike[str], *, durable: bool | None = None) -> None:
    """Make directory ``path`` and its missing parents; when ``durable`` (default: unless
    ``CASSTORE_DURABLE=0``), sync the parent of each directory made, which holds its name."""
    missing: list[str] = []
    d = os.path.abspath(os.fspath(path))
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    os.makedirs(path, exist_ok=True)
    if missing and (env_on("CASSTORE_DURABLE") if durable is None else durable):
        for new in missing:
            sync_path(os.path.dirname(new))


def sync_path(path: str) -> None:
    """``fsync`` a file (its data) or a directory (the names it holds), so that it survives
    a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Start writing the dirty pages of the open file ``fd`` from ``offset`` (``nbytes`` of
    them; 0: to its end) out to the disk, without waiting for them (Linux's
    ``sync_file_range``; elsewhere nothing is done). Not a barrier: the ``fsync`` that
    follows finds less to write, and reports any error of these writes."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]


def sync_tree(root: str, *, durable: bool | None = None) -> None:
    """``fsync`` every file and directory under ``root``, and the directory that holds
    ``root``'s name, unless ``durable`` is False (default: unless ``CASSTORE_DURABLE=0``):
    for a directory written in place (``save_model``'s), before it is reported written."""
    if not (env_on("CASSTORE_DURABLE") if durable is None else durable):
        return
    root = os.path.abspath(root)
    try:
        for dirpath, _dirnames, filenames in os.walk(root):
            for fn in filenames:
                path = os.path.join(dirpath, fn)
                if os.path.islink(path):
                    continue
                sync_path(path)
            sync_path(dirpath)
        sync_path(os.path.dirname(root))
    except OSError as e:
        raise LocalFileError(
            f"{root!r} was written but could not be synced to the disk ({e.strerror or e}): it may not survive a "
            "power loss. Fix the disk, then write it again"
        ) from e


#: the longest file name most file systems take (ext4, xfs, btrfs, APFS, NTFS: 255 bytes or UTF-16 units)
NAME_MAX = 255


def _temp_name(name: str) -> str:
    """The name of the temp file beside ``name``: ``.<name>.casstore-<random>.part``, or, where
    that would be longer than a file name may be (``name`` itself may be up to the limit),
    ``name`` cut short to fit."""
    tail = f".casstore-{uuid.uuid4().hex[:12]}.part"
    room = NAME_MAX - 1 - len(tail.encode())
    raw = os.fsencode(name)
    if len(raw) > room:  # cut, and not inside a character
        raw = raw[:room].decode("utf-8", "ignore").encode()
    return "." + os.fsdecode(raw) + tail


def write_file(chunks: Iterable[bytes | bytearray | memoryview], dest: str | os.PathLike[str], *,
               durable: bool | None = None) -> None:
    """Write ``chunks`` (an iterator that may raise, e.g. a verifying one) to ``dest``.

    The content goes to ``.<name>.casstore-<random>.part`` beside ``dest`` (``<name>`` cut
    short where a name that long would pass the file system's limit) and is renamed
    into place only once the iterator is exhausted without error, so ``dest`` is never
    left partly written; when ``durable`` (default: unless ``CASSTORE_DURABLE=0``) the
    temp file is synced before the rename and the directory after it, and its write-back
    starts as it is written (:data:`WRITEBACK_STEP`). Any failure
    removes the temp file and leaves ``dest`` as it was; a failure of the local disk is
    a :class:`LocalFileError` naming ``dest``."""
    dest = os.path.abspath(os.fspath(dest))
    if durable is None:
        durable = env_on("CASSTORE_DURABLE")
    d = os.path.dirname(dest)
    tmp = os.path.join(d, _temp_name(os.path.basename(dest)))
    try:
        make_dirs(d, durable=durable)
        with open(tmp, "wb") as out:
            written = started = 0
            for data in chunks:
                out.write(data)
                written += len(data)
                if durable and written - started >= WRITEBACK_STEP:
                    out.flush()
                    start_writeback(out.fileno(), started, written - started)
                    started = written
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, CasstoreError):
            todo = ("Download that file alone, to a shorter name (`casstore get RUN PATH -o NAME`)"
                    if e.errno == errno.ENAMETOOLONG else "Free space or fix the disk, then run the command again")
            raise LocalFileError(
                f"cannot write {dest!r}: {e.strerror or e}; nothing was written there (a file already there is "
                f"as it was). {todo}"
            ) from e
        raise
    if durable:
        deferred = _DEFERRED.get()
        if deferred is not None:  # write_files syncs each directory once, after its files
            deferred.add(d)
            return
        try:
            sync_path(d)
        except OSError as e:
            raise LocalFileError(
                f"{dest!r} was written but its directory could not be synced ({e.strerror or e}): it may not "
                "survive a power loss. Fix the disk, then run the command again"
            ) from e


def _fold(path: str) -> str:
    """``path`` as a file system that ignores letter case and Unicode normalization sees it."""
    return unicodedata.normalize("NFC", path).casefold()


def writer_count(files: int, workers: int, *, durable: bool | None = None) -> int:
    """The threads for :func:`write_files` to write ``files`` files with: one for a few (up
    to 8); else ``workers``, and at least :data:`SYNCING_WORKERS` when the files are synced
    (``durable``; default: unless ``CASSTORE_DURABLE=0``)."""
    if files <= 8:
        return 1
    if env_on("CASSTORE_DURABLE") if durable is None else durable:
        return max(workers, SYNCING_WORKERS)
    return workers


def write_files(items: Sequence[tuple[T, str]], write: Callable[[T, str], None], name: Callable[[T], str], *,
                workers: int = 1) -> None:
    """Call ``write(item, target)`` for each item (``workers`` at a time), never letting one
    replace another on a file system that takes two names as one.

    Targets that differ only in letter case or Unicode normalization (``Model.pkl`` and
    ``model.pkl``; ``café`` in NFC and in NFD) are one file on macOS's default volumes and
    on Windows. The first of each such set is written with the others; each other one
    after, alone, and only if its name does not lead to a file written here: if it does,
    a :class:`LocalFileError` names both (``name(item)``) and says what to do, and the
    file written first stays whole."""
    dirs: set[str] = set()
    token = _DEFERRED.set(dirs)
    try:
        _write_files(items, write, name, workers)
    except BaseException:
        _DEFERRED.reset(token)
        with contextlib.suppress(LocalFileError):  # what was written stays; the first error is the one told
            _sync_dirs(dirs)
        raise
    _DEFERRED.reset(token)
    _sync_dirs(dirs)


def _sync_dirs(dirs: set[str]) -> None:
    """Sync each directory that holds a file written by :func:`write_files` (once each)."""
    for d in sorted(dirs):
        try:
            sync_path(d)
        except OSError as e:
            raise LocalFileError(
                f"the files written in {d!r} may not survive a power loss: the directory could not be synced "
                f"({e.strerror or e}). Fix the disk, then run the command again"
            ) from e


def _write_files(items: Sequence[tuple[T, str]], write: Callable[[T, str], None], name: Callable[[T], str],
                 workers: int) -> None:
    firsts: dict[str, int] = {}
    later: list[int] = []
    for i, (_, target) in enumerate(items):
        if firsts.setdefault(_fold(target), i) != i:
            later.append(i)
    first = [items[i] for i in sorted(set(firsts.values()))]
    if workers > 1 and len(first) > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="casstore-get") as pool:
            # each task runs in a copy of this thread's context, which holds the directories to sync
            tasks = [(contextvars.copy_context(), it) for it in first]
            for _ in pool.map(lambda task: task[0].run(write, *task[1]), tasks):
                pass
    else:
        for it in first:
            write(*it)
    for i in later:
        item, target = items[i]
        earlier = items[firsts[_fold(target)]]
        written = [earlier] + [items[j] for j in later if j < i and _fold(items[j][1]) == _fold(target)]
        for other, path in written:
            if os.path.lexists(target) and os.path.lexists(path) and os.path.samefile(target, path):
                raise LocalFileError(
                    f"cannot write {name(item)!r} to {target!r}: its name differs from {name(other)!r} only in letter "
                    f"case or Unicode normalization, and the file system there takes the two as one name, so it would "
                    f"replace {path!r}, written from {name(other)!r}, which is kept. Download the two separately, each "
                    "to a name of its own (casstore get RUN PATH -o NEW_NAME)"
                )
        write(item, target)
