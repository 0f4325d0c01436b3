"""Packs: many chunks in one immutable object, and the index that says where each one is.

In a store whose config says ``"layout": "packs"``, chunks are not objects of their own.
A writer gathers the new chunks of its puts into a **pack**, an object of up to
:data:`PACK_TARGET` bytes named by its own BLAKE3 (``packs/ab/<digest>``) and written
with create-if-absent::

    chunk 0 | chunk 1 | ... | chunk n-1 | header | u32 little-endian header length | b"casspack"

The header is a self-checking record (:func:`~casstore.objects.codec.pack_checked`),
``{"v": 1, "chunks": [[digest, offset, length], ...]}``, so one ranged read of a pack's
tail describes it. Once its packs are stored, the writer publishes an **index** object,
``chunk-index/<digest>`` (BLAKE3 of its bytes, also self-checking), listing every chunk of those
packs: ``{"v": 1, "packs": [[pack digest, pack size, [[chunk, offset, length], ...]], ...]}``.
Readers merge every index into memory (:class:`PackIndex`), keeping the index objects
they have checked in a local cache (:func:`~casstore.objects.statcache.cache_dir`) so a
store is listed, not downloaded, at the next open. The index is never the source of
truth: a pack no valid index describes (a writer killed between the pack and its index,
a damaged index) is described by its own header instead, and every chunk read is
checked against its digest.

Order: pack, then its index, then the records that reference its chunks. A writer
deduplicating against a chunk in a stored pack freshens that pack (``Backend.touch``)
once per batch of puts, and writes the chunk anew if the pack is gone: garbage
collection's grace period counts from a pack's modification time (see
:mod:`casstore.maintenance.gc`).
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, CorruptRecordError, IntegrityError, ObjectNotFoundError
from casstore.objects.chunking import ChunkerParams
from casstore.objects.codec import CHECK_FIELD, pack_checked, unpack, unpack_checked
from casstore.objects.digest import hash_bytes, is_digest
from casstore.objects.layout import PACKS, ContentLayout

__all__ = [
    "INDEX_PREFIX",
    "MAGIC",
    "PACK_CHUNKER",
    "PACK_TARGET",
    "Location",
    "PackIndex",
    "PackWriter",
    "encode_pack",
    "parse_pack_tail",
    "read_pack_header",
]

log = logging.getLogger(__name__)

#: the chunker of new packed stores: 256 KiB on average (see docs/design.md, "Packs")
PACK_CHUNKER = ChunkerParams(min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20)
#: a pack is sealed once its chunks reach this many bytes (measured on SeaweedFS, 256 MiB
#: with 1 MiB changed: 16 MiB packs cost 25 requests, 32 MiB packs 17; see docs/design.md)
PACK_TARGET = 32 << 20
#: packs uploaded at once by one writer (each held in memory until stored)
PACKS_IN_FLIGHT = 3
#: freshening touches of reused packs sent at once by one writer (a touch is a self-copy
#: on S3, whose time grows with the pack's size: they run while the file is still cut)
TOUCHES_IN_FLIGHT = 4
#: bytes of deduplicated chunks a writer holds while the touches of their packs are under
#: way (a pack found gone gets them written anew)
HELD_MAX = 2 * PACK_TARGET
#: the last bytes of every pack
MAGIC = b"casspack"
_TRAILER = struct.Struct("<I8s")
#: the bytes of a pack's tail read at once to find its header (one request for packs
#: of up to about 800 chunks)
TAIL_READ = 64 << 10
INDEX_PREFIX = "chunk-index/"
#: reads of adjacent chunks of one pack are merged up to this many bytes
SPAN_MAX = 16 << 20
PACK_VERSION = 1


@dataclass(frozen=True, slots=True)
class Location:
    """Where a chunk is: bytes ``[offset, offset + length)`` of pack ``pack``."""

    pack: str
    offset: int
    length: int


Entries = list[tuple[str, int, int]]


def encode_pack(chunks: Sequence[tuple[str, bytes | bytearray | memoryview]]) -> tuple[bytes, Entries]:
    """The bytes of a pack of ``chunks`` (``(digest, data)``, in order) and its entries."""
    out = bytearray()
    entries: Entries = []
    for digest, data in chunks:
        entries.append((digest, len(out), len(data)))
        out += data
    header = pack_checked({"v": PACK_VERSION, "chunks": [list(e) for e in entries]})
    out += header
    out += _TRAILER.pack(len(header), MAGIC)
    return bytes(out), entries


def _entries(raw: Any, where: str, limit: int) -> Entries:
    """Checked ``[digest, offset, length]`` entries within ``limit`` bytes."""
    out: Entries = []
    try:
        for d, off, n in raw:
            if not (is_digest(d) and isinstance(off, int) and isinstance(n, int) and off >= 0 and n > 0 and off + n <= limit):
                raise ValueError(f"bad entry {[d, off, n]!r}")
            out.append((d, off, n))
    except (TypeError, ValueError) as e:
        raise CorruptRecordError(f"{where}: a chunk entry is malformed ({e}); the store may be corrupt: "
                                 "run `casstore verify --all`") from e
    return out


def parse_pack_tail(tail: bytes, size: int, where: str) -> Entries | int:
    """The entries of a pack of ``size`` bytes from its last ``len(tail)`` bytes, or the
    number of tail bytes needed when ``tail`` does not hold the whole header."""
    if size < _TRAILER.size or len(tail) < _TRAILER.size:
        raise CorruptRecordError(f"{where} has {size} bytes, too few for a pack: it is truncated or not a pack")
    hlen, magic = _TRAILER.unpack(tail[-_TRAILER.size :])
    if magic != MAGIC or hlen + _TRAILER.size > size:
        raise CorruptRecordError(
            f"{where} does not end with a pack trailer: it is truncated or damaged; "
            "run `casstore verify --all` to see what it affects"
        )
    need: int = hlen + _TRAILER.size
    if len(tail) < need:
        return need
    rec = unpack_checked(tail[len(tail) - need : len(tail) - _TRAILER.size], f"the header of {where}", required=True)
    if not isinstance(rec, dict) or rec.get("v") != PACK_VERSION:
        raise CorruptRecordError(f"{where}: pack header version {rec.get('v') if isinstance(rec, dict) else rec!r} "
                                 "is not one this casstore reads; upgrade casstore")
    return _entries(rec.get("chunks"), where, size - need)


def read_pack_header(backend: Backend, key: str, size: int | None = None) -> tuple[int, Entries]:
    """The size and entries of the pack ``key``, from one ranged read of its tail (two if
    its header is larger than :data:`TAIL_READ`)."""
    if size is None:
        size = backend.info(key).size
    want = min(size, TAIL_READ)
    for _ in range(2):
        tail = backend.get_range(key, size - want, size)
        if len(tail) != want:
            raise CorruptRecordError(f"{key}: read {len(tail)} of the last {want} bytes; it is truncated")
        got = parse_pack_tail(tail, size, key)
        if not isinstance(got, int):
            return size, got
        want = got
    raise CorruptRecordError(f"{key}: its header does not fit its own length")


def encode_index(packs: Iterable[tuple[str, int, Entries]]) -> bytes:
    return pack_checked({"v": PACK_VERSION, "packs": [[p, n, [list(e) for e in es]] for p, n, es in packs]})


def decode_index(data: bytes, where: str, *, named: bool = False) -> list[tuple[str, int, Entries]]:
    """The packs an index object lists. With ``named`` the caller has checked the bytes
    against the BLAKE3 that names the object, which covers the ``b3`` field's check too (and
    costs a tenth of re-encoding the record to check it)."""
    rec = unpack(data, where) if named else unpack_checked(data, where, required=True)
    if isinstance(rec, dict):
        rec.pop(CHECK_FIELD, None)
    if not isinstance(rec, dict) or rec.get("v") != PACK_VERSION or not isinstance(rec.get("packs"), list):
        raise CorruptRecordError(f"{where} is not a pack index this casstore reads")
    out = []
    try:
        for p, n, es in rec["packs"]:
            if not is_digest(p) or not isinstance(n, int) or n <= 0:
                raise ValueError(f"bad pack {p!r}")
            # an index checked against its name was written by a writer whole; what it says is
            # still only a hint: every chunk read through it is checked against its digest
            out.append((p, n, [(d, off, m) for d, off, m in es] if named else _entries(es, where, n)))
    except (TypeError, ValueError) as e:
        raise CorruptRecordError(f"{where}: a pack entry is malformed ({e})") from e
    return out


def _cache_root(backend: Backend) -> str | None:
    from casstore.objects.statcache import cache_dir

    if os.environ.get("CASSTORE_INDEX_CACHE", "1").strip() == "0":
        return None
    return os.path.join(cache_dir(), "pack-index", hash_bytes(backend.url.encode())[:32])


class PackIndex:
    """Chunk digest -> :class:`Location`, merged from a store's index objects (and the
    headers of packs no index describes), for readers and writers of one store."""

    def __init__(self, backend: Backend, layout: ContentLayout) -> None:
        self.backend = backend
        self.layout = layout
        self._lock = threading.Lock()
        self._chunks: dict[str, Location] = {}
        self._entries: dict[str, Entries] = {}  # pack -> its chunks, to find another home for a chunk
        #: pack digest -> size, of every pack known
        self.packs: dict[str, int] = {}
        #: index digest -> the packs it lists, of every valid index loaded
        self.indexes: dict[str, list[str]] = {}
        #: index objects found damaged (named in the log; their packs described by their headers)
        self.damaged: dict[str, str] = {}
        self._loaded = False

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, digest: str) -> Location | None:
        if not self._loaded:
            self.load()
        return self._chunks.get(digest)

    def chunks(self) -> dict[str, Location]:
        if not self._loaded:
            self.load()
        with self._lock:
            return dict(self._chunks)

    def add(self, pack: str, size: int, entries: Entries) -> None:
        with self._lock:
            self.packs[pack] = size
            self._entries[pack] = list(entries)
            for d, off, n in entries:
                self._chunks.setdefault(d, Location(pack, off, n))

    def forget_pack(self, pack: str) -> None:
        """Drop a pack found missing (garbage collection removed it): its chunks are found
        elsewhere at the next :meth:`load`, or written anew."""
        with self._lock:
            self.packs.pop(pack, None)
            lost = {d for d, _, _ in self._entries.pop(pack, [])}
            for d in lost:
                if d in self._chunks and self._chunks[d].pack == pack:
                    del self._chunks[d]
            for other, entries in self._entries.items():  # another pack that holds the chunk
                for d, off, n in entries:
                    if d in lost and d not in self._chunks:
                        self._chunks[d] = Location(other, off, n)

    def entries(self, pack: str) -> Entries:
        """The chunks of a known pack, as its index (or header) lists them."""
        with self._lock:
            return list(self._entries.get(pack, []))

    def load(self) -> None:
        """Merge every index object in the store (those cached locally are not fetched),
        then describe the packs no valid index lists by their headers."""
        listed = [k for k in self.backend.list(INDEX_PREFIX)]
        new = [k[len(INDEX_PREFIX) :] for k in listed if is_digest(k[len(INDEX_PREFIX) :])]
        new = [d for d in new if d not in self.indexes and d not in self.damaged]
        cache = _cache_root(self.backend)
        loaded: list[tuple[str, list[tuple[str, int, Entries]]]] = []
        fetch = []
        for d in new:
            got = _read_cached(cache, d)
            if got is not None:
                loaded.append((d, got))
            else:
                fetch.append(d)
        for d, data in _read_many(self.backend, [INDEX_PREFIX + d for d in fetch]):
            if data is None:
                continue
            where = f"pack index {INDEX_PREFIX}{d}"
            actual = hash_bytes(data)
            try:
                if actual != d:
                    raise IntegrityError(where, d, actual, "its bytes are not those its name was made from")
                packs = decode_index(data, where, named=True)
            except (IntegrityError, CorruptRecordError) as e:
                self.damaged[d] = str(e)
                log.warning("%s; the packs it describes are read from their own headers instead", e)
                continue
            _write_cached(cache, d, data)
            loaded.append((d, packs))
        for d, packs in loaded:
            self.indexes[d] = [p for p, _, _ in packs]
            for p, n, es in packs:
                self.add(p, n, es)
        self._loaded = True
        self.describe_unindexed()

    def describe_unindexed(self) -> list[str]:
        """Read the header of each stored pack that no loaded index lists; return them."""
        stored = {d: k for k in self.backend.list(PACKS + "/") if (d := _parsed(self.layout, k)) is not None}
        unindexed = [k for d, k in stored.items() if d not in self.packs]
        for key in unindexed:
            try:
                size, entries = read_pack_header(self.backend, key)
            except ObjectNotFoundError:
                continue
            except CorruptRecordError as e:
                log.warning("%s", e)
                continue
            self.add(key.rsplit("/", 1)[1], size, entries)
        return unindexed


def _parsed(layout: ContentLayout, key: str) -> str | None:
    parsed = layout.parse(key)
    return parsed[1] if parsed is not None and parsed[0] == PACKS else None


def _read_cached(cache: str | None, digest: str) -> list[tuple[str, int, Entries]] | None:
    if cache is None:
        return None
    try:
        with open(os.path.join(cache, digest), "rb") as f:
            data = f.read()
    except OSError:
        return None
    if hash_bytes(data) != digest:
        return None  # a damaged cache entry: fetched again
    try:
        return decode_index(data, f"cached pack index {digest}", named=True)
    except CorruptRecordError:
        return None


def _write_cached(cache: str | None, digest: str, data: bytes) -> None:
    if cache is None:
        return
    try:
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(cache, digest))
    except OSError as e:  # a cache that cannot be written costs a fetch next time, nothing more
        log.debug("cannot cache pack index %s: %s", digest, e)


def _read_many(backend: Backend, keys: list[str]) -> list[tuple[str, bytes | None]]:
    def one(key: str) -> tuple[str, bytes | None]:
        try:
            return key[len(INDEX_PREFIX) :], backend.get(key)
        except ObjectNotFoundError:
            return key[len(INDEX_PREFIX) :], None

    if backend.concurrency <= 1 or len(keys) <= 1:
        return [one(k) for k in keys]
    with ThreadPoolExecutor(backend.concurrency, thread_name_prefix="casstore-index") as pool:
        return list(pool.map(one, keys))


class PackWriter:
    """Gathers a writer's new chunks into packs and publishes them with their index.

    :meth:`add` takes a chunk: one the store has in a pack freshens that pack (once until
    the next :meth:`publish`); a new one goes into the open pack, which is sealed and
    uploaded (up to ``in_flight`` at once, in the background) once it reaches ``target``
    bytes. :meth:`publish` seals the open pack, waits for every upload and writes one
    index object for the packs uploaded since the last one. Nothing a pack holds is
    visible to other processes (or referenced by a recipe this process writes) before
    its index is published.
    """

    def __init__(self, backend: Backend, layout: ContentLayout, index: PackIndex, *,
                 target: int = PACK_TARGET, in_flight: int = PACKS_IN_FLIGHT) -> None:
        self.backend = backend
        self.layout = layout
        self.index = index
        self.target = target
        self._lock = threading.RLock()
        self._open: list[tuple[str, bytes]] = []
        self._open_bytes = 0
        self._pending: set[str] = set()  # chunks in the open pack or in packs not indexed yet
        self._touched: set[str] = set()  # packs freshened since the last publish
        # packs whose touch is under way, and the chunks deduplicated against each meanwhile
        self._touching: dict[str, Future[bool]] = {}
        self._held: dict[str, list[tuple[str, bytes]]] = {}
        self._held_bytes = 0
        self._touch_pool: ThreadPoolExecutor | None = None
        self._uploads: list[Future[tuple[str, int, Entries]]] = []
        self._slots = threading.Semaphore(max(1, in_flight))
        self._pool: ThreadPoolExecutor | None = None
        self.in_flight = max(1, in_flight)
        #: chunks and bytes written into packs (not deduplicated away)
        self.chunks_written = 0
        self.bytes_written = 0
        self.packs_written = 0

    def has(self, digest: str) -> bool:
        """Whether the chunk is in a stored pack (freshened) or pending in this writer."""
        with self._lock:
            if digest in self._pending:
                return True
        return self._freshen(digest)

    def _freshen(self, digest: str) -> bool:
        for _ in range(3):
            loc = self.index.get(digest)
            if loc is None:
                return False
            with self._lock:
                if loc.pack in self._touched:
                    return True
            if self.backend.touch(self.layout.pack_key(loc.pack)):
                with self._lock:
                    self._touched.add(loc.pack)
                return True
            self.index.forget_pack(loc.pack)  # removed by gc since the index was read
        return False

    def add(self, digest: str, data: bytes | bytearray | memoryview, *, copy: bool = False) -> bool:
        """Store a chunk unless the store has it; return whether it went into a new pack.
        With ``copy`` (garbage collection repacking a pack) it goes into a new pack anyway,
        and the pack it is copied from is not freshened.

        A chunk found in a stored pack is not waited for: the pack's touch is sent in the
        background and the chunk held until it answers (:data:`HELD_MAX` bytes at most);
        if the pack is gone, the chunk goes into a new pack. :meth:`publish` waits for
        every touch, so the guarantee of :meth:`has` holds before anything references it."""
        if not copy:
            with self._lock:
                if digest in self._pending:
                    return False
            if self._reuse(digest, data):
                return False
        return self._append(digest, data)

    def _reuse(self, digest: str, data: bytes | bytearray | memoryview) -> bool:
        """Whether a stored pack has the chunk: freshened already, or its touch started (the
        chunk held meanwhile)."""
        loc = self.index.get(digest)
        if loc is None:
            return False
        with self._lock:
            if loc.pack in self._touched:
                return True
            if loc.pack not in self._touching:
                if self._touch_pool is None:
                    self._touch_pool = ThreadPoolExecutor(TOUCHES_IN_FLIGHT, thread_name_prefix="casstore-touch")
                self._touching[loc.pack] = self._touch_pool.submit(
                    self.backend.touch, self.layout.pack_key(loc.pack)
                )
            self._held.setdefault(loc.pack, []).append((digest, bytes(data)))
            self._held_bytes += len(data)
            over = self._held_bytes > HELD_MAX
        if over:
            self._settle(wait_all=False)
        return True

    def _settle(self, *, wait_all: bool) -> None:
        """Take the answers of the touches under way (all of them, or the oldest until the
        held chunks are within :data:`HELD_MAX`): a freshened pack's chunks are dropped, a
        gone pack's chunks stored anew (in another pack that has them, or a new one)."""
        while True:
            with self._lock:
                if not self._touching or (not wait_all and self._held_bytes <= HELD_MAX):
                    return
                pack, touch = next(iter(self._touching.items()))
            try:
                fresh = touch.result()
            except BaseException:
                with self._lock:
                    self._drop_touch(pack)
                raise
            with self._lock:
                held = self._drop_touch(pack)
                if fresh:
                    self._touched.add(pack)
                    continue
            self.index.forget_pack(pack)  # removed by gc since the index was read
            for d, data in held:
                self.add(d, data)

    def _drop_touch(self, pack: str) -> list[tuple[str, bytes]]:
        self._touching.pop(pack, None)
        held = self._held.pop(pack, [])
        self._held_bytes -= sum(len(data) for _, data in held)
        return held

    def _append(self, digest: str, data: bytes | bytearray | memoryview) -> bool:
        with self._lock:
            if digest in self._pending:
                return False
            self._pending.add(digest)
            self._open.append((digest, bytes(data)))
            self._open_bytes += len(data)
            self.chunks_written += 1
            self.bytes_written += len(data)
            if self._open_bytes >= self.target:
                self._seal()
        return True

    def _seal(self) -> None:
        """Upload the open pack in the background (holding the lock)."""
        if not self._open:
            return
        chunks, self._open, self._open_bytes = self._open, [], 0
        self._raise_failed()
        self._slots.acquire()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="casstore-pack")
        self._uploads.append(self._pool.submit(self._upload, chunks))

    def _upload(self, chunks: list[tuple[str, bytes]]) -> tuple[str, int, Entries]:
        try:
            data, entries = encode_pack(chunks)
            del chunks
            digest = hash_bytes(data)
            # create-if-absent; an identical pack stored already is freshened instead (a
            # re-created pack counts as a new reference for gc), or written anew if it vanished
            self.backend.put_blob(self.layout.pack_key(digest), data)
            self.packs_written += 1
            return digest, len(data), entries
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        for f in [f for f in self._uploads if f.done()]:
            f.result()

    @property
    def dirty(self) -> bool:
        with self._lock:
            return bool(self._open or self._uploads or self._touching)

    def publish(self) -> str | None:
        """Seal the open pack, wait for every upload, write their index; return its digest
        (None if there was nothing to publish). Writers call this before any object or
        record that references the chunks (a recipe, the durability barrier)."""
        self._settle(wait_all=True)
        with self._lock:
            self._seal()
            uploads, self._uploads = self._uploads, []
            self._touched.clear()
            if not uploads:
                return None
            try:
                done = [f.result() for f in uploads]
            except BaseException:
                for f in uploads:
                    f.exception()  # wait for the others; the chunks are written again next time
                self._pending.clear()
                raise
            self.backend.flush()  # the barrier between the packs and the index naming them
            data = encode_index(done)
            digest = hash_bytes(data)
            self.backend.put_blob(INDEX_PREFIX + digest, data)
            _write_cached(_cache_root(self.backend), digest, data)
            for p, n, es in done:
                self.index.add(p, n, es)
            self.index.indexes[digest] = [p for p, _, _ in done]
            self._pending.clear()
            return digest

    def close(self) -> None:
        with self._lock:
            pools, self._pool, self._touch_pool = (self._pool, self._touch_pool), None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)


def coalesce(
    located: Sequence[tuple[str, int, Location | None]], span_max: int = SPAN_MAX
) -> list[list[tuple[str, int, Location | None]]]:
    """Group ``(digest, length, location)`` in order into runs of adjacent bytes of one pack,
    each at most ``span_max`` bytes: one ranged read each. A chunk without a location (a
    loose chunk) is a run of its own."""
    spans: list[list[tuple[str, int, Location | None]]] = []
    for item in located:
        loc = item[2]
        if spans and loc is not None:
            last = spans[-1]
            first, prev = last[0][2], last[-1][2]
            if (first is not None and prev is not None and prev.pack == loc.pack
                    and prev.offset + prev.length == loc.offset and loc.offset + loc.length - first.offset <= span_max):
                last.append(item)
                continue
        spans.append([item])
    return spans
