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
Readers and writers merge every index (:class:`PackIndex`) into sorted arrays kept in
local cache files they map (:mod:`casstore.objects.chunkindex`, under
:func:`~casstore.objects.statcache.cache_dir`), so a store is listed, not downloaded, at
the next open, and only new index objects are read. The index is never the source of
truth: a pack no valid index describes (a writer killed between the pack and its index,
a damaged index) is described by its own header instead, and every chunk read is
checked against its digest.

Order: pack, then its index, then the records that reference its chunks. A writer
deduplicating against a chunk in a stored pack sends no request for it: it checks garbage
collection's marks (a listing of ``gc/candidates/``, then of ``chunk-index/``) at the first
reuse of each put, and freshens (``Backend.touch``) only a reused pack that gc has marked or
that no index object lists, writing the chunk anew if that pack is gone (see
:mod:`casstore.maintenance.gc` and docs/design.md, "Garbage collection").
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, CorruptRecordError, IntegrityError, ObjectNotFoundError
from casstore.objects.chunkindex import (
    DamagedSegment,
    Segment,
    build_segment,
    digests_of,
    merge_segments,
    open_segment,
    rows_of_packs,
    save_segment,
)
from casstore.objects.chunking import ChunkerParams
from casstore.objects.codec import CHECK_FIELD, pack_checked, unpack, unpack_checked
from casstore.objects.digest import hash_bytes, is_digest
from casstore.objects.layout import CANDIDATES_PREFIX, PACKS, ContentLayout

__all__ = [
    "CANDIDATES_PREFIX",
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
#: a put that begins within this many seconds of a writer's last check of gc's marks reuses
#: that check (a publish ends its use at once): many small files cost a check per second
CHECK_REUSE = 1.0
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
    out += _pack_tail(entries)
    return bytes(out), entries


def _pack_tail(entries: Entries) -> bytes:
    """What ends a pack of ``entries``: its header and trailer."""
    header = pack_checked({"v": PACK_VERSION, "chunks": [list(e) for e in entries]})
    return header + _TRAILER.pack(len(header), MAGIC)


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


#: the cache files of the merged index: a large one rewritten seldom, a small one beside it
_SEGMENT_FILES = ("segment-base", "segment-delta")
#: the small segment is folded into the large one once it holds this share of its entries
_DELTA_SHARE = 8


class PackIndex:
    """Chunk digest -> :class:`Location`, merged from a store's index objects (and the
    headers of packs no index describes), for readers and writers of one store.

    The entries of the index objects are held in two :class:`~casstore.objects.chunkindex.Segment`
    (sorted arrays, 48 bytes per chunk), cached as files this process maps
    (``$CASSTORE_CACHE_DIR/pack-index/<store>/segment-base`` and ``segment-delta``): a
    new index object is merged into the small one, which is folded into the large one
    once it holds an eighth of its entries, so opening a store costs a listing of
    ``chunk-index/``, the new index objects, and a BLAKE3 check of the cache files.
    Packs described by their headers and packs this process wrote are held beside them
    in a dict until an index object that lists them is merged."""

    def __init__(self, backend: Backend, layout: ContentLayout) -> None:
        self.backend = backend
        self.layout = layout
        self._lock = threading.RLock()
        #: the large segment and the small one (see the class docstring)
        self._segments: list[Segment] = []
        self._seg_indexes: list[list[str]] = []
        #: per segment, whether each pack row counts: its index is listed, the pack not gone
        self._live: list[npt.NDArray[np.bool_]] = []
        self._opened = False
        # packs held outside the segments: described by their headers, written here, repacked
        self._extra: dict[str, Location] = {}
        self._extra_entries: dict[str, Entries] = {}
        self._extra_sizes: dict[str, int] = {}
        #: index objects this process published and has not merged into a segment yet
        self._own: dict[str, list[tuple[str, int, Entries]]] = {}
        #: packs found missing (removed by gc since an index listing them was read)
        self._gone: set[str] = set()
        self._listed: set[str] = set()
        self._views: tuple[dict[str, int], dict[str, list[str]]] | None = None
        self._by_pack: dict[str, list[tuple[int, npt.NDArray[np.int64]]]] | None = None
        #: index objects found damaged (named in the log; their packs described by their headers)
        self.damaged: dict[str, str] = {}
        self._loaded = False
        #: whether the packs no index lists have been described (:meth:`describe_unindexed`)
        self.described = False

    def __len__(self) -> int:
        """Chunk entries held (a chunk in two packs counts twice)."""
        with self._lock:
            return len(self._extra) + sum(int(live[seg.pack].sum()) for seg, live in zip(self._segments, self._live))

    # ---- lookups ------------------------------------------------------------------------

    def get(self, digest: str) -> Location | None:
        if not self._loaded:
            self.load_indexes()
        with self._lock:
            loc = self._extra.get(digest)
            if loc is not None:
                return loc
        return self._find(digest)

    def locate(self, digest: str) -> tuple[Location, bool] | None:
        """Where a chunk is, and whether an index object of the last listing of
        ``chunk-index/`` lists that pack (False: only its header, or this process,
        describes it)."""
        if not self._loaded:
            self.load_indexes()
        loc = self._find(digest)
        if loc is not None:
            return loc, True
        with self._lock:
            loc = self._extra.get(digest)
        return (loc, False) if loc is not None else None

    def _find(self, digest: str) -> Location | None:
        """The chunk's place in a pack an index object of the last listing lists."""
        with self._lock:
            segments = list(zip(self._segments, self._live))
        raw = bytes.fromhex(digest)
        for seg, live in segments:
            row = seg.find(raw, live)
            if row is not None:
                return Location(seg.pack_digest[seg.pack[row]].tobytes().hex(), int(seg.offset[row]), int(seg.length[row]))
        return None

    def chunks(self) -> dict[str, Location]:
        """Every chunk held, with one of its locations."""
        if not self._loaded:
            self.load()
        with self._lock:
            out: dict[str, Location] = {}
            for seg, live in zip(self._segments, self._live):
                rows = np.nonzero(live[seg.pack])[0].astype(np.int64)
                names = seg.pack_names()
                packs, offsets, lengths = seg.pack[rows].tolist(), seg.offset[rows].tolist(), seg.length[rows].tolist()
                for d, p, off, n in zip(digests_of(seg, rows), packs, offsets, lengths):
                    out.setdefault(d, Location(names[p], off, n))
            for d, loc in self._extra.items():
                out.setdefault(d, loc)
            return out

    @property
    def packs(self) -> dict[str, int]:
        """Pack digest -> size, of every pack known (a mapping built when first asked)."""
        return self._mappings()[0]

    @property
    def indexes(self) -> dict[str, list[str]]:
        """Index digest -> the packs it lists, of every valid index loaded."""
        return self._mappings()[1]

    def _mappings(self) -> tuple[dict[str, int], dict[str, list[str]]]:
        with self._lock:
            if self._views is None:
                packs: dict[str, int] = {}
                indexes: dict[str, list[str]] = {}
                for seg, names, live in zip(self._segments, self._seg_indexes, self._live):
                    sizes = seg.pack_size.tolist()
                    owners = seg.pack_index.tolist()
                    for row, p in enumerate(seg.pack_names()):
                        if live[row]:
                            packs[p] = sizes[row]
                            indexes.setdefault(names[owners[row]], []).append(p)
                for d, own in self._own.items():
                    indexes[d] = [p for p, _, _ in own]
                packs.update(self._extra_sizes)
                self._views = packs, indexes
            return self._views

    def entries(self, pack: str) -> Entries:
        """The chunks of a known pack, as its index (or header) lists them."""
        with self._lock:
            if pack in self._extra_entries:
                return list(self._extra_entries[pack])
            if self._by_pack is None:
                by_pack: dict[str, list[tuple[int, npt.NDArray[np.int64]]]] = {}
                for i, (seg, live) in enumerate(zip(self._segments, self._live)):
                    order, starts = rows_of_packs(seg)
                    for row, p in enumerate(seg.pack_names()):
                        if live[row]:
                            by_pack.setdefault(p, []).append((i, order[starts[row] : starts[row + 1]]))
                self._by_pack = by_pack
            found = self._by_pack.get(pack)
            if not found:
                return []
            i, rows = found[0]
            seg = self._segments[i]
            rows = rows[np.argsort(seg.offset[rows], kind="stable")]
            return list(zip(digests_of(seg, rows), seg.offset[rows].tolist(), seg.length[rows].tolist()))

    # ---- changes ------------------------------------------------------------------------

    def add(self, pack: str, size: int, entries: Entries) -> None:
        """Hold the chunks of a pack described by its header or written by this process."""
        with self._lock:
            self._gone.discard(pack)
            self._extra_sizes[pack] = size
            self._extra_entries[pack] = list(entries)
            for d, off, n in entries:
                self._extra.setdefault(d, Location(pack, off, n))
            self._views = None

    def published(self, digest: str, packs: list[tuple[str, int, Entries]]) -> None:
        """Hold the packs of an index object this process has just published."""
        with self._lock:
            for p, n, es in packs:
                self.add(p, n, es)
            self._own[digest] = packs
            self._views = None

    def forget_pack(self, pack: str) -> None:
        """Drop a pack found missing (garbage collection removed it): its chunks are found
        elsewhere, at the next :meth:`load`, or written anew."""
        with self._lock:
            self._gone.add(pack)
            self._extra_sizes.pop(pack, None)
            lost = {d for d, _, _ in self._extra_entries.pop(pack, [])}
            for d in lost:
                if d in self._extra and self._extra[d].pack == pack:
                    del self._extra[d]
            for other, entries in self._extra_entries.items():  # another pack that holds the chunk
                for d, off, n in entries:
                    if d in lost and d not in self._extra:
                        self._extra[d] = Location(other, off, n)
            raw = np.frombuffer(bytes.fromhex(pack), dtype=np.uint8)
            for seg, live in zip(self._segments, self._live):
                live[np.all(seg.pack_digest == raw, axis=1)] = False
            self._views = self._by_pack = None

    # ---- loading ------------------------------------------------------------------------

    def load(self) -> None:
        """Merge every index object in the store (those merged before, in the local cache,
        are not fetched), then describe the packs no valid index lists by their headers."""
        self.load_indexes()
        self.describe_unindexed()

    def load_indexes(self) -> None:
        """Merge the store's index objects: one listing of ``chunk-index/``, and a read of
        each index object neither the cache files nor this process hold."""
        listed = {d for k in self.backend.list(INDEX_PREFIX) if is_digest(d := k[len(INDEX_PREFIX) :])}
        cache = _cache_root(self.backend)
        with self._lock:
            if not self._opened:
                self._open_cached(cache)
            covered = {d for names in self._seg_indexes for d in names}
            new = sorted(listed - covered - set(self.damaged))
        fresh: list[tuple[str, list[tuple[str, int, Entries]]]] = []
        fetch = []
        for d in new:
            got = self._own.get(d) or _read_cached(cache, d)
            if got is not None:
                fresh.append((d, got))
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
                fresh.append((d, decode_index(data, where, named=True)))
            except (IntegrityError, CorruptRecordError) as e:
                self.damaged[d] = str(e)
                log.warning("%s; the packs it describes are read from their own headers instead", e)
        with self._lock:
            self._merge(fresh, listed, cache)
            self._loaded = True

    def _open_cached(self, cache: str | None) -> None:
        self._opened = True
        if cache is None:
            return
        for name in _SEGMENT_FILES:
            path = os.path.join(cache, name)
            try:
                seg = open_segment(path)
            except FileNotFoundError:
                seg = build_segment([])
            except (OSError, DamagedSegment) as e:
                log.warning("the local cache of the chunk index is damaged (%s); it is rebuilt from the store", e)
                with contextlib.suppress(OSError):
                    os.unlink(path)
                seg = build_segment([])
            self._set_segment(len(self._segments), seg)

    def _set_segment(self, i: int, seg: Segment) -> None:
        names = seg.indexes()
        live = np.ones(seg.packs, dtype=bool)
        if i < len(self._segments):
            self._segments[i], self._seg_indexes[i], self._live[i] = seg, names, live
        else:
            self._segments.append(seg)
            self._seg_indexes.append(names)
            self._live.append(live)

    def _merge(self, fresh: list[tuple[str, list[tuple[str, int, Entries]]]], listed: set[str], cache: str | None) -> None:
        """Merge the index objects of ``fresh`` into the small segment (and that into the
        large one when it has grown), keeping only the index objects ``listed``; save
        what changed, and mark the packs that count."""
        while len(self._segments) < 2:
            self._set_segment(len(self._segments), build_segment([]))
        base, delta = self._segments
        stale = sum(len(set(names) - listed) for names in self._seg_indexes)
        if fresh or stale:
            delta = merge_segments([delta, build_segment(fresh)], keep=listed)
            changed = [1]
            if stale or len(delta) * _DELTA_SHARE > len(base):
                base, delta = merge_segments([base, delta], keep=listed), build_segment([])
                changed = [0, 1]
            for i, seg in ((0, base), (1, delta)):
                if i in changed:
                    self._set_segment(i, seg)
                    if cache is not None:
                        try:
                            save_segment(seg, os.path.join(cache, _SEGMENT_FILES[i]))
                        except OSError as e:  # a cache that cannot be written costs a fetch next time
                            log.debug("cannot save the chunk index cache %s: %s", cache, e)
            for d, _ in fresh:
                self._own.pop(d, None)
                if cache is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(cache, d))
        for i, (seg, names) in enumerate(zip(self._segments, self._seg_indexes)):
            counts = np.array([d in listed for d in names], dtype=bool)
            live = counts[seg.pack_index] if seg.packs else np.zeros(0, dtype=bool)
            for p in self._gone:
                live[np.all(seg.pack_digest == np.frombuffer(bytes.fromhex(p), dtype=np.uint8), axis=1)] = False
            self._live[i] = live
        self._listed = listed
        self._views = self._by_pack = None

    def describe_once(self) -> None:
        """:meth:`describe_unindexed` unless done (a writer's first lookup: a reader needs it
        only when a chunk is not found)."""
        if not self.described:
            if not self._loaded:
                self.load_indexes()
            self.describe_unindexed()

    def describe_unindexed(self) -> list[str]:
        """Read the header of each stored pack that no loaded index lists; return them.
        A pack held from its header (or written here) before the listing that the listing
        does not show was removed by gc since: it is forgotten, so its chunks are not
        looked for there."""
        with self._lock:
            held = set(self._extra_sizes)
        stored = {d: k for k in self.backend.list(PACKS + "/") if (d := _parsed(self.layout, k)) is not None}
        for p in sorted(held - stored.keys()):
            self.forget_pack(p)
        known = self.packs
        unindexed = [k for d, k in stored.items() if d not in known]
        for key in unindexed:
            try:
                size, entries = read_pack_header(self.backend, key)
            except ObjectNotFoundError:
                continue
            except CorruptRecordError as e:
                log.warning("%s", e)
                continue
            self.add(key.rsplit("/", 1)[1], size, entries)
        self.described = True
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


def _read_many(backend: Backend, keys: list[str], prefix: str = INDEX_PREFIX) -> list[tuple[str, bytes | None]]:
    """``(name after prefix, bytes)`` of each key, None for one gone, several at once."""
    def one(key: str) -> tuple[str, bytes | None]:
        try:
            return key[len(prefix) :], backend.get(key)
        except ObjectNotFoundError:
            return key[len(prefix) :], None

    if backend.concurrency <= 1 or len(keys) <= 1:
        return [one(k) for k in keys]
    with ThreadPoolExecutor(backend.concurrency, thread_name_prefix="casstore-index") as pool:
        return list(pool.map(one, keys))


def _marked_packs(data: bytes | None, where: str) -> frozenset[str]:
    """The packs a gc candidates record marks (none for a record gone or damaged: gc
    sweeps nothing by a record it cannot read)."""
    if data is None:
        return frozenset()
    try:
        rec = unpack(data, where)
        return frozenset(d for d in rec["candidates"].get(PACKS, []) if is_digest(d))
    except (CorruptRecordError, KeyError, TypeError, AttributeError):
        return frozenset()


class PackWriter:
    """Gathers a writer's new chunks into packs and publishes them with their index.

    :meth:`add` takes a chunk: one the store has in a pack is reused (see :meth:`has`); a
    new one goes into the open pack, which is sealed and uploaded (up to ``in_flight`` at
    once, in the background) once it reaches ``target`` bytes. :meth:`publish` seals the
    open pack, waits for every upload and writes one index object for the packs uploaded
    since the last one. Nothing a pack holds is visible to other processes (or referenced
    by a recipe this process writes) before its index is published.

    Reusing a stored chunk costs no request in the usual case. At the first reuse of a put
    (:meth:`begin`) the writer checks garbage collection's marks: it lists
    ``gc/candidates/`` (reading each record once) and then ``chunk-index/``. A reused pack
    that a candidates record marks, or that no listed index object lists, is freshened
    (``Backend.touch``) once per check; one found gone has the chunk written anew. Why
    that keeps every published reference: docs/design.md, "Garbage collection".
    """

    def __init__(self, backend: Backend, layout: ContentLayout, index: PackIndex, *,
                 target: int = PACK_TARGET, in_flight: int = PACKS_IN_FLIGHT) -> None:
        self.backend = backend
        self.layout = layout
        self.index = index
        self.target = target
        self._lock = threading.RLock()
        # the open pack: its bytes so far (each chunk copied in once), and its chunks
        self._buf: io.BytesIO | None = None
        self._entries: Entries = []
        self._open_bytes = 0
        self._pending: set[str] = set()  # chunks in the open pack or in packs not indexed yet
        # gc's marks: the check in use (monotonic time; None: check at the next reuse), the
        # packs marked by the records it listed, the candidates records read (by name), and
        # the marked or unindexed packs freshened since it
        self._check_lock = threading.Lock()
        self._checked_at: float | None = None
        self._marked: frozenset[str] = frozenset()
        self._records: dict[str, frozenset[str]] = {}
        self._touched: set[str] = set()
        self._uploads: list[Future[tuple[str, int, Entries]]] = []
        self._slots = threading.Semaphore(max(1, in_flight))
        self._pool: ThreadPoolExecutor | None = None
        self.in_flight = max(1, in_flight)
        #: chunks and bytes written into packs (not deduplicated away)
        self.chunks_written = 0
        self.bytes_written = 0
        self.packs_written = 0

    def begin(self) -> None:
        """A put begins: its first reuse of a stored chunk checks gc's marks again, unless
        the last check is under :data:`CHECK_REUSE` seconds old."""
        with self._lock:
            if self._checked_at is not None and time.monotonic() - self._checked_at > CHECK_REUSE:
                self._checked_at = None

    def has(self, digest: str) -> bool:
        """Whether the chunk is in a stored pack a record may reference (see :meth:`add`)
        or pending in this writer."""
        with self._lock:
            if digest in self._pending:
                return True
        self.index.describe_once()  # a killed writer's packs, which no index lists, are reused
        return self._reuse(digest)

    def add(self, digest: str, data: bytes | bytearray | memoryview, *, copy: bool = False) -> bool:
        """Store a chunk unless the store has it; return whether it went into a new pack.
        With ``copy`` (garbage collection repacking a pack) it goes into a new pack anyway,
        and the pack it is copied from is not freshened."""
        if not copy:
            with self._lock:
                if digest in self._pending:
                    return False
            if self._reuse(digest):
                return False
        return self._append(digest, data)

    def _reuse(self, digest: str) -> bool:
        """Whether a stored pack has the chunk and a record may reference it: gc's marks
        checked for this put, and the pack freshened if it is marked or no index lists it."""
        if self.index.locate(digest) is None:
            return False
        self.check_marks()
        # looked up again after the check, which refreshes the index, whichever thread made it
        found = self.index.locate(digest)
        for _ in range(3):
            if found is None:
                return False
            loc, indexed = found
            with self._lock:
                if loc.pack in self._touched or (indexed and loc.pack not in self._marked):
                    return True
            if self.backend.touch(self.layout.pack_key(loc.pack)):
                with self._lock:
                    self._touched.add(loc.pack)
                return True
            self.index.forget_pack(loc.pack)  # removed by gc since the index was read
            found = self.index.locate(digest)
        return False

    def check_marks(self) -> None:
        """Check gc's marks for this put unless that is done (see :meth:`begin`): what the
        first reuse of a put does, for a caller that knows a reuse comes."""
        with self._check_lock:
            if self._checked_at is None:
                self._check()

    def _check(self) -> None:
        """List gc's candidates records (reading the ones not read before), then refresh the
        index from a listing of ``chunk-index/``, in this order (holding ``_check_lock``)."""
        listed = sorted(self.backend.list(CANDIDATES_PREFIX))
        new = [k for k in listed if k not in self._records]
        for key, data in _read_many(self.backend, new, CANDIDATES_PREFIX):
            self._records[CANDIDATES_PREFIX + key] = _marked_packs(data, CANDIDATES_PREFIX + key)
        marked = frozenset().union(*(self._records[k] for k in listed if k in self._records))
        self.index.load_indexes()
        with self._lock:
            self._marked = marked
            self._touched.clear()
            self._checked_at = time.monotonic()

    def _append(self, digest: str, data: bytes | bytearray | memoryview) -> bool:
        with self._lock:
            if digest in self._pending:
                return False
            self._pending.add(digest)
            if self._buf is None:
                self._buf = io.BytesIO()
            self._buf.write(data)
            self._entries.append((digest, self._open_bytes, len(data)))
            self._open_bytes += len(data)
            self.chunks_written += 1
            self.bytes_written += len(data)
            if self._open_bytes >= self.target:
                self._seal()
        return True

    def _seal(self) -> None:
        """Upload the open pack in the background (holding the lock)."""
        if self._buf is None or not self._entries:
            return
        buf, entries = self._buf, self._entries
        self._buf, self._entries, self._open_bytes = None, [], 0
        buf.write(_pack_tail(entries))
        data = buf.getvalue()  # the buffer itself, not a copy
        self._raise_failed()
        self._slots.acquire()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="casstore-pack")
        self._uploads.append(self._pool.submit(self._upload, data, entries))

    def _upload(self, data: bytes, entries: Entries) -> tuple[str, int, Entries]:
        try:
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
        """Whether there is anything to publish, or a check of gc's marks to end."""
        with self._lock:
            return bool(self._entries or self._uploads or self._checked_at is not None)

    def publish(self) -> str | None:
        """Seal the open pack, wait for every upload, write their index; return its digest
        (None if there was nothing to publish). Writers call this before any object or
        record that references the chunks (a recipe, the durability barrier)."""
        with self._lock:
            self._checked_at = None  # the records published next rely on no earlier check
            self._seal()
            uploads, self._uploads = self._uploads, []
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
            self.index.published(digest, done)
            self._pending.clear()
            return digest

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
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
