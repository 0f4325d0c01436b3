"""The merged chunk index as sorted fixed-width arrays, cached in compact local files.

A store of the packs layout says where each chunk is in index objects (``chunk-index/``,
see :mod:`casstore.objects.packs`). Held as a Python dict, a merged index costs about
400 bytes per chunk (15 GiB for a 10 TB store). A :class:`Segment` holds the same
entries in columns sorted by digest, 48 bytes per chunk:

========  =====================================  =====
column    what                                   bytes
========  =====================================  =====
key       the digest's first 8 bytes, as an      8
          unsigned big-endian integer (sorted)
rest      the digest's other 24 bytes            24
pack      the row of the chunk's pack            4
offset    where the chunk starts in its pack     8
length    its length                             4
========  =====================================  =====

and per pack a row of its digest (32 bytes), size (8) and the row of the index object
that listed it (4). A lookup is a binary search of ``key`` and a comparison of ``rest``:
the full digest is held, so a lookup never answers for another chunk.

A segment is saved as one file (:func:`save_segment`) and opened with ``mmap``
(:func:`open_segment`): the arrays are views of the mapped file, so a process holds in
memory only the pages its lookups touch, and the kernel may drop them again. The file
ends with the BLAKE3 of all that precedes it, checked when it is opened: a damaged or
truncated file is refused (:class:`DamagedSegment`) and rebuilt from the store by the
caller. A cache is never the source of truth: every chunk read through it is checked
against its digest.

::

    b"casscidx" | u32 little-endian header length | header (msgpack) | zero padding
    | array bytes, each at a multiple of 8 | BLAKE3 of everything before (32 bytes)

The header is ``{"v": 1, "arrays": {name: [dtype, count, offset], ...}}``.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
import numpy.typing as npt

from casstore.objects.digest import hash_bytes, new_hasher

__all__ = [
    "ENTRY_BYTES",
    "PACK_BYTES",
    "DamagedSegment",
    "Segment",
    "build_segment",
    "digests_of",
    "merge_segments",
    "open_segment",
    "rows_of_packs",
    "save_segment",
]

MAGIC = b"casscidx"
VERSION = 1
_HEAD = struct.Struct("<8sI")
_CHECK = 32
#: bytes per chunk entry in a segment (memory when every page is touched, and on disk)
ENTRY_BYTES = 8 + 24 + 4 + 8 + 4
#: bytes per pack row
PACK_BYTES = 32 + 8 + 4

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

#: one index object's packs: ``(index digest, [(pack digest, size, [(chunk, offset, length), ...]), ...])``
IndexPacks = tuple[str, Sequence[tuple[str, int, Sequence[tuple[str, int, int]]]]]


class DamagedSegment(Exception):
    """A cache file that is truncated, damaged or of another format."""


@dataclass(frozen=True, eq=False)
class Segment:
    """Chunk entries sorted by digest, with the packs and index objects they come from."""

    #: ``(n,)`` the first 8 bytes of each digest as a big-endian integer, sorted
    key: U64
    #: ``(n, 24)`` the other 24 bytes of each digest
    rest: U8
    #: ``(n,)`` the row of each chunk's pack
    pack: U32
    offset: U64
    length: U32
    #: ``(p, 32)`` pack digests; ``(p,)`` their sizes and the row of the index that listed each
    pack_digest: U8
    pack_size: U64
    pack_index: U32
    #: ``(i, 32)`` the digests of the index objects this segment holds
    index_digest: U8

    def __len__(self) -> int:
        return int(self.key.shape[0])

    @property
    def packs(self) -> int:
        return int(self.pack_size.shape[0])

    def indexes(self) -> list[str]:
        return [bytes(r).hex() for r in self.index_digest]

    def pack_names(self) -> list[str]:
        return [bytes(r).hex() for r in self.pack_digest]

    def find(self, raw: bytes, live: npt.NDArray[np.bool_] | None = None) -> int | None:
        """The row of the chunk whose digest is ``raw`` (32 bytes) in a pack ``live`` allows
        (every pack without it), or None."""
        key = int.from_bytes(raw[:8], "big")
        keys = self.key.data  # bisect over the buffer: no array object per probe
        i = bisect.bisect_left(keys, key)
        n = len(keys)
        rest = raw[8:]
        while i < n and keys[i] == key:
            if self.rest[i].tobytes() == rest and (live is None or live[self.pack[i]]):
                return i
            i += 1
        return None

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays().values())

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {
            "key": self.key, "offset": self.offset, "pack_size": self.pack_size, "rest": self.rest,
            "pack": self.pack, "length": self.length, "pack_index": self.pack_index,
            "pack_digest": self.pack_digest, "index_digest": self.index_digest,
        }


def _raw_digests(hexes: Sequence[str], what: str) -> U8:
    try:
        raw = bytes.fromhex("".join(hexes))
    except ValueError as e:
        raise ValueError(f"a {what} digest is not hexadecimal") from e
    if len(raw) != 32 * len(hexes):
        raise ValueError(f"a {what} digest is not 32 bytes")
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(hexes), 32)


def _keys_of(raw: U8) -> U64:
    return np.ascontiguousarray(raw[:, :8]).view(">u8").reshape(-1).astype(np.uint64)


def build_segment(indexes: Iterable[IndexPacks]) -> Segment:
    """A segment of the packs that ``indexes`` list."""
    index_names: list[str] = []
    pack_names: list[str] = []
    pack_sizes: list[int] = []
    pack_index: list[int] = []
    chunks: list[str] = []
    pack_rows: list[int] = []
    offsets: list[int] = []
    lengths: list[int] = []
    for i, (index, packs) in enumerate(indexes):
        index_names.append(index)
        for pack, size, entries in packs:
            row = len(pack_names)
            pack_names.append(pack)
            pack_sizes.append(size)
            pack_index.append(i)
            for d, off, n in entries:
                chunks.append(d)
                pack_rows.append(row)
                offsets.append(off)
                lengths.append(n)
    raw = _raw_digests(chunks, "chunk")
    key = _keys_of(raw)
    order = np.argsort(key, kind="stable")
    return Segment(
        key=key[order],
        rest=np.ascontiguousarray(raw[order, 8:]),
        pack=np.asarray(pack_rows, dtype=np.uint32)[order],
        offset=np.asarray(offsets, dtype=np.uint64)[order],
        length=np.asarray(lengths, dtype=np.uint32)[order],
        pack_digest=_raw_digests(pack_names, "pack").copy(),
        pack_size=np.asarray(pack_sizes, dtype=np.uint64),
        pack_index=np.asarray(pack_index, dtype=np.uint32),
        index_digest=_raw_digests(index_names, "index").copy(),
    )


def merge_segments(segments: Sequence[Segment], keep: set[str] | None = None) -> Segment:
    """One segment of the entries of ``segments``, keeping only the index objects of
    ``keep`` (all if None) and the packs and chunks they list."""
    keys, rests, packs, offsets, lengths = [], [], [], [], []
    pack_digest, pack_size, pack_index, index_digest = [], [], [], []
    index_base = pack_base = 0
    for seg in segments:
        kept_index = np.ones(len(seg.index_digest), dtype=bool)
        if keep is not None:
            kept_index = np.array([name in keep for name in seg.indexes()], dtype=bool)
        # new numbers of the kept index rows and pack rows
        index_no = np.cumsum(kept_index, dtype=np.int64) - 1 + index_base
        kept_pack = kept_index[seg.pack_index] if seg.packs else np.zeros(0, dtype=bool)
        pack_no = np.cumsum(kept_pack, dtype=np.int64) - 1 + pack_base
        rows = kept_pack[seg.pack] if len(seg) else np.zeros(0, dtype=bool)
        keys.append(seg.key[rows])
        rests.append(seg.rest[rows])
        packs.append(pack_no[seg.pack[rows]].astype(np.uint32))
        offsets.append(seg.offset[rows])
        lengths.append(seg.length[rows])
        pack_digest.append(seg.pack_digest[kept_pack])
        pack_size.append(seg.pack_size[kept_pack])
        pack_index.append(index_no[seg.pack_index[kept_pack]].astype(np.uint32))
        index_digest.append(seg.index_digest[kept_index])
        index_base += int(kept_index.sum())
        pack_base += int(kept_pack.sum())
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    order = np.argsort(key, kind="stable")  # a radix sort of runs already sorted
    return Segment(
        key=key[order],
        rest=np.concatenate(rests)[order] if rests else np.zeros((0, 24), dtype=np.uint8),
        pack=np.concatenate(packs)[order] if packs else np.zeros(0, dtype=np.uint32),
        offset=np.concatenate(offsets)[order] if offsets else np.zeros(0, dtype=np.uint64),
        length=np.concatenate(lengths)[order] if lengths else np.zeros(0, dtype=np.uint32),
        pack_digest=np.concatenate(pack_digest) if pack_digest else np.zeros((0, 32), dtype=np.uint8),
        pack_size=np.concatenate(pack_size) if pack_size else np.zeros(0, dtype=np.uint64),
        pack_index=np.concatenate(pack_index) if pack_index else np.zeros(0, dtype=np.uint32),
        index_digest=np.concatenate(index_digest) if index_digest else np.zeros((0, 32), dtype=np.uint8),
    )


_SHAPES = {"rest": 24, "pack_digest": 32, "index_digest": 32}


def save_segment(seg: Segment, path: str) -> None:
    """Write ``seg`` to ``path`` (a new file, renamed into place)."""
    arrays = seg._arrays()
    table: dict[str, list[object]] = {}
    pos = 0
    for name, a in arrays.items():
        table[name] = [a.dtype.str, int(a.shape[0]), pos]
        pos += -(-a.nbytes // 8) * 8
    header = msgpack.packb({"v": VERSION, "arrays": table})
    start = -(-(_HEAD.size + len(header)) // 8) * 8
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            head = _HEAD.pack(MAGIC, len(header)) + header
            head += b"\0" * (start - len(head))
            hasher = new_hasher()
            for piece in [head, *(_padded(a) for a in arrays.values())]:
                f.write(piece)
                hasher.update(piece)
            f.write(hasher.digest())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _padded(a: npt.NDArray[np.generic]) -> memoryview:
    data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    pad = -data.nbytes % 8
    return data.data if not pad else memoryview(data.tobytes() + b"\0" * pad)


def open_segment(path: str) -> Segment:
    """The segment saved at ``path``, mapped; :class:`DamagedSegment` if the file is not
    one whole (its BLAKE3 is checked), FileNotFoundError if there is none."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < _HEAD.size + _CHECK:
            raise DamagedSegment(f"{path} has {size} bytes: truncated")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    if hash_bytes(view[: size - _CHECK]) != bytes(view[size - _CHECK :]).hex():
        raise DamagedSegment(f"{path} does not match its own BLAKE3: damaged or truncated")
    magic, hlen = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise DamagedSegment(f"{path} is not a chunk index cache file")
    try:
        header = msgpack.unpackb(view[_HEAD.size : _HEAD.size + hlen])
        if header["v"] != VERSION:
            raise DamagedSegment(f"{path} is of cache format {header['v']!r}")
        start = -(-(_HEAD.size + hlen) // 8) * 8
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for name, (dtype, count, offset) in header["arrays"].items():
            width = _SHAPES.get(name, 1)
            a = np.frombuffer(mm, dtype=np.dtype(dtype), count=count * width, offset=start + offset)
            arrays[name] = a.reshape(count, width) if name in _SHAPES else a
        return Segment(**arrays)  # type: ignore[arg-type]
    except DamagedSegment:
        raise
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as e:
        raise DamagedSegment(f"{path}: {e}") from e


def rows_of_packs(seg: Segment) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The chunk rows of ``seg`` grouped by pack: ``(order, starts)``, the rows of pack ``p``
    being ``order[starts[p]:starts[p + 1]]``."""
    order = np.argsort(seg.pack, kind="stable").astype(np.int64)
    starts = np.searchsorted(seg.pack[order], np.arange(seg.packs + 1, dtype=np.uint32)).astype(np.int64)
    return order, starts


def digests_of(seg: Segment, rows: npt.NDArray[np.int64] | None = None) -> Iterator[str]:
    """The hex digests of the chunk rows ``rows`` of ``seg`` (all if None)."""
    key = seg.key if rows is None else seg.key[rows]
    rest = seg.rest if rows is None else seg.rest[rows]
    head = key.astype(">u8").view(np.uint8).reshape(-1, 8)
    raw = np.concatenate([head, rest], axis=1).tobytes()
    for i in range(0, len(raw), 32):
        yield raw[i : i + 32].hex()
