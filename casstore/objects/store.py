"""The objects layer: files in, files out, every byte verified.

``put_file``/``put_bytes``/``put_stream`` cut content into FastCDC chunks, name
each chunk and the whole file by BLAKE3, store only the chunks the store lacks,
then the file's recipe. A file that is exactly one chunk has no recipe in a
version-2 store: its digest is its chunk's, so the chunk object is the file (see
:mod:`casstore.objects.layout`). Reads re-hash every chunk before it is used and the
whole file at the end. Memory stays bounded by a few chunks whatever the size.
A caller that holds the BLAKE3 of a file's recipe bytes from an authenticated
record (a model entry's pin, see :meth:`ObjectStore.recipe_pin`) checks the recipe
against it instead (``recipe(digest, pin=...)``) and reads the chunks it lists
with :meth:`ObjectStore.read_chunks`, which verifies each one.

Write order: chunks, then the recipe (so a visible recipe's chunks are there).
Callers that publish a record referencing a file call :meth:`ObjectStore.flush`
between the two (the durability barrier).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import mmap
import os
import stat as stat_mod
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, NamedTuple, TypeVar

from casstore._buffers import heap_up_to, unfilled
from casstore.backend.base import Backend
from casstore.exceptions import (
    CasstoreError,
    CorruptRecordError,
    IntegrityError,
    InvalidInputError,
    LocalFileError,
    ObjectNotFoundError,
)
from casstore.objects.chunking import Chunker
from casstore.objects.config import StoreConfig
from casstore.objects.digest import check_digest, hash_bytes, new_hasher
from casstore.objects import mapped as mapped_mod
from casstore.objects.mapped import FileLease, hash_leased
from casstore.objects.recipes import Recipe
from casstore.objects.statcache import StatCache, default_stat_cache

__all__ = ["ObjectStore", "Stored", "EMPTY_DIGEST", "open_chunks", "write_chunks"]

EMPTY_DIGEST = hash_bytes(b"")

# reads go in blocks of this size (at least two maximum chunks) into buffers kept for
# the next put: a ring of _RING for the storing pass, two of them for the hashing pass;
# a file no larger than one block is read whole
_READ_BLOCK = 8 << 20
_RING = 5
# the hashing pass reads in blocks this small, which stay in the processor's cache
# from the read to the hash (measured: 1 GiB from the page cache hashed 20% faster
# than in blocks of 12 MiB)
_HASH_BLOCK = 4 << 20
# a storing pass over a mapped file (``_store_leased``) cuts it a window of this size at a
# time, three at most mapped at once while their chunks are written
_MAP_WINDOW = 16 << 20
# threads hashing and writing chunks to a local disk: direct writes wait on the disk, so
# more writers than cores keep it busy while the others hash; each holds its chunks'
# block, hence a ring of a few more blocks than two (measured on 2 cores: 4 writers and
# 5 blocks stored 1 GiB 20% faster than 2 and 3; 6 writers 8% faster again than 4, with
# a chunk's wait on the disk about ten times the CPU its writer spends on it; 8 no faster)
_WRITERS = 6
# threads hashing the chunks of a file stored by following a similar file's recipe
_HASHERS = 2
# threads reading and hashing chunks into memory the caller allocates (read_chunks on a
# local store); measured on 2 cores, a 290 MB model's chunks were fetched in 0.15 s this
# way and in 0.21 s when the caller read them and two threads hashed them
_READERS = 2
# hints tried, closest in size first, before a new version is cut as usual
_HINTS_TRIED = 3
# chunks in a row that are not where a similar file's recipe says before it is no longer followed
_MISSES_MAX = 8
#: chunks a local reader asks the disk for ahead of the one it reads (Backend.prefetch)
_PREFETCH = 16

Progress = Callable[[int], None]
BytesT = TypeVar("BytesT", bytes, bytearray, bytes | bytearray)


class Stored(NamedTuple):
    """What a put returns: the whole-content BLAKE3 digest and the size in bytes."""

    digest: str
    size: int


def _filler(stream: IO[bytes]) -> Callable[[memoryview], int]:
    """A function that fills a buffer from ``stream`` and returns how many bytes it got
    (fewer than asked only at the end of the stream)."""
    readinto = getattr(stream, "readinto", None)

    def fill(buf: memoryview) -> int:
        got = 0
        while got < len(buf):
            if readinto is not None:
                n = readinto(buf[got:])
            else:
                data = stream.read(len(buf) - got)
                n = len(data)
                buf[got : got + n] = data
            if not n:
                break
            got += n
        return got

    return fill


def _name_and_add(sink: _ChunkSink, chunk: memoryview) -> str:
    """Hash a chunk, hand it to ``sink``, return its digest (a writer thread's job)."""
    digest = hash_bytes(chunk, parallel=False)
    sink.add(digest, chunk)
    return digest


def _same_and_add(sink: _ChunkSink, chunk: memoryview, digest: str) -> bool:
    """Whether ``chunk`` hashes to ``digest``; if so it is handed to ``sink`` (which freshens
    the stored chunk, or writes it again if gc took it)."""
    if hash_bytes(chunk, parallel=False) != digest:
        return False
    sink.add(digest, chunk)
    return True


def _wait_all(futures: list[Future[Any]]) -> None:
    """Wait for every future (raising the first error) and forget them."""
    try:
        for f in futures:
            f.result()
    finally:
        futures.clear()


def _open_local(path: str) -> tuple[int, os.stat_result]:
    """Open a local file to be stored: its descriptor and status; :class:`LocalFileError`
    saying what is wrong (missing, a directory, not readable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise LocalFileError(f"cannot log {path!r}: no such file") from e
    except IsADirectoryError as e:
        raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file (log directories with log_artifacts)") from e
    except PermissionError as e:
        raise LocalFileError(f"cannot log {path!r}: permission denied") from e
    except OSError as e:
        raise LocalFileError(f"cannot log {path!r}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _is_small(before: os.stat_result, limit: int) -> bool:
    """Whether the file of status ``before`` is a regular file of at most ``limit`` (> 0) bytes."""
    return limit > 0 and stat_mod.S_ISREG(before.st_mode) and before.st_size <= limit


def _read_whole(fd: int, path: str, before: os.stat_result) -> bytes:
    """All of a regular file open as ``fd`` (status ``before``); :class:`LocalFileError` if
    it cannot be read or changes while it is read."""
    try:
        data = _read_upto(fd, before.st_size + 1)  # one more byte shows a file that grew
        after = os.fstat(fd)
    except OSError as e:
        raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
    if len(data) != after.st_size or _changed(before, after):
        raise LocalFileError(
            f"{path!r} changed while it was being stored (size {before.st_size} -> {after.st_size}); "
            "nothing was recorded. Log it again once it is no longer being written."
        )
    return data


def _read_upto(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from ``fd``: fewer only at its end."""
    data = os.read(fd, n)
    if len(data) in (0, n):
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether a file was written to between two ``fstat`` calls."""
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (after.st_size, after.st_mtime_ns, after.st_ctime_ns)


def _max_in_flight(given: int | None, backend: Backend) -> int:
    """Chunks held for a batched upload or prefetched on a read: the argument, else
    ``CASSTORE_MAX_IN_FLIGHT``, else twice the backend's concurrency (at least 4)."""
    where = "max_in_flight"
    value: object = given
    if value is None:
        value = os.environ.get("CASSTORE_MAX_IN_FLIGHT", "").strip() or None
        where = "CASSTORE_MAX_IN_FLIGHT"
    if value is None:
        return max(4, 2 * backend.concurrency)
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if isinstance(value, bool) or n < 1:
        raise InvalidInputError(f"{where}={value!r}: the number of chunks in flight must be a positive integer")
    return n


class _HashBeside:
    """The whole-file BLAKE3 of a file a storing pass maps a window at a time, hashed in a
    thread of its own, each byte once and in order; nothing to do when the digest is known
    already (the file was hashed whole under the same lease)."""

    def __init__(self, digest: str | None) -> None:
        self.digest = digest
        self._whole = new_hasher(parallel=False) if digest is None else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="casstore-hash") if digest is None else None
        self._hashed = 0  # what the hash has been handed

    def add(self, window: memoryview, base: int) -> Future[Any] | None:
        """Hand the hash what ``window``, the file from offset ``base``, adds to what it
        was handed before; the future of that work (which reads the window), or None."""
        if self._pool is None or self._whole is None:
            return None
        done = self._pool.submit(self._whole.update, window[self._hashed - base :])
        self._hashed = base + len(window)
        return done

    def close(self) -> None:
        """Wait for the hash: no thread reads a window once this returns."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def result(self) -> str:
        if self._whole is not None:
            return str(self._whole.hexdigest())
        assert self.digest is not None
        return self.digest


class _ChunkSink:
    """Sends chunks to the backend: directly on a local disk; on remote stores in batches,
    each checked with one ``exists_many``, whose missing chunks are uploaded concurrently
    while the next batch is cut. At most ``window`` chunk copies are held at once."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.backend = store.backend
        self.chunk_key = store.layout.chunk_key
        self.batched = store._batched
        self.window = max(2, store.max_in_flight)
        # two batches in flight: one uploading while the next is cut and checked
        self.batch_size = max(1, min(self.backend.concurrency, self.window // 2))
        self.pending: list[tuple[str, bytes]] = []
        self.slots = threading.Semaphore(self.window)
        self.pool: ThreadPoolExecutor | None = None  # puts and touches
        self.checks: ThreadPoolExecutor | None = None  # one batch each: check, then send
        self.running: list[Future[None]] = []

    def add(self, digest: str, data: memoryview) -> None:
        if not self.batched:
            if self.backend.put_blob(self.chunk_key(digest), data):
                self.store._count(1, len(data))
            return
        self._raise_failed()
        self.slots.acquire()  # blocks while ``window`` chunks are held
        self.pending.append((digest, bytes(data)))
        if len(self.pending) >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        if self.pool is None or self.checks is None:
            self.pool = ThreadPoolExecutor(self.backend.concurrency, thread_name_prefix="casstore-put")
            self.checks = ThreadPoolExecutor(2, thread_name_prefix="casstore-check")
        self.running.append(self.checks.submit(self._send, batch, self.pool))

    def _raise_failed(self) -> None:
        done = [f for f in self.running if f.done()]
        self.running = [f for f in self.running if not f.done()]
        for f in done:
            f.result()

    def _send(self, batch: list[tuple[str, bytes]], pool: ThreadPoolExecutor) -> None:
        held = len(batch)
        try:
            uniq: dict[str, bytes] = dict(batch)
            keys = [self.chunk_key(d) for d in uniq]
            if self.backend.whole_objects:
                present = self.backend.exists_many(keys)
            else:  # a chunk of another length is partial: sent again, put_blob replaces it
                present = [n == len(data) for n, data in zip(self.backend.sizes_many(keys), uniq.values())]
            # an existing chunk is freshened (gc's grace period); one gc removed meanwhile is sent again
            touched = iter(list(pool.map(self.backend.touch, [k for k, p in zip(keys, present) if p])))
            missing = [(k, uniq[d]) for k, d, p in zip(keys, uniq, present) if not p or next(touched) is False]
            if held > len(missing):
                self.slots.release(held - len(missing))
            held = len(missing)
            futs = [pool.submit(self._put, k, data) for k, data in missing]
            held = 0  # each put gives its slot back
            for f in futs:
                f.result()
            self.store._count(len(missing), sum(len(d) for _, d in missing))
        finally:
            if held:
                self.slots.release(held)

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.backend.put_blob(key, data)
        finally:
            self.slots.release()

    def close(self) -> None:
        """Send what is pending and wait for every batch; raise the first error."""
        try:
            self._submit()
            running, self.running = self.running, []
            errors = []
            for f in running:
                try:
                    f.result()
                except BaseException as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        finally:
            for pool in (self.checks, self.pool):
                if pool is not None:
                    pool.shutdown(wait=True)


class ObjectStore:
    """Chunked, verified, deduplicated file objects on a backend."""

    def __init__(
        self, backend: Backend, config: StoreConfig, *, max_in_flight: int | None = None, stat_cache: StatCache | bool = True
    ) -> None:
        self.backend = backend
        #: the record of hashed local files (:mod:`casstore.objects.statcache`): True for this
        #: user's (unless ``CASSTORE_STAT_CACHE=0``), False for none
        self.stat_cache: StatCache | None = (
            default_stat_cache() if stat_cache is True else stat_cache if isinstance(stat_cache, StatCache) else None
        )
        self.config = config
        #: where content objects live, and whether a one-chunk file gets a recipe
        self.layout = config.layout
        self.chunker = Chunker(config.chunker)
        self.max_in_flight = _max_in_flight(max_in_flight, backend)
        self._lock = threading.Lock()
        self._idle: list[bytearray] = []  # read buffers kept for the next put (see _take_buffers)
        #: chunks and bytes this store object has written (not deduplicated away)
        self.chunks_written = 0
        self.bytes_written = 0

    @property
    def _batched(self) -> bool:
        """Whether chunks go to the backend in batches of concurrent requests (a remote
        store), rather than one by one from the writer threads (a local disk): then no
        storing pass over maps is taken, and no hint is written or followed."""
        return self.backend.concurrency > 1

    def _count(self, chunks: int, nbytes: int) -> None:
        with self._lock:
            self.chunks_written += chunks
            self.bytes_written += nbytes

    # ---- writing -----------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview) -> Stored:
        """Store ``data``; return its ``(digest, size)``."""
        view = memoryview(data).cast("B")
        digest = hash_bytes(view)
        if not self.layout.recipe_for_one_chunk and 0 < len(view) <= self.config.chunker.min_size:
            # certainly one chunk, the file itself: one idempotent put (it freshens a stored one)
            if self.backend.put_blob(self.layout.chunk_key(digest), view):
                self._count(1, len(view))
            return Stored(digest, len(view))
        if self._freshen_stored(digest, len(view)):
            return Stored(digest, len(view))
        sink = _ChunkSink(self)
        chunks: list[tuple[str, int]] = []
        try:
            for ch in self.chunker.cut_buffer(view):
                # content that is one chunk is named by the digest already computed
                d = digest if len(ch) == len(view) else hash_bytes(ch)
                chunks.append((d, len(ch)))
                sink.add(d, ch)
        finally:
            sink.close()
        self._put_recipe(digest, Recipe(len(view), tuple(chunks)))
        return Stored(digest, len(view))

    def put_stream(self, stream: IO[bytes], progress: Progress | None = None) -> Stored:
        """Store everything read from a binary stream, in one pass."""
        stored, recipe = self._store_stream(stream, progress)
        self._put_recipe(stored.digest, recipe)  # or freshen the existing one
        return stored

    def put_file(self, path: str | os.PathLike[str], progress: Progress | None = None) -> Stored:
        """Store a local file; return its ``(digest, size)``.

        New content is read once (chunked, hashed and written in one pass). Content the
        store already has costs one hash pass and one existence check: when the file's
        first chunk is stored already, the whole file is hashed first, and nothing more
        is done if the store has it. A file that changes meanwhile is refused.

        A file larger than 8 MiB that this machine hashed before and that is unchanged
        since (its status as then, see :mod:`casstore.objects.statcache`) is not read at
        all when the store holds its content whole: one lookup and the store's checks.
        """
        path = os.fspath(path)
        fd, before = _open_local(path)
        return self._put_open(fd, path, before, progress)

    def put_or_read(self, path: str | os.PathLike[str], limit: int) -> tuple[Stored, bytes | None]:
        """Store a local file as :meth:`put_file` does, unless it is a regular file of at
        most ``limit`` bytes (``limit`` > 0): that one is only read, with the same checks,
        and its content returned beside its ``(digest, size)``, for the caller to keep
        (an artifact held in its run record). One open either way."""
        path = os.fspath(path)
        fd, before = _open_local(path)
        if not _is_small(before, limit):
            return self._put_open(fd, path, before, None), None
        try:
            data = _read_whole(fd, path, before)
        finally:
            os.close(fd)
        return Stored(hash_bytes(data), len(data)), data

    def _put_open(self, fd: int, path: str, before: os.stat_result, progress: Progress | None) -> Stored:
        """:meth:`put_file` of the file open as ``fd`` (status ``before``), which this closes."""
        owned = True  # until a file object takes the descriptor over
        try:
            if stat_mod.S_ISREG(before.st_mode) and before.st_size <= _READ_BLOCK:
                stored = self.put_bytes(_read_whole(fd, path, before))
                if progress:
                    progress(stored.size)
                return stored
            f = open(fd, "rb")
            owned = False
        finally:
            if owned:
                os.close(fd)
        with f:
            if not stat_mod.S_ISREG(before.st_mode):
                # a pipe or device: one streaming pass
                return self.put_stream(f, progress)
            cache = self.stat_cache
            if cache is not None:
                known = cache.lookup(before)  # hashed before, unchanged since
                found = self._reuse_stored(f, before, known, progress) if known is not None else None
                if found is not None:
                    return found
            started = time.time_ns()
            stored = self._put_regular(f, path, before, progress)
            if cache is not None:
                cache.record(before, stored.digest, started)
            return stored

    def _put_regular(self, f: IO[bytes], path: str, before: os.stat_result, progress: Progress | None) -> Stored:
        """:meth:`put_file` of the regular file larger than one read block open as ``f``
        (status ``before``): its ``(digest, size)``, hashed from its bytes, once the store
        holds it; :class:`LocalFileError` if it changed meanwhile."""
        try:
            expected = None
            result: tuple[Stored, Recipe] | None = None  # from a storing pass over maps
            # (never with a progress callback, which must not run while this process
            # holds a lease: one that opened the file for writing would wait for it)
            first = self._first_chunk_stored(f)
            hints = self._hints(first, before.st_size) if first is not None and progress is None else []
            like: Recipe | None = None  # the recipe a new version follows, read once needed
            if hints and all(n != before.st_size for n, _ in hints):
                # a new version of a stored file, of another size than any: stored in one
                # pass that follows the closest one's recipe and hashes the whole beside it
                like = self._first_recipe(hints)
                if like is not None:
                    with FileLease(f.fileno()) as lease:
                        if lease.held:
                            result = self._store_like(lease, before, None, like)
            if result is None and first is not None:
                h = new_hasher()
                with FileLease(f.fileno()) as lease:
                    done = hash_leased(lease, h)
                    if lease.held and done == lease.size:
                        # all of it hashed in place, under the lease: while it holds, the
                        # file is what was hashed, and the storing pass may map it too
                        expected = h.hexdigest()
                        found = self._reuse_stored(f, before, expected, progress)
                        if found is not None:
                            return found
                        if progress is None:
                            if like is None:
                                like = self._first_recipe(hints)
                            if like is not None:
                                result = self._store_like(lease, before, expected, like)
                            if result is None:
                                result = self._store_leased(lease, before, expected)
                if expected is None:
                    expected = self._hash_rest(f, h, done)
                    found = self._reuse_stored(f, before, expected, progress)
                    if found is not None:
                        return found
            elif result is None and progress is None:
                with FileLease(f.fileno()) as lease:
                    result = self._store_leased(lease, before, None)
            if result is None:
                f.seek(0)
                result = self._store_stream(f, progress)
            stored, recipe = result
            after = os.fstat(f.fileno())
        except CasstoreError:
            raise  # the store failed (StoreUnavailableError is an OSError too), not the file
        except OSError as e:
            raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
        if (expected is not None and stored.digest != expected) or stored.size != after.st_size or _changed(before, after):
            raise LocalFileError(
                f"{path!r} changed while it was being stored (size {before.st_size} -> {after.st_size}, "
                f"read {stored.size} bytes); nothing was recorded. Log it again once it is no longer being written."
            )
        self._put_recipe(stored.digest, recipe)  # or freshen the existing one
        return stored

    def read_small_file(self, path: str | os.PathLike[str], limit: int) -> bytes | None:
        """The content of the regular file ``path`` if it has at most ``limit`` bytes, read
        with the checks of :meth:`put_file` (missing, unreadable, a directory, changed while
        read: :class:`LocalFileError`); None for a larger file or one that is not regular."""
        path = os.fspath(path)
        fd, before = _open_local(path)
        try:
            return _read_whole(fd, path, before) if _is_small(before, limit) else None
        finally:
            os.close(fd)

    def _first_chunk_stored(self, f: IO[bytes]) -> str | None:
        """The digest of the file's first chunk if it is in the store: the hint that the
        whole file may be, or a version of it (a wrong guess costs time, never
        correctness); else None. Leaves ``f`` at its start."""
        head = f.read(self.config.chunker.max_size)  # enough to cut the first chunk exactly
        f.seek(0)
        if not head:
            return None
        first = hash_bytes(next(iter(self.chunker.cut_buffer(head))))
        return first if self.backend.exists(self.layout.chunk_key(first)) else None

    def _hints(self, first: str, size: int) -> list[tuple[int, str]]:
        """The stored files that begin with chunk ``first``, as their hints name them
        (:meth:`_put_recipe`): ``(size, digest)``, the closest in size to ``size`` first.
        None looked for where they would not be followed (a store that batches its chunks,
        such as S3, where no pass over maps is taken)."""
        if self._batched:
            return []
        found = []
        for key in self.backend.list(self.layout.hint_prefix(first)):
            hint = self.layout.parse_hint(key)
            if hint is not None and hint[0] == first:
                found.append((abs(hint[1] - size), hint[1], hint[2]))
        return [(n, d) for _, n, d in sorted(found)]

    def _first_recipe(self, hints: list[tuple[int, str]]) -> Recipe | None:
        """The recipe of the first of ``hints`` (:meth:`_hints`) that leads to one, of the
        first :data:`_HINTS_TRIED`; None if none does. A hint is only a guess: what is taken
        from it is checked."""
        for _, digest in hints[:_HINTS_TRIED]:
            try:
                return self.recipe(digest)
            except CasstoreError:
                continue  # its file is gone (gc) or its recipe damaged: the next one
        return None

    def _reuse_stored(self, f: IO[bytes], before: os.stat_result, digest: str, progress: Progress | None) -> Stored | None:
        """The file open as ``f`` (status ``before``), hashed to ``digest``, if the store
        holds that content (freshened) and the file was not written to meanwhile; None if
        it must be stored (a file that changed goes on to the storing pass, which refuses it)."""
        if _changed(before, os.fstat(f.fileno())) or not self._freshen_stored(digest, before.st_size):
            return None
        if progress:
            progress(before.st_size)
        return Stored(digest, before.st_size)

    def _hash_rest(self, f: IO[bytes], h: Any, done: int) -> str:
        """Finish ``h``, the BLAKE3 of an open local file fed its first ``done`` bytes (in
        place, :func:`hash_leased`), by reading the rest: one block is read while the
        previous one is hashed. The reads go into two reused buffers of a few MiB, which
        stay in the processor's cache between the read and the hash."""
        f.seek(done)
        bufs = self._take_buffers(2)
        pending: Future[object] | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="casstore-hash") as pool:
                for i in itertools.count():
                    view = memoryview(bufs[i % 2])[:_HASH_BLOCK]
                    n = f.readinto(view)  # type: ignore[attr-defined]
                    if pending is not None:
                        pending.result()
                    if not n:
                        break
                    pending = pool.submit(h.update, view[:n])
        finally:
            self._keep_buffers(bufs)  # the pool is shut down: no thread reads them
        return str(h.hexdigest())

    def _store_leased(self, lease: FileLease, before: os.stat_result, digest: str | None) -> tuple[Stored, Recipe] | None:
        """The storing pass over memory maps of a local file under ``lease`` (held): its
        chunks are cut where they lie in the page cache, not copied into buffers, and
        hashed and written by the writer threads. A file hashed whole to ``digest`` under
        this lease (a new version of a large file, mostly stored already) is not hashed
        whole again, since the lease kept it as it was hashed; with ``digest`` None (new
        content) a thread hashes the whole from the same maps.

        Returns the file's ``(digest, size)`` and recipe, as :meth:`_store_stream` does (the
        caller checks the file and writes the recipe), or None when this pass cannot be
        used or must stop (a remote store, which batches its chunks; a writer waiting for
        the lease; a slow window; a file that cannot be mapped): the caller then stores
        the file by reading it. Writes in flight are waited for before a map is let go,
        so a writer waits for one window and those writes."""
        size = lease.size
        sink = self._mapped_sink(lease, before)
        if sink is None:
            return None
        chunks: list[tuple[Future[str], int]] = []
        live: deque[tuple[list[Future[Any]], mmap.mmap]] = deque()  # maps the writers may still read
        pos = 0
        writer = ThreadPoolExecutor(_WRITERS, thread_name_prefix="casstore-write")
        whole = _HashBeside(digest)
        try:
            while pos < size:
                start = time.monotonic()
                base = pos - pos % mmap.ALLOCATIONGRANULARITY
                n = min(base + _MAP_WINDOW, size) - base
                window = lease.map(base, n, ahead=_MAP_WINDOW)
                if window is None:
                    break
                cut, used = self.chunker.cut_block(memoryview(window)[pos - base :], final=base + n == size)
                named = [writer.submit(_name_and_add, sink, ch) for ch in cut]
                chunks += zip(named, map(len, cut))
                del cut  # the writers hold the chunks they have yet to write
                users: list[Future[Any]] = list(named)
                hashing = whole.add(memoryview(window), base)
                if hashing is not None:
                    users.append(hashing)
                live.append((users, window))
                if len(live) > 2:
                    _wait_all(live.popleft()[0])  # and its map goes with its last view
                pos += used
                if not lease.intact() or time.monotonic() - start > mapped_mod.SLOW:
                    break
            if pos == size:  # all of it cut while the lease held
                for users, _ in live:
                    _wait_all(users)
        finally:
            writer.shutdown(wait=True)  # no thread reads a map once this returns
            whole.close()
            live.clear()
            sink.close()
        if pos != size:
            return None
        return Stored(whole.result(), size), Recipe(size, tuple((d.result(), n) for d, n in chunks))

    def _mapped_sink(self, lease: FileLease, before: os.stat_result) -> _ChunkSink | None:
        """The chunk sink of a storing pass over maps of the file under ``lease``, or None
        where no such pass may be taken: a store that batches its chunks, the lease lost,
        the file changed since ``before``."""
        if self._batched or not lease.intact() or _changed(before, os.fstat(lease.fd)):
            return None
        return _ChunkSink(self)

    def _store_like(self, lease: FileLease, before: os.stat_result, digest: str | None, like: Recipe) -> tuple[Stored, Recipe] | None:
        """The storing pass for a new version of a stored file, under ``lease`` (held):
        ``like`` is the recipe of a stored file that begins as this one does (found by
        :meth:`_hints`). A file hashed whole to ``digest`` under this lease is not hashed
        whole again; with ``digest`` None a thread hashes the whole from the same maps.

        A cut is decided by the bytes from the chunk's start to the cut alone, so where
        this file holds, from a cut on, the bytes of a chunk of ``like`` (not its last,
        which the end of that file cut), the chunker would cut that chunk here too. So the
        chunks of ``like`` are laid from each cut and checked by their hash, in worker
        threads, rather than found by cutting; where one does not match, the chunker cuts
        as usual until a chunk it cuts is a chunk of ``like`` (or starts where one did,
        the edit having kept its size) and the guesses go on from there. The recipe is the
        one cutting the whole file would give; only cutting is saved, and the chunks
        hashed once. After :data:`_MISSES_MAX` misses in a row the rest is cut.

        Returns as :meth:`_store_leased`, and None where it cannot be used or must stop."""
        size = lease.size
        sink = self._mapped_sink(lease, before)
        if sink is None:
            return None
        max_size = self.config.chunker.max_size
        old = like.chunks
        offsets = list(itertools.accumulate((n for _, n in old), initial=0))  # where each chunk of ``like`` starts
        starts = {o: i for i, o in enumerate(offsets[:-1])}
        after = {d: i + 1 for i, (d, _) in reversed(list(enumerate(old)))}  # past the first place of each chunk
        out: list[tuple[str, int]] = []
        pos = base = 0
        shift = 0  # ``like``'s offset less this file's, as of the last chunk found in both
        nxt: int | None = 0  # the chunk of ``like`` guessed to start at ``pos``, if any
        misses = 0  # chunks cut in a row without finding ``like`` again
        view: memoryview | None = None
        span = max(_MAP_WINDOW, 2 * max_size)  # a window holds a whole chunk from any cut in its first half
        start = time.monotonic()
        pool = ThreadPoolExecutor(_HASHERS, thread_name_prefix="casstore-hash")
        whole = _HashBeside(digest)
        try:
            while pos < size:
                if view is None or pos + min(max_size, size - pos) > base + len(view):
                    start = time.monotonic()
                    base = pos - pos % mmap.ALLOCATIONGRANULARITY
                    window = lease.map(base, min(base + span, size) - base, ahead=span)
                    if window is None:
                        return None
                    view = memoryview(window)
                    del window  # the map goes with the last view of it
                    whole.add(view, base)
                end = base + len(view)
                guesses: list[tuple[str, int, Future[bool]]] = []
                k = nxt if misses < _MISSES_MAX else None
                p = pos
                while k is not None and k < len(old):
                    d, n = old[k]
                    if p + n > end or not 0 < n <= max_size or (k == len(old) - 1 and p + n != size):
                        break  # past this window; no chunk this store cuts; cut by the end of ``like``
                    guesses.append((d, n, pool.submit(_same_and_add, sink, view[p - base : p + n - base], d)))
                    p += n
                    k += 1
                hits = 0
                for d, n, same in guesses:  # in order, up to the first miss
                    if not same.result():
                        break
                    out.append((d, n))
                    pos += n
                    hits += 1
                for _, _, same in guesses[hits:]:
                    if not same.cancel():
                        same.result()  # no thread reads this window once it is let go
                if hits:
                    misses = 0
                    assert nxt is not None
                    nxt += hits
                missed = hits < len(guesses)
                if not missed and nxt is not None and nxt < len(old) and max_size >= old[nxt][1] > end - pos and end < size:
                    continue  # the next guess runs past this window: map the next one
                if pos < size:
                    if pos + min(max_size, size - pos) > end:
                        continue  # the chunk to cut runs past this window
                    chunk = next(iter(self.chunker.cut_buffer(view[pos - base : min(pos + max_size, size) - base])))
                    d = _name_and_add(sink, chunk)
                    out.append((d, len(chunk)))
                    pos += len(chunk)
                    if d in after:  # found in ``like`` again: go on from there
                        nxt, misses = after[d], 0
                        shift = offsets[nxt] - pos
                    else:  # an edit of the same size leaves the cuts after it where they were
                        nxt, misses = starts.get(pos + shift), misses + 1
                if not lease.intact() or time.monotonic() - start > mapped_mod.SLOW:
                    return None
        finally:
            pool.shutdown(wait=True)  # no thread reads a map once this returns
            whole.close()
            view = None
            sink.close()
        return Stored(whole.result(), size), Recipe(size, tuple(out))

    def _store_stream(self, stream: IO[bytes], progress: Progress | None) -> tuple[Stored, Recipe]:
        """The storing pass: cut, hash and store the chunks of a stream; return its digest,
        size and recipe (the caller writes the recipe).

        Work overlaps in threads (BLAKE3, reads and writes release the GIL): one reads
        ahead, one hashes the whole stream block by block, this one cuts chunks (and
        on remote stores hashes them), and on a local disk ``_WRITERS`` threads hash and
        write them. Blocks go into a small ring of buffers, each with ``max_size`` bytes
        in front for the previous block's uncut tail, so only that tail is ever copied. A buffer is refilled only once the hash
        and the writes reading it are done.
        """
        reserve = self.config.chunker.max_size
        block = self._buffer_size() - reserve
        sink = _ChunkSink(self)
        # remote stores copy the chunks they hold (max_in_flight): three blocks suffice
        ring = self._take_buffers(_RING if not sink.batched else 3)
        nbufs = len(ring)
        users: list[list[Future[Any]]] = [[] for _ in ring]
        whole = new_hasher(parallel=False)  # its own thread: the other cores are busy already
        chunks: list[tuple[str | Future[str], int]] = []
        size = 0
        fill = _filler(stream)
        reader = ThreadPoolExecutor(1, thread_name_prefix="casstore-read")
        hasher = ThreadPoolExecutor(1, thread_name_prefix="casstore-hash")
        writer = None if sink.batched else ThreadPoolExecutor(_WRITERS, thread_name_prefix="casstore-write")
        try:
            reading = reader.submit(fill, memoryview(ring[0])[reserve:])
            tail = memoryview(b"")
            for i in itertools.count():
                buf = memoryview(ring[i % nbufs])
                n = reading.result()
                final = n < block
                start = reserve - len(tail)
                buf[start:reserve] = tail  # tail points into the previous buffer, still untouched
                if n:
                    users[i % nbufs].append(hasher.submit(whole.update, buf[reserve : reserve + n]))
                if not final:
                    _wait_all(users[(i + 1) % nbufs])
                    reading = reader.submit(fill, memoryview(ring[(i + 1) % nbufs])[reserve:])
                view = buf[start : reserve + n]
                cut, used = self.chunker.cut_block(view, final)
                for ch in cut:
                    size += len(ch)
                    if writer is None:
                        d = hash_bytes(ch, parallel=False)
                        chunks.append((d, len(ch)))
                        sink.add(d, ch)  # copies what it keeps
                    else:
                        # a writer names the chunk, then stores it: this thread only cuts
                        named = writer.submit(_name_and_add, sink, ch)
                        users[i % nbufs].append(named)
                        chunks.append((named, len(ch)))
                    if progress:
                        progress(len(ch))
                tail = view[used:]
                if final:
                    break
            for u in users:
                _wait_all(u)
        except BaseException:
            with contextlib.suppress(Exception):
                sink.close()  # shut its threads down; the first error is the one to report
            raise
        else:
            sink.close()
        finally:
            for pool in (reader, hasher, writer):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
            self._keep_buffers(ring)  # no thread reads them any more
        listed = tuple((d if isinstance(d, str) else d.result(), n) for d, n in chunks)
        return Stored(whole.hexdigest(), size), Recipe(size, listed)

    def _buffer_size(self) -> int:
        """One read buffer: a block of at least two maximum chunks, after a margin of one."""
        max_size = self.config.chunker.max_size
        return max_size + max(_READ_BLOCK, 2 * max_size)

    def _take_buffers(self, count: int) -> list[bytearray]:
        """``count`` read buffers: idle ones first (fresh ones cost tens of MiB of page
        faults per put), then new ones. Concurrent puts each get their own."""
        with self._lock:
            bufs, self._idle = self._idle[:count], self._idle[count:]
        return bufs + [bytearray(self._buffer_size()) for _ in range(count - len(bufs))]

    def _keep_buffers(self, bufs: list[bytearray]) -> None:
        """Keep up to one ring of buffers for the next put; memory stays one ring."""
        with self._lock:
            self._idle = (self._idle + bufs)[:_RING]

    def _put_recipe(self, digest: str, recipe: Recipe) -> None:
        """Write (or freshen) a file's recipe, its chunks being stored; in a version-2 store,
        not for a file that is one chunk: that chunk, of the file's digest, is the file.

        A file larger than a read block gets a hint as well (an empty object named by its
        first chunk, its size and its digest), by which a later version of it, which
        begins with the same chunk, finds this recipe (:meth:`_hints`); not in a store
        that batches its chunks, where no one follows them."""
        if not self.layout.recipe_for_one_chunk and _is_own_chunk(digest, recipe):
            return
        self.backend.put_blob(self.layout.recipe_key(digest), recipe.encode())
        if recipe.size > _READ_BLOCK and len(recipe.chunks) > 1 and not self._batched:
            self.backend.put_blob(self.layout.hint_key(recipe.chunks[0][0], recipe.size, digest), b"")

    def _freshen_stored(self, digest: str, size: int) -> bool:
        """Freshen the file ``digest`` of ``size`` bytes if the store holds it as this store's
        version writes it; False if it must be stored. In version 1 that is its recipe. In
        version 2 a file no larger than the chunker's maximum may be one chunk, so its chunk
        is tried first, then its recipe; the empty file and larger ones have a recipe. (A
        file of at most the minimum, certainly one chunk, never comes here: ``put_bytes``
        puts its chunk at once.)"""
        recipe = self.layout.recipe_key(digest)
        if not self.layout.recipe_for_one_chunk and 0 < size <= self.config.chunker.max_size:
            chunk = self.layout.chunk_key(digest)
            if self.backend.touch(chunk):
                return self._whole(chunk, size)  # if not, storing the file again replaces it
        return self.backend.touch(recipe) and self._whole_by_recipe(digest, size)

    def _whole(self, key: str, size: int) -> bool:
        """Whether the object ``key`` holds ``size`` bytes, where an object may be partial: a
        power loss can leave a local file under its name without its data, and a generic
        fsspec file system publishes non-atomically. Where every object is whole once seen
        (``Backend.whole_objects``), that is not asked."""
        return self.backend.whole_objects or self.backend.sizes_many([key]) == [size]

    def _whole_by_recipe(self, digest: str, size: int) -> bool:
        """Whether the stored recipe of the file ``digest`` of ``size`` bytes, and each chunk
        it lists, is whole (see :meth:`_whole`), before a writer takes the file as stored.
        A damaged recipe is removed, so that storing the file again writes it anew."""
        if self.backend.whole_objects:
            return True
        key = self.layout.recipe_key(digest)
        try:
            recipe = Recipe.decode(self.backend.get(key), f"recipe {key}")
        except ObjectNotFoundError:
            return False
        except CorruptRecordError:
            recipe = None
        if recipe is None or recipe.size != size:
            self.backend.delete(key)
            return False
        sizes = self.backend.sizes_many([self.layout.chunk_key(d) for d, _ in recipe.chunks])
        return all(got == n for got, (_, n) in zip(sizes, recipe.chunks))

    def flush(self) -> None:
        """Durability barrier: data written so far survives a power loss once this returns."""
        self.backend.flush()

    # ---- reading -----------------------------------------------------------------

    def _file_keys(self, digest: str) -> tuple[str, str]:
        """The keys a stored file is found under, the likelier first: its recipe, or its
        chunk (a file of one chunk, stored without a recipe in a version-2 store)."""
        recipe, chunk = self.layout.recipe_key(digest), self.layout.chunk_key(digest)
        return (recipe, chunk) if self.layout.recipe_for_one_chunk else (chunk, recipe)

    def touch_file(self, digest: str) -> bool:
        """Freshen a stored file before a new reference to it is published (garbage
        collection keeps what was touched within its grace period): its recipe, which keeps
        its chunks, or the chunk that is the file. False if the store has no such file."""
        return any(self.backend.touch(k) for k in self._file_keys(check_digest(digest)))

    def has_file(self, digest: str) -> bool:
        """Whether the store holds the file ``digest``: a recipe, or a chunk of that digest."""
        return any(self.backend.exists(k) for k in self._file_keys(check_digest(digest)))

    def missing_files(self, digests: Sequence[str]) -> list[str]:
        """The digests in ``digests`` the store holds neither a recipe nor a chunk of."""
        keys = [self._file_keys(check_digest(d)) for d in digests]
        found = self.backend.exists_many([k[0] for k in keys])
        rest = [i for i, ok in enumerate(found) if not ok]
        for i, ok in zip(rest, self.backend.exists_many([keys[i][1] for i in rest])):
            found[i] = ok
        return [d for d, ok in zip(digests, found) if not ok]

    def recipe(self, digest: str, *, pin: str | None = None) -> Recipe:
        """The recipe of a stored file; :class:`ObjectNotFoundError` if there is none. A file
        stored as one chunk of its own digest, without a recipe, has a recipe of that chunk.

        ``pin`` is the BLAKE3 of the recipe's bytes as a model entry records it (see
        :meth:`recipe_pin`): the bytes are checked against it before they are decoded, and
        a mismatch is an :class:`IntegrityError`. A recipe that matches its pin lists the
        chunks that make up the file, so chunks verified one by one verify the file."""
        digest = check_digest(digest)
        if pin is not None:
            key = self.layout.recipe_key(digest)
            data = self._recipe_bytes(digest)
            actual = hash_bytes(data)
            if actual != pin:
                raise IntegrityError(f"recipe {key}", pin, actual, "it is not the recipe pinned for this file")
            return Recipe.decode(data, f"recipe {key}")
        chunk = self.layout.chunk_key(digest)
        for key in self._file_keys(digest):
            try:
                if key == chunk:
                    size = self.backend.info(key).size
                    return Recipe(size, ((digest, size),))
                return Recipe.decode(self.backend.get(key), f"recipe {key}")
            except ObjectNotFoundError:
                continue
        raise ObjectNotFoundError(f"no file with digest {digest} in store {self.backend.url}")

    def _recipe_bytes(self, digest: str) -> bytes:
        try:
            return self.backend.get(self.layout.recipe_key(digest))
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"no recipe for file {digest} in store {self.backend.url}") from e

    def recipe_pin(self, digest: str, path: str | os.PathLike[str]) -> str | None:
        """The BLAKE3 of the stored recipe of ``digest``, once its chunks are checked to make
        up the local file ``path`` (each chunk's length and digest): what a writer that has
        just stored ``path`` records to pin the recipe. None for a file stored as one chunk
        without a recipe: that chunk, verified, is the file, so there is nothing to pin.
        :class:`IntegrityError` if the stored recipe does not describe the file."""
        digest = check_digest(digest)
        key = self.layout.recipe_key(digest)
        try:
            data = self.backend.get(key)
        except ObjectNotFoundError:
            if self.backend.exists(self.layout.chunk_key(digest)):
                return None
            raise ObjectNotFoundError(f"no file with digest {digest} in store {self.backend.url}") from None
        recipe = Recipe.decode(data, f"recipe {key}")
        path = os.fspath(path)
        try:
            with open(path, "rb") as f, ThreadPoolExecutor(2, thread_name_prefix="casstore-pin") as pool:
                window: list[tuple[str, Future[str]]] = []
                for d, n in recipe.chunks:
                    piece = f.read(n)
                    if len(piece) != n:
                        raise IntegrityError(f"recipe {key}", digest, digest, f"it lists more bytes than {path!r} holds")
                    window.append((d, pool.submit(hash_bytes, piece, parallel=False)))
                    if len(window) > 4:
                        _check_piece(key, *window.pop(0))
                for item in window:
                    _check_piece(key, *item)
                if f.read(1):
                    raise IntegrityError(f"recipe {key}", digest, digest, f"it lists fewer bytes than {path!r} holds")
        except OSError as e:
            raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
        return hash_bytes(data)

    def read_chunk(self, digest: str, length: int | None = None) -> bytes:
        """One chunk's bytes, verified against its digest."""
        data = self._get_chunk(digest)
        return self._checked_chunk(digest, length, data, hash_bytes(data, parallel=False))  # reads overlap in threads already

    @contextlib.contextmanager
    def _chunk_key(self, digest: str) -> Iterator[str]:
        """The chunk's key, for a read in the ``with`` body: a missing chunk is named as one."""
        try:
            yield self.layout.chunk_key(digest)
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"chunk {digest} is missing from store {self.backend.url}") from e

    def _get_chunk(self, digest: str) -> bytes:
        """One chunk's bytes as stored, not verified yet."""
        with self._chunk_key(digest) as key:
            return self.backend.get(key)

    def _hashed_chunk(self, digest: str, into: bytearray) -> tuple[bytes | bytearray, str]:
        """One chunk's bytes as stored, read into ``into`` where they fit
        (:meth:`Backend.get_into`), and their BLAKE3."""
        with self._chunk_key(digest) as key:
            data = self.backend.get_into(key, into)
        return data, hash_bytes(data, parallel=False)

    def _checked_chunk(self, digest: str, length: int | None, data: BytesT, actual: str) -> BytesT:
        """``data``, once its BLAKE3 ``actual`` and its length are those the recipe gives."""
        if actual != digest:
            raise IntegrityError(f"chunk {self.layout.chunk_key(digest)}", digest, actual)
        if length is not None and len(data) != length:
            raise IntegrityError(f"chunk {self.layout.chunk_key(digest)}", digest, actual, f"it has {len(data)} bytes, the recipe says {length}")
        return data

    def read_chunks(self, chunks: Sequence[tuple[str, int]]) -> Iterator[bytes | bytearray]:
        """The chunks ``(digest, length)`` in order, each verified before it is yielded; the
        whole they make up is not checked (see :meth:`iter_file`, and :meth:`recipe` with a pin).

        Worker threads read and hash them ahead. On a local store the calling thread
        allocates the memory each chunk is read into (:func:`casstore._buffers.unfilled`):
        it is then of the caller's heap, so a caller that keeps many chunks and frees them
        as it allocates (a model being unpickled) reuses that memory rather than faulting
        in as much again, while the workers fault the pages in, reading, beside it."""
        if self.backend.concurrency > 1 or len(chunks) <= 1:
            return self._fetch_chunks(chunks)
        return self._read_here(chunks)

    def _prefetching(self, chunks: Sequence[tuple[str, int]]) -> Iterator[tuple[str, int]]:
        """``chunks`` in order, each asked of the backend (:meth:`Backend.prefetch`) a window
        of :data:`_PREFETCH` chunks before it is yielded: cold chunks are read ahead."""
        keys = [self.layout.chunk_key(d) for d, _ in chunks]
        self.backend.prefetch(keys[:_PREFETCH])
        for i, chunk in enumerate(chunks):
            if i + _PREFETCH < len(keys):
                self.backend.prefetch(keys[i + _PREFETCH : i + _PREFETCH + 1])
            yield chunk

    def _read_here(self, chunks: Sequence[tuple[str, int]]) -> Iterator[bytes | bytearray]:
        heap_up_to(max(n for _, n in chunks))
        with ThreadPoolExecutor(_READERS, thread_name_prefix="casstore-read") as pool:
            pending: deque[tuple[str, int, Future[tuple[bytes | bytearray, str]]]] = deque()
            for d, n in self._prefetching(chunks):
                pending.append((d, n, pool.submit(self._hashed_chunk, d, unfilled(n))))
                if len(pending) > 2 * _READERS:
                    d, n, read = pending.popleft()
                    yield self._checked_chunk(d, n, *read.result())
            while pending:
                d, n, read = pending.popleft()
                yield self._checked_chunk(d, n, *read.result())

    def iter_file(self, digest: str, progress: Progress | None = None) -> Iterator[bytes]:
        """Yield a stored file's content chunk by chunk, each verified before it is yielded;
        the whole-file digest is checked after the last chunk. A malformed digest or a
        missing file raises here, before anything is yielded."""
        digest = check_digest(digest)
        return _reporting(self._iter_whole(digest, self.recipe(digest)), progress)

    def iter_by_recipe(
        self, digest: str, recipe: Recipe, *, pinned: bool = False, progress: Progress | None = None
    ) -> Iterator[bytes | bytearray]:
        """Yield the file ``digest`` through ``recipe`` (from :meth:`recipe`), each chunk
        verified before it is yielded. The whole is hashed against ``digest`` as well, unless
        ``pinned``: a recipe that matched its pin lists the chunks that make up the file,
        which are then read as :meth:`read_chunks` reads them."""
        if pinned and not _is_own_chunk(digest, recipe):
            return _reporting(self.read_chunks(recipe.chunks), progress)
        return _reporting(self._iter_whole(digest, recipe), progress)

    def _iter_whole(self, digest: str, recipe: Recipe) -> Iterator[bytes]:
        """The file through its recipe, each chunk verified and the whole hashed against ``digest``."""
        if _is_own_chunk(digest, recipe):
            # one chunk of the file's own digest: verifying the chunk verifies the file
            yield self.read_chunk(digest, recipe.size)
            return
        # the whole-file hash runs in a thread of its own, one chunk behind at most
        whole = new_hasher(parallel=False)
        with ThreadPoolExecutor(1, thread_name_prefix="casstore-hash") as hasher:
            pending: Future[object] | None = None
            for data in self._fetch_chunks(recipe.chunks):
                if pending is not None:
                    pending.result()
                pending = hasher.submit(whole.update, data)
                yield data
            if pending is not None:
                pending.result()
        actual = whole.hexdigest()
        if actual != digest:
            raise IntegrityError(f"file {digest}", digest, actual, "its chunks do not make up the recorded file")

    def _fetch_chunks(self, chunks: Sequence[tuple[str, int]]) -> Iterator[bytes]:
        """The chunks, in order, each verified; read ahead by worker threads (on a local
        disk one, two chunks ahead, so reading and hashing overlap with their use)."""
        if len(chunks) <= 1:
            for d, n in chunks:
                yield self.read_chunk(d, n)
            return
        window = self.max_in_flight if self.backend.concurrency > 1 else 2
        with ThreadPoolExecutor(max(1, self.backend.concurrency), thread_name_prefix="casstore-get") as pool:
            futs: list[Future[bytes]] = []
            it = self._prefetching(chunks)
            for d, n in it:
                futs.append(pool.submit(self.read_chunk, d, n))
                if len(futs) >= window:
                    break
            i = 0
            while i < len(futs):
                data = futs[i].result()
                futs[i] = None  # type: ignore[call-overload]
                i += 1
                nxt = next(it, None)
                if nxt is not None:
                    futs.append(pool.submit(self.read_chunk, nxt[0], nxt[1]))
                yield data

    def get_bytes(self, digest: str) -> bytes:
        """A stored file's whole content, verified."""
        return b"".join(self.iter_file(digest))

    def open(self, digest: str) -> IO[bytes]:
        """A read-only binary file object over a stored file (verified as it is read)."""
        return open_chunks(self.iter_file(digest))

    def get_file(self, digest: str, dest: str | os.PathLike[str], progress: Progress | None = None) -> None:
        """Write a stored file to ``dest``: into a temp file beside it, renamed into place only
        after the whole content verified. ``dest`` is never left partly written."""
        chunks = self.iter_file(digest, progress)  # a bad or unknown digest fails before any write
        write_chunks(chunks, dest)

    def verify_file(self, digest: str) -> None:
        """Re-hash every chunk of a stored file and the whole; raise on any mismatch."""
        for _ in self.iter_file(digest):
            pass

    def chunk_digests(self, digest: str) -> list[str]:
        """The chunk digests a stored file is made of, in order."""
        return [d for d, _ in self.recipe(digest).chunks]

    def iter_recipes(self) -> Iterable[str]:
        """Digests of every stored recipe (a file of one chunk may have none: see :meth:`recipe`)."""
        return self.layout.stored(self.backend, "files")

    def iter_chunks(self) -> Iterable[str]:
        """Digests of every stored chunk."""
        return self.layout.stored(self.backend, "chunks")


def write_chunks(chunks: Iterable[bytes | bytearray], dest: str | os.PathLike[str]) -> None:
    """Write ``chunks`` (a verifying iterator) to ``dest``: into a temp file beside it,
    renamed into place only once the iterator is exhausted without error, so ``dest`` is
    never left partly written."""
    dest = os.fspath(dest)
    d = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(d, f".{os.path.basename(dest)}.casstore-{uuid.uuid4().hex[:12]}.part")
    try:
        os.makedirs(d, exist_ok=True)
        with open(tmp, "wb") as out:
            for data in chunks:
                out.write(data)
        os.replace(tmp, dest)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, CasstoreError):
            raise LocalFileError(f"cannot write {dest!r}: {e.strerror or e}") from e
        raise


def _is_own_chunk(digest: str, recipe: Recipe) -> bool:
    """Whether a file is exactly one chunk, whose digest is then the file's."""
    return len(recipe.chunks) == 1 and recipe.chunks[0][0] == digest


def _reporting(chunks: Iterator[BytesT], progress: Progress | None) -> Iterator[BytesT]:
    """``chunks``, each reported to ``progress`` as it is given."""
    for chunk in chunks:
        if progress:
            progress(len(chunk))
        yield chunk


def _check_piece(key: str, digest: str, hashed: Future[str]) -> None:
    actual = hashed.result()
    if actual != digest:
        raise IntegrityError(f"recipe {key}", digest, actual, "a chunk it lists is not the content being stored")


def open_chunks(chunks: Iterator[bytes | bytearray], buffer_size: int = 1 << 20) -> io.BufferedReader:
    """A binary file object that reads ``chunks`` in turn (a verifying iterator, whose
    errors its reads raise). It keeps no chunk it has read past."""
    return io.BufferedReader(_ChunksRaw(chunks), buffer_size=buffer_size)


class _ChunksRaw(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes | bytearray]) -> None:
        self._chunks: Iterator[bytes | bytearray] = chunks
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._view:
            try:
                self._view = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        out = memoryview(b).cast("B")
        n = min(len(out), len(self._view))
        out[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def close(self) -> None:
        self._chunks = iter(())
        self._view = memoryview(b"")
        super().close()
