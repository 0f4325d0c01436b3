"""Hypothesis strategies for casstore's tests and for backends that join the conformance suite.

Keys are drawn from a small alphabet so that generated operations collide often
(the interesting cases: the same key twice, one name a prefix of another).
Directory parts and leaf names never coincide (leaves end in ``.k``): a file
system cannot hold both ``a/b`` and ``a/b/c``, and casstore never asks it to.
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("casstore.testing needs hypothesis: pip install 'casstore[test]'") from e

from casstore.objects.chunking import ChunkerParams

__all__ = [
    "segments",
    "leaf_names",
    "keys",
    "prefixes_of",
    "invalid_keys",
    "blobs",
    "file_contents",
    "digests",
    "malformed_digests",
    "small_chunker_params",
    "SMALL_CHUNKER",
]

#: A chunker with tiny chunks, so that a few kilobytes make many chunks.
SMALL_CHUNKER = ChunkerParams(min_size=64, avg_size=256, max_size=1024)

_DIR_ALPHABET = "abc"
_LEAF_ALPHABET = "abc0_-=@+"


def segments() -> st.SearchStrategy[str]:
    """A directory part: 1 to 3 letters from a tiny alphabet (``a``, ``ab``, ``cab`` ...)."""
    return st.text(_DIR_ALPHABET, min_size=1, max_size=3)


def leaf_names() -> st.SearchStrategy[str]:
    """A leaf name: a short plain name ending in ``.k``."""
    return st.text(_LEAF_ALPHABET, min_size=1, max_size=3).map(lambda s: s + ".k")


def keys(max_depth: int = 3) -> st.SearchStrategy[str]:
    """A valid object key: up to ``max_depth`` directory parts, then a leaf name."""
    return st.builds(
        lambda dirs, leaf: "/".join([*dirs, leaf]),
        st.lists(segments(), max_size=max_depth),
        leaf_names(),
    )


def prefixes_of(key: str) -> st.SearchStrategy[str]:
    """Every prefix of ``key`` that ``Backend.list`` accepts (``""``, ``"ab/"``, ``"ab/c"`` ...)."""
    return st.sampled_from([key[:i] for i in range(len(key) + 1)])


_BAD_KEYS = [
    "",
    ".",
    "..",
    "../x",
    "a/../../x",
    "a/..",
    "/etc/passwd",
    "/abs",
    "a//b",
    "a/",
    "/",
    "a/./b",
    ".tmp-1234",
    "a/.hidden",
    "a\\..\\b",
    "a b",
    "a\x00b",
    "caf\u00e9",
    "a\nb",
    "~/x",
    "a/*",
]


def invalid_keys() -> st.SearchStrategy[str]:
    """Keys every backend must refuse with ``InvalidInputError``: traversal, absolute,
    empty parts, hidden names, odd characters."""
    generated = st.builds(
        lambda good, bad, left: f"{bad}/{good}" if left else f"{good}/{bad}",
        keys(max_depth=1),
        st.sampled_from(["..", ".", "", ".x", "a b", "\u00e9", "a:b"]),
        st.booleans(),
    )
    return st.one_of(st.sampled_from(_BAD_KEYS), generated)


def blobs(max_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Object contents, empty included."""
    return st.binary(max_size=max_size)


def file_contents(max_size: int = 16 * 1024) -> st.SearchStrategy[bytes]:
    """File contents with structure: random bytes, long runs of one byte, repeated
    blocks (which chunk to identical chunks), and the empty file."""
    repeated = st.builds(lambda block, n: block * n, st.binary(min_size=1, max_size=700), st.integers(1, 20))
    runs = st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, max_size))
    mixed = st.lists(st.one_of(st.binary(max_size=max_size // 4), repeated, runs), max_size=4).map(b"".join)
    return st.one_of(st.binary(max_size=max_size), mixed).map(lambda b: b[: 4 * max_size])


def digests() -> st.SearchStrategy[str]:
    """Well-formed digests (64 lowercase hex), almost surely of nothing stored."""
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def malformed_digests() -> st.SearchStrategy[object]:
    """Values that are not digests: wrong length, non-hex, paths, other types."""
    return st.one_of(
        st.text(max_size=70).filter(lambda s: len(s.strip()) != 64),
        st.binary(min_size=32, max_size=32).map(lambda b: b.hex()[:63] + "g"),
        st.sampled_from(["../" + "0" * 61, "0" * 63, "0" * 65, "files/00/00/" + "0" * 64]),
        st.integers(),
        st.none(),
    )


def small_chunker_params() -> st.SearchStrategy[ChunkerParams]:
    """Valid chunker settings with small chunks (min 64 B to avg 4 KiB)."""
    return st.builds(
        lambda avg_exp, min_div, max_mul, norm, seed: ChunkerParams(
            min_size=max(64, (1 << avg_exp) // min_div),
            avg_size=1 << avg_exp,
            max_size=max(1024, (1 << avg_exp) * max_mul),
            normalization=norm,
            seed=seed,
        ),
        st.integers(8, 12),
        st.sampled_from([1, 2, 4]),
        st.sampled_from([1, 2, 4, 8]),
        st.integers(0, 3),
        st.integers(0, 1000),
    )
