"""The objects layer: files in, files out, every byte verified.

``put_file``/``put_bytes``/``put_stream`` cut content into FastCDC chunks, name
each chunk and the whole file by BLAKE3, store only the chunks the store lacks,
then the file's recipe. Reads re-hash every chunk before it is used and the
whole file at the end. Memory stays bounded by a few chunks whatever the size.

Write order: chunks, then the recipe (so a visible recipe's chunks are there).
Callers that publish a record referencing a file call :meth:`ObjectStore.flush`
between the two (the durability barrier).
"""

from __future__ import annotations

import io
import itertools
import os
import stat as stat_mod
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, NamedTuple

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, IntegrityError, InvalidInputError, LocalFileError, ObjectNotFoundError
from casstore.objects.chunking import Chunker
from casstore.objects.config import StoreConfig
from casstore.objects.digest import check_digest, fanout_key, hash_bytes, new_hasher
from casstore.objects.recipes import Recipe

__all__ = ["ObjectStore", "Stored", "EMPTY_DIGEST", "chunk_key", "recipe_key"]

EMPTY_DIGEST = hash_bytes(b"")

# block size of the hashing pass over a local file (two such buffers are in use)
_READ_BLOCK = 8 << 20

Progress = Callable[[int], None]


def chunk_key(digest: str) -> str:
    return fanout_key("chunks", digest)


def recipe_key(digest: str) -> str:
    return fanout_key("files", digest)


class Stored(NamedTuple):
    """What a put returns: the whole-content BLAKE3 digest and the size in bytes."""

    digest: str
    size: int


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


class _ChunkSink:
    """Sends chunks to the backend: directly on a local disk, in checked and concurrent
    batches on remote stores. At most ``window`` chunk copies are held at once."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.backend = store.backend
        self.batched = self.backend.concurrency > 1
        self.window = max(2, store.max_in_flight)
        self.pending: list[tuple[str, bytes]] = []
        self.pending_bytes = 0
        self.max_pending_bytes = self.window * store.config.chunker.max_size
        self.pool: ThreadPoolExecutor | None = None

    def add(self, digest: str, data: memoryview) -> None:
        if not self.batched:
            if self.backend.put_blob(chunk_key(digest), data):
                self.store._count(1, len(data))
            return
        self.pending.append((digest, bytes(data)))
        self.pending_bytes += len(data)
        if len(self.pending) >= self.window or self.pending_bytes >= self.max_pending_bytes:
            self.drain()

    def drain(self) -> None:
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        uniq: dict[str, bytes] = dict(batch)
        keys = [chunk_key(d) for d in uniq]
        present = self.backend.exists_many(keys)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.backend.concurrency, thread_name_prefix="casstore-put")
        # an existing chunk is freshened (gc's grace period); one gc removed meanwhile is sent again
        touched = iter(list(self.pool.map(self.backend.touch, [k for k, p in zip(keys, present) if p])))
        missing = [(k, uniq[d]) for k, d, p in zip(keys, uniq, present) if not p or next(touched) is False]
        if not missing:
            return
        futs = [self.pool.submit(self.backend.put_blob, k, data) for k, data in missing]
        for f in futs:
            f.result()
        self.store._count(len(missing), sum(len(d) for _, d in missing))

    def close(self) -> None:
        try:
            self.drain()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


class ObjectStore:
    """Chunked, verified, deduplicated file objects on a backend."""

    def __init__(self, backend: Backend, config: StoreConfig, *, max_in_flight: int | None = None) -> None:
        self.backend = backend
        self.config = config
        self.chunker = Chunker(config.chunker)
        self.max_in_flight = _max_in_flight(max_in_flight, backend)
        self._lock = threading.Lock()
        #: chunks and bytes this store object has written (not deduplicated away)
        self.chunks_written = 0
        self.bytes_written = 0

    def _count(self, chunks: int, nbytes: int) -> None:
        with self._lock:
            self.chunks_written += chunks
            self.bytes_written += nbytes

    # ---- writing -----------------------------------------------------------------

    def put_bytes(self, data: bytes | bytearray | memoryview) -> Stored:
        """Store ``data``; return its ``(digest, size)``."""
        view = memoryview(data).cast("B")
        digest = hash_bytes(view)
        if self.touch_file(digest):
            return Stored(digest, len(view))
        sink = _ChunkSink(self)
        chunks: list[tuple[str, int]] = []
        try:
            for ch in self.chunker.cut_buffer(view):
                d = hash_bytes(ch)
                chunks.append((d, len(ch)))
                sink.add(d, ch)
        finally:
            sink.close()
        self._put_recipe(digest, Recipe(len(view), tuple(chunks)))
        return Stored(digest, len(view))

    def put_stream(self, stream: IO[bytes], progress: Progress | None = None) -> Stored:
        """Store everything read from a binary stream, in one pass."""
        whole = new_hasher()
        size = 0
        chunks: list[tuple[str, int]] = []
        sink = _ChunkSink(self)
        try:
            for ch in self.chunker.cut_stream(stream):
                whole.update(ch)
                d = hash_bytes(ch)
                chunks.append((d, len(ch)))
                size += len(ch)
                sink.add(d, ch)
                if progress:
                    progress(len(ch))
        finally:
            sink.close()
        digest = whole.hexdigest()
        self._put_recipe(digest, Recipe(size, tuple(chunks)))  # or freshen the existing one
        return Stored(digest, size)

    def put_file(self, path: str | os.PathLike[str], progress: Progress | None = None) -> Stored:
        """Store a local file; return its ``(digest, size)``.

        Content the store already has costs one hash pass and one existence check.
        """
        path = os.fspath(path)
        try:
            f = open(path, "rb")
        except FileNotFoundError as e:
            raise LocalFileError(f"cannot log {path!r}: no such file") from e
        except IsADirectoryError as e:
            raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file (log directories with log_artifacts)") from e
        except PermissionError as e:
            raise LocalFileError(f"cannot log {path!r}: permission denied") from e
        except OSError as e:
            raise LocalFileError(f"cannot log {path!r}: {e.strerror or e}") from e
        with f:
            st = os.fstat(f.fileno())
            if stat_mod.S_ISDIR(st.st_mode):
                raise LocalFileError(f"cannot log {path!r}: it is a directory, not a file")
            if not stat_mod.S_ISREG(st.st_mode):
                # a pipe or device: one streaming pass
                return self.put_stream(f, progress)
            try:
                digest = self._hash_file(f, st.st_size)
            except OSError as e:
                raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
            if self.touch_file(digest):
                if progress:
                    progress(st.st_size)
                return Stored(digest, st.st_size)
            f.seek(0)
            try:
                stored = self._chunk_seekable(f, digest, progress)
            except OSError as e:
                raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
            if stored.digest != digest:
                raise LocalFileError(
                    f"{path!r} changed while it was being stored (its digest went from {digest} to "
                    f"{stored.digest}); nothing was recorded. Log it again once it is no longer being written."
                )
            return stored

    def _hash_file(self, f: IO[bytes], size: int) -> str:
        """BLAKE3 of an open file, reading one block while the previous one is hashed.

        Two reused buffers bound the memory (a memory map of the whole file would count
        its size in the resident set, and would kill the process with SIGBUS if the file
        were truncated meanwhile)."""
        h = new_hasher()
        if size == 0:
            return h.hexdigest()
        bufs = (bytearray(_READ_BLOCK), bytearray(_READ_BLOCK))
        pending: Future[object] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="casstore-hash") as pool:
            for i in itertools.count():
                view = memoryview(bufs[i % 2])
                n = f.readinto(view)  # type: ignore[attr-defined]
                if pending is not None:
                    pending.result()
                if not n:
                    break
                pending = pool.submit(h.update, view[:n])
        return h.hexdigest()

    def _chunk_seekable(self, f: IO[bytes], expected: str, progress: Progress | None) -> Stored:
        """Second pass over a new file: chunk, hash and store, re-hashing the whole file in a
        helper thread (BLAKE3 releases the GIL) so a concurrent change is detected."""
        whole = new_hasher()
        chunks: list[tuple[str, int]] = []
        size = 0
        sink = _ChunkSink(self)
        with ThreadPoolExecutor(1, thread_name_prefix="casstore-hash") as pool:
            try:
                for ch in self.chunker.cut_stream(f):
                    fut: Future[object] = pool.submit(whole.update, ch)
                    d = hash_bytes(ch)
                    fut.result()
                    chunks.append((d, len(ch)))
                    size += len(ch)
                    sink.add(d, ch)
                    if progress:
                        progress(len(ch))
            finally:
                sink.close()
        digest = whole.hexdigest()
        if digest == expected:
            self._put_recipe(digest, Recipe(size, tuple(chunks)))
        return Stored(digest, size)

    def _put_recipe(self, digest: str, recipe: Recipe) -> None:
        self.backend.put_blob(recipe_key(digest), recipe.encode())

    def flush(self) -> None:
        """Durability barrier: data written so far survives a power loss once this returns."""
        self.backend.flush()

    # ---- reading -----------------------------------------------------------------

    def touch_file(self, digest: str) -> bool:
        """Freshen a stored file's recipe before a new reference to it is published (garbage
        collection keeps what was touched within its grace period, and the recipe keeps its
        chunks); False if the store has no such file."""
        return self.backend.touch(recipe_key(check_digest(digest)))

    def has_file(self, digest: str) -> bool:
        """Whether the store holds a recipe for ``digest``."""
        return self.backend.exists(recipe_key(check_digest(digest)))

    def missing_files(self, digests: Sequence[str]) -> list[str]:
        """The digests in ``digests`` the store has no recipe for."""
        keys = [recipe_key(check_digest(d)) for d in digests]
        return [d for d, ok in zip(digests, self.backend.exists_many(keys)) if not ok]

    def recipe(self, digest: str) -> Recipe:
        """The recipe of a stored file; :class:`ObjectNotFoundError` if there is none."""
        digest = check_digest(digest)
        key = recipe_key(digest)
        try:
            data = self.backend.get(key)
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"no file with digest {digest} in store {self.backend.url}") from e
        return Recipe.decode(data, f"recipe {key}")

    def read_chunk(self, digest: str, length: int | None = None) -> bytes:
        """One chunk's bytes, verified against its digest."""
        key = chunk_key(digest)
        try:
            data = self.backend.get(key)
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"chunk {digest} is missing from store {self.backend.url}") from e
        actual = hash_bytes(data)
        if actual != digest:
            raise IntegrityError(f"chunk {key}", digest, actual)
        if length is not None and len(data) != length:
            raise IntegrityError(f"chunk {key}", digest, actual, f"it has {len(data)} bytes, the recipe says {length}")
        return data

    def iter_file(self, digest: str, progress: Progress | None = None) -> Iterator[bytes]:
        """Yield a stored file's content chunk by chunk, each verified before it is yielded;
        the whole-file digest is checked after the last chunk. A malformed digest or a
        missing file raises here, before anything is yielded."""
        digest = check_digest(digest)
        return self._iter_verified(digest, self.recipe(digest), progress)

    def _iter_verified(self, digest: str, recipe: Recipe, progress: Progress | None) -> Iterator[bytes]:
        whole = new_hasher()
        for data in self._fetch_chunks(recipe.chunks):
            whole.update(data)
            if progress:
                progress(len(data))
            yield data
        actual = whole.hexdigest()
        if actual != digest:
            raise IntegrityError(f"file {digest}", digest, actual, "its chunks do not make up the recorded file")

    def _fetch_chunks(self, chunks: Sequence[tuple[str, int]]) -> Iterator[bytes]:
        if self.backend.concurrency <= 1 or len(chunks) <= 1:
            for d, n in chunks:
                yield self.read_chunk(d, n)
            return
        window = self.max_in_flight
        with ThreadPoolExecutor(self.backend.concurrency, thread_name_prefix="casstore-get") as pool:
            futs: list[Future[bytes]] = []
            it = iter(chunks)
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
        return io.BufferedReader(_VerifiedRaw(self.iter_file(digest)), buffer_size=1 << 20)

    def get_file(self, digest: str, dest: str | os.PathLike[str], progress: Progress | None = None) -> None:
        """Write a stored file to ``dest``: into a temp file beside it, renamed into place only
        after the whole content verified. ``dest`` is never left partly written."""
        chunks = self.iter_file(digest, progress)  # a bad or unknown digest fails before any write
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

    def verify_file(self, digest: str) -> None:
        """Re-hash every chunk of a stored file and the whole; raise on any mismatch."""
        for _ in self.iter_file(digest):
            pass

    def chunk_digests(self, digest: str) -> list[str]:
        """The chunk digests a stored file is made of, in order."""
        return [d for d, _ in self.recipe(digest).chunks]

    def iter_recipes(self) -> Iterable[str]:
        """Digests of every stored file."""
        for k in self.backend.list("files/"):
            yield k.rsplit("/", 1)[-1]

    def iter_chunks(self) -> Iterable[str]:
        """Digests of every stored chunk."""
        for k in self.backend.list("chunks/"):
            yield k.rsplit("/", 1)[-1]


class _VerifiedRaw(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
