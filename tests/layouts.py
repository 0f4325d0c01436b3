"""Where a chunk's bytes are, in either content layout, for tests that damage a store.

In a loose store a chunk is an object of its own; in a store of the packs layout it is a
byte range of a pack. :class:`ChunkSite` names the object and the range, and replaces the
chunk's bytes there (and only there: the rest of a pack stays as it is, shifted if the
chunk's length changes), so a test damages "this chunk" the same way in both layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from casstore.objects import ObjectStore

#: the content layouts every layout-aware suite runs on
LAYOUTS = ("loose", "packs")


@dataclass(frozen=True)
class ChunkSite:
    """The chunk ``digest``: bytes ``[start, end)`` of the object ``key`` under ``root``."""

    root: Path
    key: str
    start: int
    end: int
    digest: str

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.key.split("/"))

    @property
    def packed(self) -> bool:
        return self.key.startswith("packs/")

    def read(self) -> bytes:
        """The chunk's bytes as stored."""
        return self.path.read_bytes()[self.start : self.end]

    def write(self, data: bytes) -> None:
        """Store ``data`` in the chunk's place (the object's other bytes kept around it)."""
        whole = self.path.read_bytes()
        self.path.write_bytes(whole[: self.start] + data + whole[self.end :])


def chunk_site(objects: ObjectStore, root: Path, digest: str) -> ChunkSite:
    """Where the chunk ``digest`` of the local store ``objects`` at ``root`` is stored."""
    loc = objects.packs.get(digest) if objects.packs is not None else None
    if loc is None:
        key = objects.layout.chunk_key(digest)
        return ChunkSite(root, key, 0, root.joinpath(*key.split("/")).stat().st_size, digest)
    return ChunkSite(root, objects.layout.pack_key(loc.pack), loc.offset, loc.offset + loc.length, digest)
