"""The passes over a file's bytes that store it: the chunks cut, named by BLAKE3 and
written to the backend (only those it lacks), the whole file hashed beside them, its
recipe returned for :class:`~casstore.objects.store.ObjectStore` to write.

- :meth:`StoringPasses.store_stream` reads a stream (or a file) into a ring of buffers;
- :meth:`StoringPasses.store_leased` cuts a local file where it lies in the page cache,
  through memory maps held safe by a read lease (:mod:`casstore.objects.mapped`);
- :meth:`StoringPasses.store_like` stores a new version of a stored file by following the
  recipe of the old one, checking its chunks by hash rather than cutting;
- :meth:`StoringPasses.hash_rest` finishes the hash of a file read in place.

Which pass a file takes, and whether it needs storing at all, is decided by
:class:`~casstore.objects.store.ObjectStore`. On a local disk chunks are written by
writer threads one by one; on a remote store in batches (:class:`_ChunkSink`).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import mmap
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

from casstore.backend.base import Backend
from casstore.objects import mapped as mapped_mod
from casstore.objects.chunking import Chunker
from casstore.objects.digest import hash_bytes, new_hasher
from casstore.objects.layout import ContentLayout
from casstore.objects.localfiles import changed
from casstore.objects.mapped import FileLease
from casstore.objects.reading import Progress
from casstore.objects.recipes import Recipe

if TYPE_CHECKING:
    from casstore.objects.packs import PackWriter

__all__ = ["StoringPasses", "Stored", "READ_BLOCK"]

# reads go in blocks of this size (at least two maximum chunks) into buffers kept for
# the next put: a ring of _RING for the storing pass, two of them for the hashing pass;
# a file no larger than one block is read whole
READ_BLOCK = 8 << 20
_RING = 5
# the hashing pass reads in blocks this small, which stay in the processor's cache
# from the read to the hash (measured: 1 GiB from the page cache hashed 20% faster
# than in blocks of 12 MiB)
_HASH_BLOCK = 4 << 20
# a storing pass over a mapped file (``store_leased``) cuts it a window of this size at a
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
# chunks in a row that are not where a similar file's recipe says before it is no longer followed
_MISSES_MAX = 8
# new chunks waiting for the thread that writes them while a similar file's recipe is
# followed, at most (each holds its window's map)
_WRITES_AHEAD = 16
# the chunks a similar file's recipe puts in a window are checked by the hashing threads
# in runs of about this many bytes, one task each
_GUESS_RUN = 2 << 20


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


def _same_and_add(sink: _ChunkSink, chunks: list[tuple[memoryview, str]]) -> int:
    """How many of ``chunks`` (in order, each with the digest it is guessed to have) hash to
    their digest, up to the first that does not; those are handed to ``sink`` (which
    freshens each stored chunk, or writes it again if gc took it)."""
    for i, (chunk, digest) in enumerate(chunks):
        if hash_bytes(chunk, parallel=False) != digest:
            return i
        sink.add(digest, chunk)
    return len(chunks)


def _wait_all(futures: list[Future[Any]]) -> None:
    """Wait for every future (raising the first error) and forget them."""
    try:
        for f in futures:
            f.result()
    finally:
        futures.clear()


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


T = TypeVar("T")


def _in_context(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``pool.submit(fn, *args)`` run in a copy of the caller's context, so what the caller
    records (the objects a log creates, :func:`~casstore.backend.base.recording_creations`)
    sees the writes the pool makes for it."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


class _ChunkSink:
    """Sends chunks to the backend: directly on a local disk; on remote stores in batches,
    each checked with one ``exists_many``, whose missing chunks are uploaded concurrently
    while the next batch is cut. At most ``window`` chunk copies are held at once."""

    def __init__(self, passes: StoringPasses) -> None:
        self.passes = passes
        self.backend = passes.backend
        self.chunk_key = passes.layout.chunk_key
        self.batched = passes.batched
        self.window = max(2, passes.max_in_flight)
        # two batches in flight: one uploading while the next is cut and checked
        self.batch_size = max(1, min(self.backend.concurrency, self.window // 2))
        self.pending: list[tuple[str, bytes]] = []
        self.slots = threading.Semaphore(self.window)
        self.pool: ThreadPoolExecutor | None = None  # puts and touches
        self.checks: ThreadPoolExecutor | None = None  # one batch each: check, then send
        self.running: list[Future[None]] = []

    def add(self, digest: str, data: memoryview) -> None:
        packs = self.passes.packs
        if packs is not None:  # into the open pack, unless a stored pack has it (checked against gc's marks)
            if packs.add(digest, data):
                self.passes.count(1, len(data))
            return
        if not self.batched:
            if self.backend.put_blob(self.chunk_key(digest), data):
                self.passes.count(1, len(data))
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
        self.running.append(_in_context(self.checks, self._send, batch, self.pool))

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
            futs = [_in_context(pool, self._put, k, data) for k, data in missing]
            held = 0  # each put gives its slot back
            for f in futs:
                f.result()
            self.passes.count(len(missing), sum(len(d) for _, d in missing))
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



class StoringPasses:
    """The storing passes of one object store, with what they share: the read buffers kept
    from one put for the next, and the count of what they wrote."""

    def __init__(
        self, backend: Backend, layout: ContentLayout, chunker: Chunker, max_in_flight: int, packs: PackWriter | None = None
    ) -> None:
        self.backend = backend
        #: where new chunks go in a store of the packs layout
        self.packs = packs
        self.layout = layout
        self.chunker = chunker
        self.max_in_flight = max_in_flight
        #: chunks go to the backend in batches of concurrent requests (a remote store), rather
        #: than one by one from the writer threads (a local disk): then no storing pass over
        #: maps is taken
        self.batched = backend.concurrency > 1 or packs is not None
        self._lock = threading.Lock()
        self._idle: list[bytearray] = []  # read buffers kept for the next put (see take_buffers)
        #: chunks and bytes written (not deduplicated away)
        self.chunks_written = 0
        self.bytes_written = 0

    def count(self, chunks: int, nbytes: int) -> None:
        with self._lock:
            self.chunks_written += chunks
            self.bytes_written += nbytes

    def sink(self) -> _ChunkSink:
        """Where a pass hands the chunks it cuts (close it to wait for their writes)."""
        return _ChunkSink(self)

    def store_stream(self, stream: IO[bytes], progress: Progress | None) -> tuple[Stored, Recipe]:
        """The storing pass: cut, hash and store the chunks of a stream; return its digest,
        size and recipe (the caller writes the recipe).

        Work overlaps in threads (BLAKE3, reads and writes release the GIL): one reads
        ahead, one hashes the whole stream block by block, this one cuts chunks (and
        on remote stores hashes them), and on a local disk ``_WRITERS`` threads hash and
        write them. Blocks go into a small ring of buffers, each with ``max_size`` bytes
        in front for the previous block's uncut tail, so only that tail is ever copied. A buffer is refilled only once the hash
        and the writes reading it are done.
        """
        reserve = self.chunker.params.max_size
        block = self._buffer_size() - reserve
        sink = self.sink()
        # remote stores copy the chunks they hold (max_in_flight): three blocks suffice
        ring = self.take_buffers(_RING if not sink.batched else 3)
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
                        named = _in_context(writer, _name_and_add, sink, ch)
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
            self.keep_buffers(ring)  # no thread reads them any more
        listed = tuple((d if isinstance(d, str) else d.result(), n) for d, n in chunks)
        return Stored(whole.hexdigest(), size), Recipe(size, listed)

    def store_leased(self, lease: FileLease, before: os.stat_result, digest: str | None) -> tuple[Stored, Recipe] | None:
        """The storing pass over memory maps of a local file under ``lease`` (held): its
        chunks are cut where they lie in the page cache, not copied into buffers, and
        hashed and written by the writer threads. A file hashed whole to ``digest`` under
        this lease (a new version of a large file, mostly stored already) is not hashed
        whole again, since the lease kept it as it was hashed; with ``digest`` None (new
        content) a thread hashes the whole from the same maps.

        Returns the file's ``(digest, size)`` and recipe, as :meth:`store_stream` does (the
        caller checks the file and writes the recipe), or None when this pass cannot be
        used or must stop (a remote store, which batches its chunks; a writer waiting for
        the lease; a slow window; a file that cannot be mapped): the caller then stores
        the file by reading it. Writes in flight are waited for before a map is let go,
        so a writer waits for one window and those writes."""
        size = lease.size
        sink = self._mapped_sink(lease, before, usable=not self.batched)  # a batching sink holds chunks on
        if sink is None:
            return None
        chunks: list[tuple[Future[str], int]] = []
        live: deque[tuple[list[Future[Any]], mmap.mmap]] = deque()  # maps the writers may still read
        pos = 0
        span = max(_MAP_WINDOW, 2 * self.chunker.params.max_size)  # cutting gets to a maximum chunk before its end
        writer = ThreadPoolExecutor(_WRITERS, thread_name_prefix="casstore-write")
        whole = _HashBeside(digest)
        try:
            while pos < size:
                start = time.monotonic()
                base = pos - pos % mmap.ALLOCATIONGRANULARITY
                n = min(base + span, size) - base
                window = lease.map(base, n, ahead=span)
                if window is None:
                    break
                cut, used = self.chunker.cut_block(memoryview(window)[pos - base :], final=base + n == size)
                named = [_in_context(writer, _name_and_add, sink, ch) for ch in cut]
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

    @property
    def follows_recipes(self) -> bool:
        """Whether a new version of a stored file may be stored by following the old one's
        recipe (:meth:`store_like`): where each chunk handed to the sink is written, or
        copied into the open pack, before the call returns, so no thread reads a map
        once it is let go. Not a loose remote store, whose batches hold chunks on."""
        return not self.batched or self.packs is not None

    def _mapped_sink(self, lease: FileLease, before: os.stat_result, usable: bool) -> _ChunkSink | None:
        """The chunk sink of a storing pass over maps of the file under ``lease``, or None
        where no such pass may be taken: not ``usable`` in this store, the lease lost, the
        file changed since ``before``."""
        if not usable or not lease.intact() or changed(before, os.fstat(lease.fd)):
            return None
        return self.sink()

    def store_like(self, lease: FileLease, before: os.stat_result, digest: str | None, like: Recipe) -> tuple[Stored, Recipe] | None:
        """The storing pass for a new version of a stored file, under ``lease`` (held):
        ``like`` is the recipe of a stored file that begins as this one does (found by
        ``ObjectStore._hints``). A file hashed whole to ``digest`` under this lease is not hashed
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

        Returns as :meth:`store_leased`, and None where it cannot be used or must stop."""
        size = lease.size
        sink = self._mapped_sink(lease, before, usable=self.follows_recipes)
        if sink is None:
            return None
        max_size = self.chunker.params.max_size
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
        if self.packs is not None:
            # the chunks of ``like`` are reused: gc's marks are checked now, so the requests
            # of that check (a remote store's round trips) do not count against a window
            self.packs.check_marks()
        start = time.monotonic()
        pool = ThreadPoolExecutor(_HASHERS, thread_name_prefix="casstore-hash")
        # a new chunk is written while the chunks after it are checked: the disk's time
        # for it is not added to the pass (each holds its window's map until written)
        writer = ThreadPoolExecutor(1, thread_name_prefix="casstore-write")
        writes: list[Future[None]] = []
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
                guessed: list[tuple[memoryview, str]] = []
                k = nxt if misses < _MISSES_MAX else None
                p = pos
                while k is not None and k < len(old):
                    d, n = old[k]
                    if p + n > end or not 0 < n <= max_size or (k == len(old) - 1 and p + n != size):
                        break  # past this window; no chunk this store cuts; cut by the end of ``like``
                    guessed.append((view[p - base : p + n - base], d))
                    p += n
                    k += 1
                # checked in runs of a few MiB, one task each: per chunk, a task costs as much
                # as hashing it
                runs: list[tuple[list[tuple[memoryview, str]], Future[int]]] = []
                run: list[tuple[memoryview, str]] = []
                held = 0
                for i, guess in enumerate(guessed):
                    run.append(guess)
                    held += len(guess[0])
                    if held >= _GUESS_RUN or i == len(guessed) - 1:
                        runs.append((run, _in_context(pool, _same_and_add, sink, run)))
                        run, held = [], 0
                hits = 0
                missed = False
                for run, same in runs:  # in order, up to the first miss
                    if missed:
                        if not same.cancel():
                            same.result()  # no thread reads this window once it is let go
                        continue
                    found = same.result()
                    for chunk, d in run[:found]:
                        out.append((d, len(chunk)))
                        pos += len(chunk)
                    hits += found
                    missed = found < len(run)
                del guessed, run, runs
                if hits:
                    misses = 0
                    assert nxt is not None
                    nxt += hits
                if not missed and nxt is not None and nxt < len(old) and max_size >= old[nxt][1] > end - pos and end < size:
                    continue  # the next guess runs past this window: map the next one
                if pos < size:
                    if pos + min(max_size, size - pos) > end:
                        continue  # the chunk to cut runs past this window
                    chunk = next(iter(self.chunker.cut_buffer(view[pos - base : min(pos + max_size, size) - base])))
                    d = hash_bytes(chunk, parallel=False)
                    writes.append(_in_context(writer, sink.add, d, chunk))
                    if len(writes) > _WRITES_AHEAD:  # a slow store: the maps held for it stay few
                        writes.pop(0).result()
                    out.append((d, len(chunk)))
                    pos += len(chunk)
                    if d in after:  # found in ``like`` again: go on from there
                        nxt, misses = after[d], 0
                        shift = offsets[nxt] - pos
                    else:  # an edit of the same size leaves the cuts after it where they were
                        nxt, misses = starts.get(pos + shift), misses + 1
                if not lease.intact() or time.monotonic() - start > mapped_mod.SLOW:
                    return None
            _wait_all(writes)
        finally:
            pool.shutdown(wait=True)  # no thread reads a map once this returns
            writer.shutdown(wait=True)
            whole.close()
            view = None
            sink.close()
        return Stored(whole.result(), size), Recipe(size, tuple(out))

    def hash_rest(self, f: IO[bytes], h: Any, done: int) -> str:
        """Finish ``h``, the BLAKE3 of an open local file fed its first ``done`` bytes (in
        place, :func:`hash_leased`), by reading the rest: one block is read while the
        previous one is hashed. The reads go into two reused buffers of a few MiB, which
        stay in the processor's cache between the read and the hash."""
        f.seek(done)
        bufs = self.take_buffers(2)
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
            self.keep_buffers(bufs)  # the pool is shut down: no thread reads them
        return str(h.hexdigest())

    def _buffer_size(self) -> int:
        """One read buffer: a block of at least two maximum chunks, after a margin of one."""
        max_size = self.chunker.params.max_size
        return max_size + max(READ_BLOCK, 2 * max_size)

    def take_buffers(self, count: int) -> list[bytearray]:
        """``count`` read buffers: idle ones first (fresh ones cost tens of MiB of page
        faults per put), then new ones. Concurrent puts each get their own."""
        with self._lock:
            bufs, self._idle = self._idle[:count], self._idle[count:]
        return bufs + [bytearray(self._buffer_size()) for _ in range(count - len(bufs))]

    def keep_buffers(self, bufs: list[bytearray]) -> None:
        """Keep up to one ring of buffers for the next put; memory stays one ring."""
        with self._lock:
            self._idle = (self._idle + bufs)[:_RING]

