"""Where content objects live: the one place that knows a store version's key layout.

Content objects (chunks, file recipes, model entries) are named by their BLAKE3 digest
and spread over fan-out directories. The layout depends on the store's format version
(``casstore.json``):

- version 1: ``<kind>/<d[0:2]>/<d[2:4]>/<d>``, and every file has a recipe;
- version 2: ``<kind>/<d[0:2]>/<d>`` (256 directories per kind), and a file that is
  exactly one chunk has no recipe: its digest is its chunk's digest, so the chunk
  object *is* the file;
- version 3: the content layout of version 2; in addition a run's artifact of at most
  :data:`INLINE_MAX` bytes may be held in its own binding record (kind ``inline``, see
  :mod:`casstore.runs.layout`) rather than as a content object: one object per small
  artifact instead of two.

Readers of either version accept a file with no recipe whose chunk of the same digest
is stored (see :meth:`casstore.objects.ObjectStore.recipe`).

>>> ContentLayout(2).chunk_key("ab" * 32)[:12]
'chunks/ab/ab'
>>> ContentLayout(1).parse("files/ab/ab/" + "ab" * 32) == ("files", "ab" * 32)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casstore.objects.digest import is_digest

if TYPE_CHECKING:
    from casstore.backend.base import Backend

__all__ = ["CANDIDATES_PREFIX", "CONTENT_KINDS", "HINTS", "INLINE_MAX", "PACKS", "ContentLayout"]

#: object kinds named by their own digest, referrers first (the order gc sweeps them)
CONTENT_KINDS = ("models", "files", "chunks")
#: the kind of pack objects, in a store of the packs layout (see :mod:`casstore.objects.packs`)
PACKS = "packs"
#: where garbage collection writes its candidates records (the packs and objects it has marked)
CANDIDATES_PREFIX = "gc/candidates/"
#: in a version-3 store, artifacts up to this size are held in their binding record
INLINE_MAX = 16 << 10
#: the prefix of similarity hints: ``hints/<first chunk>/<size>-<file>``, an empty object
#: saying that the stored file ``<file>`` of ``<size>`` bytes begins with that chunk
HINTS = "hints"


@dataclass(frozen=True)
class ContentLayout:
    """The content key layout of a store of format ``version`` (1 to 4; 4 keeps 3's content
    layout); ``packed`` when its chunks live in packs (``"layout": "packs"`` in its config)
    rather than one object each."""

    version: int
    packed: bool = False

    @property
    def levels(self) -> int:
        """Fan-out directory levels between a kind and its objects: 2 in version 1, else 1."""
        return 2 if self.version < 2 else 1

    @property
    def recipe_for_one_chunk(self) -> bool:
        """Whether a file of exactly one chunk gets a recipe too (version 1, so that older
        casstore can read it), or is stored as its chunk alone (version 2)."""
        return self.version < 2

    @property
    def inline_max(self) -> int:
        """The largest artifact held in its binding record rather than as content objects:
        :data:`INLINE_MAX` from version 3 on, 0 (none) before."""
        return INLINE_MAX if self.version >= 3 else 0

    def key(self, kind: str, digest: str) -> str:
        """The key of content object ``digest`` of ``kind`` (``chunks``, ``files`` or ``models``)."""
        if self.levels == 1:
            return f"{kind}/{digest[0:2]}/{digest}"
        return f"{kind}/{digest[0:2]}/{digest[2:4]}/{digest}"

    def pack_key(self, digest: str) -> str:
        """The key of the pack ``digest`` (a store of the packs layout)."""
        return self.key(PACKS, digest)

    def chunk_key(self, digest: str) -> str:
        return self.key("chunks", digest)

    def recipe_key(self, digest: str) -> str:
        return self.key("files", digest)

    def model_key(self, digest: str) -> str:
        return self.key("models", digest)

    def hint_prefix(self, first: str) -> str:
        """Where the hints of the stored files that begin with chunk ``first`` are listed."""
        return f"{HINTS}/{first}/"

    def hint_key(self, first: str, size: int, digest: str) -> str:
        """The hint that the stored file ``digest`` of ``size`` bytes begins with chunk ``first``."""
        return f"{HINTS}/{first}/{size}-{digest}"

    @staticmethod
    def parse_hint(key: str) -> tuple[str, int, str] | None:
        """``(first chunk, size, file)`` of a listed hint key, else None."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != HINTS:
            return None
        size, _, digest = parts[2].partition("-")
        if not (is_digest(parts[1]) and is_digest(digest) and size.isascii() and size.isdigit()):
            return None
        return parts[1], int(size), digest

    def parse(self, key: str) -> tuple[str, str] | None:
        """``(kind, digest)`` of a listed key in this layout's fan-out, else ``None`` (another
        prefix, a foreign name, or an object at the other version's depth)."""
        parts = key.split("/")
        if len(parts) != self.levels + 2 or (parts[0] not in CONTENT_KINDS and not (self.packed and parts[0] == PACKS)):
            return None
        digest = parts[-1]
        if not is_digest(digest) or any(p != digest[2 * i : 2 * i + 2] for i, p in enumerate(parts[1:-1])):
            return None
        return parts[0], digest

    def stored(self, backend: Backend, kind: str) -> Iterator[str]:
        """The digests of the objects of ``kind`` stored in this layout (other keys under
        the kind's prefix are skipped)."""
        for key in backend.list(kind + "/"):
            parsed = self.parse(key)
            if parsed is not None:
                yield parsed[1]
