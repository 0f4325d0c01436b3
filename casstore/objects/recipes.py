"""File recipes: the ordered list of chunks a file is made of.

A recipe is stored under ``files/ab/<file digest>`` (``files/ab/cd/...`` in a version-1
store) as the canonical msgpack of
``{"v": 1, "size": <bytes>, "chunks": [[<chunk digest>, <length>], ...]}``. In a
version-2 store a file that is exactly one chunk has no recipe: its chunk is the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from casstore.exceptions import CorruptRecordError
from casstore.objects.codec import pack, unpack
from casstore.objects.digest import is_digest

__all__ = ["Recipe", "RECIPE_VERSION"]

RECIPE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    size: int
    chunks: tuple[tuple[str, int], ...]

    def encode(self) -> bytes:
        return pack({"v": RECIPE_VERSION, "size": self.size, "chunks": [list(c) for c in self.chunks]})

    @classmethod
    def decode(cls, data: bytes, where: str) -> Recipe:
        d: Any = unpack(data, where)
        try:
            if isinstance(d["v"], bool) or not isinstance(d["v"], int) or d["v"] < 1:
                raise CorruptRecordError(f"{where}: recipe version {d['v']!r} is not valid")
            if d["v"] > RECIPE_VERSION:
                raise CorruptRecordError(f"{where}: recipe version {d['v']} is newer than this casstore reads; upgrade casstore")
            size = d["size"]
            chunks = tuple((str(c[0]), int(c[1])) for c in d["chunks"])
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise CorruptRecordError(f"{where} is not a valid file recipe ({e!r})") from e
        if not isinstance(size, int) or size < 0 or sum(n for _, n in chunks) != size:
            raise CorruptRecordError(f"{where}: chunk lengths do not add up to the file size {size!r}")
        if not all(is_digest(c) and n > 0 for c, n in chunks):
            raise CorruptRecordError(f"{where}: a chunk entry is malformed")
        return cls(size=size, chunks=chunks)
