"""The read path: stored files out, every byte verified.

Reads re-hash every chunk before it is used and the whole file at the end, holding a
few chunks in memory whatever the size. A file that is exactly one chunk has no recipe
in a version-2 store: its digest is its chunk's, so the chunk object is the file (see
:mod:`casstore.objects.layout`). A caller that holds the BLAKE3 of a file's recipe bytes
from an authenticated record (a model entry's pin, see
:meth:`~casstore.objects.store.ObjectStore.recipe_pin`) checks the recipe against it
instead (``recipe(digest, pin=...)``) and reads the chunks it lists with
:meth:`ObjectReader.read_chunks`, which verifies each one.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, TypeVar

from casstore._buffers import heap_up_to, unfilled
from casstore._files import write_file
from casstore.backend.base import Backend
from casstore.exceptions import IntegrityError, ObjectNotFoundError
from casstore.objects.digest import check_digest, hash_bytes, new_hasher
from casstore.objects.layout import ContentLayout
from casstore.objects.recipes import Recipe

if TYPE_CHECKING:
    from casstore.objects.packs import Location, PackIndex

__all__ = ["ObjectReader", "Progress", "open_chunks"]

# threads reading and hashing chunks into memory the caller allocates (read_chunks on a
# local store); measured on 2 cores, a 290 MB model's chunks were fetched in 0.15 s this
# way and in 0.21 s when the caller read them and two threads hashed them
_READERS = 2
#: chunks a local reader asks the disk for ahead of the one it reads (Backend.prefetch)
_PREFETCH = 16

Progress = Callable[[int], None]
BytesT = TypeVar("BytesT", bytes, bytearray, bytes | bytearray)


class ObjectReader:
    """Verified reads of the files of a store: recipes, chunks, whole files."""

    def __init__(self, backend: Backend, layout: ContentLayout, max_in_flight: int) -> None:
        self.backend = backend
        #: where content objects live, and whether a one-chunk file gets a recipe
        self.layout = layout
        #: chunks a remote read holds ahead of the one it yields
        self.max_in_flight = max_in_flight
        #: where each chunk is, in a store of the packs layout (loaded at first use)
        self.packs: PackIndex | None = None
        if layout.packed:  # the packs module (and numpy) only where a store has packs
            from casstore.objects.packs import PackIndex

            self.packs = PackIndex(backend, layout)

    def _publish_pending(self) -> None:
        """Make what this process has stored visible before it is looked up (a writer
        publishes its open pack and index, see ``ObjectStore``); nothing for a reader."""

    def _locate(self, digest: str, *, reload: bool = False) -> Location | None:
        """Where the chunk ``digest`` is in a pack, or None (a loose chunk, or none). With
        ``reload`` a miss reads the store's new indexes (and new packs' headers) once."""
        if self.packs is None:
            return None
        self._publish_pending()
        loc = self.packs.get(digest)
        if loc is None and reload:
            self.packs.load()
            loc = self.packs.get(digest)
        return loc

    def stored_chunk(self, digest: str) -> tuple[str, bytes]:
        """Where the chunk is (its key, or its pack and byte range) and its bytes as stored,
        *not* verified: for a checker that hashes them itself. :class:`ObjectNotFoundError`
        if the store has no such chunk."""
        for _ in range(3):
            loc = self._locate(digest, reload=True)
            if loc is None or self.packs is None:
                break
            key = self.layout.pack_key(loc.pack)
            try:
                return f"{key} (bytes {loc.offset} to {loc.offset + loc.length})", self.backend.get_range(
                    key, loc.offset, loc.offset + loc.length)
            except ObjectNotFoundError:
                # the pack was removed by gc since the index was read (repacked, or garbage):
                # drop it, read the indexes again and look the chunk up anew, as a reader does
                self.packs.forget_pack(loc.pack)
                self.packs.load()
        key = self.layout.chunk_key(digest)
        return key, self.backend.get(key)

    def _has_chunk(self, digest: str) -> bool:
        """Whether the store holds the chunk: in a pack, or as a loose object."""
        return self._locate(digest) is not None or self.backend.exists(self.layout.chunk_key(digest))

    def _file_keys(self, digest: str) -> tuple[str, str]:
        """The keys a stored file is found under, the likelier first: its recipe, or its
        chunk (a file of one chunk, stored without a recipe in a version-2 store)."""
        recipe, chunk = self.layout.recipe_key(digest), self.layout.chunk_key(digest)
        # in a packs store a loose chunk is rare (a store being converted): the recipe first
        return (recipe, chunk) if self.layout.recipe_for_one_chunk or self.layout.packed else (chunk, recipe)

    def has_file(self, digest: str) -> bool:
        """Whether the store holds the file ``digest``: a recipe, or a chunk of that digest."""
        digest = check_digest(digest)
        if self._locate(digest) is not None:
            return True
        return any(self.backend.exists(k) for k in self._file_keys(digest))

    def missing_files(self, digests: Sequence[str]) -> list[str]:
        """The digests in ``digests`` the store holds neither a recipe nor a chunk of."""
        digests = [d for d in digests if self._locate(check_digest(d)) is None]
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
        loc = self._locate(digest)
        if loc is not None and not self.backend.exists(self.layout.recipe_key(digest)):
            return Recipe(loc.length, ((digest, loc.length),))
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

    def read_chunk(self, digest: str, length: int | None = None) -> bytes:
        """One chunk's bytes, verified against its digest."""
        if self.packs is not None:
            return next(iter(self._read_span([(digest, length or 0, None)])))
        data = self._get_chunk(digest)
        return self._checked_chunk(digest, length, data, hash_bytes(data, parallel=False))  # reads overlap in threads already

    def _read_span(self, span: Sequence[tuple[str, int, Location | None]]) -> list[bytes]:
        """The chunks of ``span`` (adjacent in one pack, or one loose chunk: ``location``
        None), read with one request and each verified against its digest and length (a
        length of 0: unknown). A pack found missing is dropped from the index, which is
        read again, and the chunks looked up anew once."""
        first = span[0][2]
        if first is None:
            digest, length, _ = span[0]
            loc = self._locate(digest, reload=True)
            if loc is None:
                data = self._get_chunk(digest)
                return [self._checked_chunk(digest, length or None, data, hash_bytes(data, parallel=False))]
            span = [(digest, length, loc)]
            first = loc
        last = span[-1][2]
        assert last is not None
        key = self.layout.pack_key(first.pack)
        try:
            raw = self.backend.get_range(key, first.offset, last.offset + last.length)
        except ObjectNotFoundError:
            if self.packs is not None:
                self.packs.forget_pack(first.pack)
                self.packs.load()
            return [c for d, n, _ in span for c in self._read_span([(d, n, self._locate(d))])]
        out = []
        view = memoryview(raw)
        for d, n, loc in span:
            assert loc is not None
            piece = view[loc.offset - first.offset : loc.offset - first.offset + loc.length]
            where = f"chunk {d} in pack {key} (bytes {loc.offset} to {loc.offset + loc.length})"
            actual = hash_bytes(piece, parallel=False)
            if actual != d:
                raise IntegrityError(where, d, actual, f"read {len(piece)} of {loc.length} bytes" if len(piece) != loc.length else "")
            if n and len(piece) != n:
                raise IntegrityError(where, d, actual, f"it has {len(piece)} bytes, the recipe says {n}")
            out.append(bytes(piece))
        return out

    def _fetch_packed(self, chunks: Sequence[tuple[str, int]]) -> Iterator[bytes]:
        """The chunks, in order, each verified: runs of adjacent chunks in one pack are read
        with one ranged request each, up to ``max_in_flight`` chunks' worth of requests ahead."""
        from casstore.objects.packs import coalesce

        spans = coalesce([(d, n, self._locate(d)) for d, n in chunks])
        if len(spans) == 1:
            yield from self._read_span(spans[0])
            return
        # runs of up to 16 MiB each: four at once on a remote store (64 MiB held at most)
        window = 4 if self.backend.concurrency > 1 else 2
        with ThreadPoolExecutor(max(2, min(self.backend.concurrency, window)), thread_name_prefix="casstore-get") as pool:
            futs: deque[Future[list[bytes]]] = deque()
            it = iter(spans)
            for span in it:
                futs.append(pool.submit(self._read_span, span))
                if len(futs) >= window:
                    break
            while futs:
                got = futs.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    futs.append(pool.submit(self._read_span, nxt))
                yield from got

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
        if self.backend.concurrency > 1 or len(chunks) <= 1 or self.packs is not None:
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
        if pinned and not is_own_chunk(digest, recipe):
            return _reporting(self.read_chunks(recipe.chunks), progress)
        return _reporting(self._iter_whole(digest, recipe), progress)

    def _iter_whole(self, digest: str, recipe: Recipe) -> Iterator[bytes]:
        """The file through its recipe, each chunk verified and the whole hashed against ``digest``."""
        if is_own_chunk(digest, recipe):
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
        if self.packs is not None:
            yield from self._fetch_packed(chunks)
            return
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
        write_file(chunks, dest)

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
        """Digests of every stored chunk (in packs, and loose)."""
        loose = set(self.layout.stored(self.backend, "chunks"))
        if self.packs is None:
            return loose
        self._publish_pending()
        self.packs.load()
        return loose | set(self.packs.chunks())


def is_own_chunk(digest: str, recipe: Recipe) -> bool:
    """Whether a file is exactly one chunk, whose digest is then the file's."""
    return len(recipe.chunks) == 1 and recipe.chunks[0][0] == digest


def _reporting(chunks: Iterator[BytesT], progress: Progress | None) -> Iterator[BytesT]:
    """``chunks``, each reported to ``progress`` as it is given."""
    for chunk in chunks:
        if progress:
            progress(len(chunk))
        yield chunk


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

