"""The objects layer's store: files in, files out, every byte verified.

:class:`ObjectStore` decides what a put must do and does the rest of it: content the
store holds already costs a hash pass and an existence check (or, for a local file
unchanged since this machine hashed it, a lookup in the stat cache,
:mod:`casstore.objects.statcache`); new content goes through one of the storing passes
(:mod:`casstore.objects.passes`), which cut it into FastCDC chunks, name each chunk and
the whole file by BLAKE3 and store only the chunks the store lacks; then this writes the
file's recipe. A file that is exactly one chunk has no recipe in a version-2 store: its
digest is its chunk's, so the chunk object is the file (see :mod:`casstore.objects.layout`).
Reads are those of :class:`~casstore.objects.reading.ObjectReader`, which it extends.

Write order: chunks, then the recipe (so a visible recipe's chunks are there).
Callers that publish a record referencing a file call :meth:`ObjectStore.flush`
between the two (the durability barrier).
"""

from __future__ import annotations

import os
import stat as stat_mod
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING

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
from casstore.objects.localfiles import changed, is_small, open_local, read_whole
from casstore.objects.mapped import FileLease, hash_leased
from casstore.objects.passes import READ_BLOCK, Stored, StoringPasses
from casstore.objects.reading import ObjectReader, Progress, is_own_chunk, open_chunks
from casstore.objects.recipes import Recipe
from casstore.objects.statcache import StatCache, default_stat_cache

if TYPE_CHECKING:
    from casstore.objects.packs import PackWriter

__all__ = ["ObjectStore", "Stored", "EMPTY_DIGEST", "open_chunks", "Progress"]

EMPTY_DIGEST = hash_bytes(b"")

# hints tried, closest in size first, before a new version is cut as usual
_HINTS_TRIED = 3


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



class ObjectStore(ObjectReader):
    """Chunked, verified, deduplicated file objects on a backend."""

    def __init__(
        self, backend: Backend, config: StoreConfig, *, max_in_flight: int | None = None, stat_cache: StatCache | bool = True
    ) -> None:
        max_in_flight = _max_in_flight(max_in_flight, backend)
        super().__init__(backend, config.layout, max_in_flight)
        #: the record of hashed local files (:mod:`casstore.objects.statcache`): True for this
        #: user's (unless ``CASSTORE_STAT_CACHE=0``), False for none
        self.stat_cache: StatCache | None = (
            default_stat_cache() if stat_cache is True else stat_cache if isinstance(stat_cache, StatCache) else None
        )
        self.config = config
        self.chunker = Chunker(config.chunker)
        #: the writer of new packs, in a store of the packs layout
        self._packs: PackWriter | None = None
        if self.packs is not None:
            from casstore.objects.packs import PackWriter

            self._packs = PackWriter(backend, self.layout, self.packs)
        self._passes = StoringPasses(backend, self.layout, self.chunker, max_in_flight, self._packs)

    def _publish_pending(self) -> None:
        # docstring inherited
        if self._packs is not None and self._packs.dirty:
            self._packs.publish()

    @property
    def chunks_written(self) -> int:
        """Chunks this store object has written (not deduplicated away)."""
        return self._passes.chunks_written

    @property
    def bytes_written(self) -> int:
        """Bytes of the chunks this store object has written."""
        return self._passes.bytes_written

    # ---- writing -----------------------------------------------------------------

    def _begin(self) -> None:
        """A put (or a new reference to a stored file) begins: see :meth:`PackWriter.begin`."""
        if self._packs is not None:
            self._packs.begin()

    def put_bytes(self, data: bytes | bytearray | memoryview) -> Stored:
        """Store ``data``; return its ``(digest, size)``."""
        self._begin()
        view = memoryview(data).cast("B")
        digest = hash_bytes(view)
        if not self.layout.recipe_for_one_chunk and 0 < len(view) <= self.config.chunker.min_size:
            # certainly one chunk, the file itself: one idempotent put (it freshens a stored one)
            if self._packs is not None:
                stored = self._packs.add(digest, view)
            else:
                stored = self.backend.put_blob(self.layout.chunk_key(digest), view)
            if stored:
                self._passes.count(1, len(view))
            return Stored(digest, len(view))
        if self._freshen_stored(digest, len(view)):
            return Stored(digest, len(view))
        sink = self._passes.sink()
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
        self._begin()
        stored, recipe = self._passes.store_stream(stream, progress)
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
        fd, before = open_local(path)
        return self._put_open(fd, path, before, progress)

    def put_or_read(
        self, path: str | os.PathLike[str], limit: int, progress: Progress | None = None
    ) -> tuple[Stored, bytes | None]:
        """Store a local file as :meth:`put_file` does, unless it is a regular file of at
        most ``limit`` bytes (``limit`` > 0): that one is only read, with the same checks,
        and its content returned beside its ``(digest, size)``, for the caller to keep
        (an artifact held in its run record). One open either way. ``progress`` is told
        the bytes as they are stored (or read)."""
        path = os.fspath(path)
        fd, before = open_local(path)
        if not is_small(before, limit):
            return self._put_open(fd, path, before, progress), None
        try:
            data = read_whole(fd, path, before)
        finally:
            os.close(fd)
        if progress:
            progress(len(data))
        return Stored(hash_bytes(data), len(data)), data

    def _put_open(self, fd: int, path: str, before: os.stat_result, progress: Progress | None) -> Stored:
        """:meth:`put_file` of the file open as ``fd`` (status ``before``), which this closes."""
        self._begin()
        owned = True  # until a file object takes the descriptor over
        try:
            if stat_mod.S_ISREG(before.st_mode) and before.st_size <= READ_BLOCK:
                stored = self.put_bytes(read_whole(fd, path, before))
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
                            result = self._passes.store_like(lease, before, None, like)
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
                                result = self._passes.store_like(lease, before, expected, like)
                            if result is None:
                                result = self._passes.store_leased(lease, before, expected)
                if expected is None:
                    expected = self._passes.hash_rest(f, h, done)
                    found = self._reuse_stored(f, before, expected, progress)
                    if found is not None:
                        return found
            elif result is None and progress is None:
                with FileLease(f.fileno()) as lease:
                    result = self._passes.store_leased(lease, before, None)
            if result is None:
                f.seek(0)
                result = self._passes.store_stream(f, progress)
            stored, recipe = result
            after = os.fstat(f.fileno())
        except CasstoreError:
            raise  # the store failed (StoreUnavailableError is an OSError too), not the file
        except OSError as e:
            raise LocalFileError(f"cannot read {path!r}: {e.strerror or e}") from e
        if (expected is not None and stored.digest != expected) or stored.size != after.st_size or changed(before, after):
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
        fd, before = open_local(path)
        try:
            return read_whole(fd, path, before) if is_small(before, limit) else None
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
        if self.layout.packed:  # its writers pack every chunk: a loose one is not asked for
            return first if self._locate(first) is not None else None
        return first if self._has_chunk(first) else None

    def _hints(self, first: str, size: int) -> list[tuple[int, str]]:
        """The stored files that begin with chunk ``first``, as their hints name them
        (:meth:`_put_recipe`): ``(size, digest)``, the closest in size to ``size`` first.
        None looked for where they would not be followed (a loose store that batches its
        chunks: see :attr:`StoringPasses.follows_recipes`)."""
        if not self._passes.follows_recipes:
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
        if changed(before, os.fstat(f.fileno())) or not self._freshen_stored(digest, before.st_size):
            return None
        if progress:
            progress(before.st_size)
        return Stored(digest, before.st_size)

    def _put_recipe(self, digest: str, recipe: Recipe) -> None:
        """Write (or freshen) a file's recipe, its chunks being stored; in a version-2 store,
        not for a file that is one chunk: that chunk, of the file's digest, is the file.

        A file larger than a read block gets a hint as well (an empty object named by its
        first chunk, its size and its digest), by which a later version of it, which
        begins with the same chunk, finds this recipe (:meth:`_hints`); not in a loose
        store that batches its chunks, where no one follows them."""
        if not self.layout.recipe_for_one_chunk and is_own_chunk(digest, recipe):
            return
        self._publish_pending()  # a recipe is written after the packs and index of its chunks
        self.backend.put_blob(self.layout.recipe_key(digest), recipe.encode())
        if recipe.size > READ_BLOCK and len(recipe.chunks) > 1 and self._passes.follows_recipes:
            self.backend.put_blob(self.layout.hint_key(recipe.chunks[0][0], recipe.size, digest), b"")

    def _freshen_stored(self, digest: str, size: int) -> bool:
        """Freshen the file ``digest`` of ``size`` bytes if the store holds it as this store's
        version writes it; False if it must be stored. In version 1 that is its recipe. In
        version 2 a file no larger than the chunker's maximum may be one chunk, so its chunk
        is tried first, then its recipe; the empty file and larger ones have a recipe. (A
        file of at most the minimum, certainly one chunk, never comes here: ``put_bytes``
        puts its chunk at once.)"""
        recipe = self.layout.recipe_key(digest)
        if self._packs is not None and 0 < size <= self.config.chunker.max_size and self._packs.has(digest):
            return True  # a chunk in a pack (checked against gc's marks), whole once indexed, or pending here
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
        packed = {d: loc.length for d, _ in recipe.chunks if (loc := self._locate(d)) is not None}
        loose = [(d, n) for d, n in recipe.chunks if d not in packed]
        sizes = self.backend.sizes_many([self.layout.chunk_key(d) for d, _ in loose])
        return all(packed[d] == n for d, n in recipe.chunks if d in packed) and all(
            got == n for got, (_, n) in zip(sizes, loose))

    def flush(self) -> None:
        """Durability barrier: data written so far survives a power loss once this returns
        (in a store of the packs layout, the open pack is sealed and published with its
        index first, with a barrier between the two)."""
        self._publish_pending()
        self.backend.flush()

    def touch_file(self, digest: str) -> bool:
        """Freshen a stored file before a new reference to it is published (garbage
        collection keeps what was touched within its grace period): its recipe, which keeps
        its chunks, or the chunk that is the file. False if the store has no such file."""
        digest = check_digest(digest)
        self._begin()
        if self._packs is not None and self.backend.touch(self.layout.recipe_key(digest)):
            return True
        if self._packs is not None and self._packs.has(digest):
            return True
        return any(self.backend.touch(k) for k in self._file_keys(digest))

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
            if self._has_chunk(digest):
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


def _check_piece(key: str, digest: str, hashed: Future[str]) -> None:
    actual = hashed.result()
    if actual != digest:
        raise IntegrityError(f"recipe {key}", digest, actual, "a chunk it lists is not the content being stored")

