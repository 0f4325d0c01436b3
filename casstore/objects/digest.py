"""BLAKE3 digests: the names of everything stored."""

from __future__ import annotations

import re

from blake3 import blake3

from casstore.exceptions import InvalidDigestError

__all__ = ["DIGEST_HEX_LEN", "hash_bytes", "new_hasher", "check_digest", "is_digest"]

DIGEST_HEX_LEN = 64
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# blake3 spreads a buffer over threads only when that pays (its own heuristics)
_THREADS_MIN = 1 << 20


def hash_bytes(data: bytes | bytearray | memoryview, *, parallel: bool = True) -> str:
    """The 64-hex BLAKE3 digest of ``data`` (what ``b3sum`` prints).

    ``parallel=False`` keeps to the calling thread, for callers that already keep every
    core busy (the GIL is released either way)."""
    if parallel and len(data) >= _THREADS_MIN:
        return blake3(data, max_threads=blake3.AUTO).hexdigest()
    return blake3(data).hexdigest()


def new_hasher(*, parallel: bool = True) -> blake3:
    """An incremental BLAKE3 hasher that may use several threads on large updates."""
    return blake3(max_threads=blake3.AUTO) if parallel else blake3()


def hash_file(path: str) -> tuple[str, int]:
    """The BLAKE3 digest and the size of the local file ``path``, read in blocks
    (:class:`OSError` as reading raises it)."""
    h = new_hasher()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return str(h.hexdigest()), size


def is_digest(s: object) -> bool:
    """Whether ``s`` is a 64-character lowercase hex string."""
    return isinstance(s, str) and bool(_DIGEST_RE.match(s))


def check_digest(s: object, what: str = "digest") -> str:
    """Return ``s`` if it is a valid digest, else raise :class:`InvalidDigestError`."""
    if isinstance(s, str) and _DIGEST_RE.match(s.strip().lower()):
        return s.strip().lower()
    raise InvalidDigestError(
        f"{what} {s!r} is not a BLAKE3 digest: expected 64 hex characters, as printed by `b3sum`"
    )

