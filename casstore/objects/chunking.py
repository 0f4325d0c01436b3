"""Content-defined chunking (FastCDC, compiled) with the store's parameters.

Pure: the chunker cuts buffers and streams; it does no storage I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING, Any

from casstore.exceptions import StoreConfigError

if TYPE_CHECKING:
    from pyfastcdc.cy import FastCDC

__all__ = ["ChunkerParams", "DEFAULT_CHUNKER", "Chunker"]

_MIN_BOUNDS = (64, 1 << 20)
_AVG_BOUNDS = (256, 4 << 20)
_MAX_BOUNDS = (1024, 16 << 20)


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC parameters; part of a store's identity (``casstore.json``)."""

    algorithm: str = "fastcdc"
    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024
    normalization: int = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "casstore.json") -> ChunkerParams:
        if not isinstance(d, dict):
            raise StoreConfigError(f"{where}: 'chunker' must be an object, got {d!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise StoreConfigError(
                f"{where}: unknown chunker settings {sorted(unknown)}; this store was written by a newer "
                "casstore. Upgrade casstore to open it."
            )
        try:
            p = cls(**d)
        except TypeError as e:
            raise StoreConfigError(f"{where}: bad chunker settings {d!r}: {e}") from e
        p.validate(where)
        return p

    def validate(self, where: str = "chunker") -> None:
        if self.algorithm != "fastcdc":
            raise StoreConfigError(
                f"{where}: chunking algorithm {self.algorithm!r} is not supported by this casstore "
                "(supported: 'fastcdc'). Upgrade casstore to open this store."
            )
        for name, v, (lo, hi) in (
            ("min_size", self.min_size, _MIN_BOUNDS),
            ("avg_size", self.avg_size, _AVG_BOUNDS),
            ("max_size", self.max_size, _MAX_BOUNDS),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise StoreConfigError(f"{where}: chunker {name}={v!r} is outside [{lo}, {hi}]")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise StoreConfigError(f"{where}: chunker sizes must satisfy min <= avg <= max, got {self}")
        if self.avg_size & (self.avg_size - 1):
            raise StoreConfigError(f"{where}: chunker avg_size must be a power of two, got {self.avg_size}")
        if isinstance(self.normalization, bool) or self.normalization not in (0, 1, 2, 3):
            raise StoreConfigError(f"{where}: chunker normalization must be 0..3, got {self.normalization!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise StoreConfigError(f"{where}: chunker seed must be a non-negative integer, got {self.seed!r}")


DEFAULT_CHUNKER = ChunkerParams()


class Chunker:
    """Cuts bytes into content-defined chunks.

    >>> c = Chunker(ChunkerParams(min_size=64, avg_size=256, max_size=1024))
    >>> sum(len(ch) for ch in c.cut_buffer(bytes(5000)))
    5000
    """

    def __init__(self, params: ChunkerParams = DEFAULT_CHUNKER) -> None:
        params.validate()
        self.params = params

    @functools.cached_property
    def _cdc(self) -> FastCDC:
        """The FastCDC cutter, made at the first cut (a store opened only to read never cuts)."""
        try:
            from pyfastcdc.cy import FastCDC
        except ImportError as e:  # pragma: no cover - depends on the wheel
            raise StoreConfigError(
                "the compiled FastCDC extension (pyfastcdc.cy) is missing; reinstall pyfastcdc "
                "with `pip install --force-reinstall pyfastcdc`"
            ) from e
        p = self.params
        return FastCDC(p.avg_size, min_size=p.min_size, max_size=p.max_size, normalized_chunking=p.normalization,
                       seed=p.seed)

    def cut_buffer(self, buf: bytes | bytearray | memoryview) -> Iterator[memoryview]:
        """Yield chunks of an in-memory buffer as memoryviews into it."""
        for ch in self._cdc.cut_buf(buf):
            yield ch.data

    def cut_block(self, block: memoryview, final: bool) -> tuple[list[memoryview], int]:
        """Cut the chunks of one block of a longer stream that what follows cannot change.

        Return them and the number of bytes they cover; the rest of ``block`` (less than
        ``max_size`` bytes) must come again at the start of the next block. With ``final``
        (nothing follows) the whole block is cut. A cut point is decided by the bytes
        between the chunk's start and the cut alone (a hash match, or ``max_size``), so
        every chunk that starts at least ``max_size`` bytes before the block's end is a
        chunk of :meth:`cut_buffer` over the whole stream; cutting stops before the first
        chunk that starts later, so no byte is looked at twice.

        >>> c = Chunker(ChunkerParams(min_size=64, avg_size=256, max_size=1024))
        >>> data = bytes(range(256)) * 20
        >>> chunks, used = c.cut_block(memoryview(data)[:3000], final=False)
        >>> used == sum(len(ch) for ch in chunks) and 0 < 3000 - used <= 1024
        True
        """
        chunks: list[memoryview] = []
        used = 0
        cuts = self._cdc.cut_buf(block)
        while final or len(block) - used >= self.params.max_size:
            ch = next(cuts, None)
            if ch is None:
                break
            chunks.append(ch.data)
            used += len(ch.data)
        return chunks, used

    def cut_stream(self, stream: IO[bytes]) -> Iterator[memoryview]:
        """Yield chunks of a binary stream. Each memoryview is valid only until the next
        one is requested; memory stays at about two maximum-size chunks."""
        for ch in self._cdc.cut_stream(stream):
            yield ch.data
