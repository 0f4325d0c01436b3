"""The merged chunk index of a packs store, held as sorted arrays and cached in local files.

Lookups answer exactly what a plain dict merged from the same index objects answers
(digests that share their first 8 bytes included); the cache files are checked when
opened, and a damaged or truncated one is named, set aside and rebuilt from the store;
index objects published later are merged into the small segment without rewriting the
large one, and an index object removed from the store (gc replaced it) stops answering.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casstore.objects import ObjectStore, open_store
from casstore.objects.chunkindex import DamagedSegment, build_segment, merge_segments, open_segment, save_segment
from casstore.objects.digest import hash_bytes
from casstore.objects.packs import INDEX_PREFIX, Location, PackIndex, encode_index
from casstore.objects.statcache import cache_dir

Packs = list[tuple[str, int, list[tuple[str, int, int]]]]


def _digest(rng: random.Random, head: bytes | None = None) -> str:
    raw = rng.randbytes(32)
    return (head + raw[len(head):]).hex() if head else raw.hex()


def _packs(rng: random.Random, n_packs: int, per_pack: int, heads: list[bytes], reuse: list[str]) -> Packs:
    """Synthetic packs; some chunk digests share their first 8 bytes (``heads``), some are
    chunks of other packs again (``reuse``)."""
    out: Packs = []
    for _ in range(n_packs):
        entries = []
        for i in range(per_pack):
            pick = rng.random()
            if reuse and pick < 0.1:
                d = rng.choice(reuse)
            elif heads and pick < 0.4:
                d = _digest(rng, rng.choice(heads))
            else:
                d = _digest(rng)
            entries.append((d, i * 100, 100))
        out.append((_digest(rng), per_pack * 100 + 50, entries))
    return out


def _publish(store: ObjectStore, packs: Packs) -> str:
    data = encode_index(packs)
    digest = hash_bytes(data)
    store.backend.put_blob(INDEX_PREFIX + digest, data)
    return digest


def _model(indexes: list[Packs]) -> dict[str, set[Location]]:
    """The simple index: every location of every chunk."""
    out: dict[str, set[Location]] = {}
    for packs in indexes:
        for p, _, es in packs:
            for d, off, n in es:
                out.setdefault(d, set()).add(Location(p, off, n))
    return out


def _check(index: PackIndex, model: dict[str, set[Location]], rng: random.Random, absent: int = 50) -> None:
    for d, locs in model.items():
        assert index.get(d) in locs
    for _ in range(absent):
        d = _digest(rng, bytes.fromhex(rng.choice(sorted(model)))[:8] if model and rng.random() < 0.5 else None)
        if d not in model:
            assert index.get(d) is None


@pytest.fixture
def packed(tmp_path: Path) -> ObjectStore:
    return open_store(tmp_path / "store", layout="packs", stat_cache=False)


def _cache_files(store: ObjectStore) -> dict[str, Path]:
    root = Path(cache_dir()) / "pack-index" / hash_bytes(store.backend.url.encode())[:32]
    return {name: root / name for name in ("segment-base", "segment-delta")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), batches=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 40)), min_size=1, max_size=4),
       n_heads=st.integers(0, 4))
def test_lookups_answer_what_a_plain_merged_dict_answers(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                         batches: list[tuple[int, int]], n_heads: int) -> None:
    rng = random.Random(seed)
    store = open_store(tmp_path_factory.mktemp("s") / "store", layout="packs", stat_cache=False)
    heads = [rng.randbytes(8) for _ in range(n_heads)]
    indexes: list[Packs] = []
    for n_packs, per_pack in batches:  # published in turns, each turn read by a new process's index
        reuse = sorted(_model(indexes))[:50]
        indexes.append(_packs(rng, n_packs, per_pack, heads, reuse))
        _publish(store, indexes[-1])
        index = PackIndex(store.backend, store.layout)
        index.load()
        _check(index, _model(indexes), rng)
        assert set(index.chunks()) == set(_model(indexes))
        assert index.packs == {p: n for packs in indexes for p, n, _ in packs}
        for packs in indexes:
            for p, _, es in packs:
                assert sorted(index.entries(p)) == sorted(es)


def test_a_segment_saved_and_mapped_again_answers_the_same(tmp_path: Path) -> None:
    rng = random.Random(3)
    heads = [rng.randbytes(8)]
    one, two = _packs(rng, 3, 30, heads, []), _packs(rng, 2, 20, heads, [])
    seg = merge_segments([build_segment([("a" * 64, one)]), build_segment([("b" * 64, two)])])
    save_segment(seg, str(tmp_path / "seg"))
    mapped = open_segment(str(tmp_path / "seg"))
    assert len(mapped) == len(seg) == 130
    assert mapped.indexes() == ["a" * 64, "b" * 64]
    for p, _, es in one + two:
        for d, off, n in es:
            row = mapped.find(bytes.fromhex(d))
            assert row is not None and mapped.pack_names()[mapped.pack[row]] == p
            assert (int(mapped.offset[row]), int(mapped.length[row])) == (off, n)
    kept = merge_segments([mapped], keep={"b" * 64})  # an index dropped: its packs and chunks go
    assert kept.indexes() == ["b" * 64] and len(kept) == 40 and kept.pack_names() == [p for p, _, _ in two]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_cache_file_is_named_and_rebuilt_from_the_store(
    packed: ObjectStore, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(4)
    indexes = [_packs(rng, 4, 30, [], [])]
    _publish(packed, indexes[0])
    PackIndex(packed.backend, packed.layout).load()
    path = _cache_files(packed)["segment-base"]
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedSegment):
        open_segment(str(path))
    with caplog.at_level(logging.WARNING, logger="casstore.objects.packs"):
        index = PackIndex(packed.backend, packed.layout)
        index.load()
    assert "damaged" in caplog.text and str(path) in caplog.text
    _check(index, _model(indexes), rng)
    assert len(open_segment(str(path))) == 120  # rebuilt whole


def test_new_index_objects_are_merged_into_the_small_segment(packed: ObjectStore) -> None:
    rng = random.Random(5)
    indexes = [_packs(rng, 16, 40, [], [])]
    _publish(packed, indexes[0])
    PackIndex(packed.backend, packed.layout).load()
    files = _cache_files(packed)
    base_before = files["segment-base"].stat().st_mtime_ns, files["segment-base"].read_bytes()
    indexes.append(_packs(rng, 1, 10, [], []))
    _publish(packed, indexes[1])
    index = PackIndex(packed.backend, packed.layout)
    index.load()
    _check(index, _model(indexes), rng)
    assert (files["segment-base"].stat().st_mtime_ns, files["segment-base"].read_bytes()) == base_before
    assert len(open_segment(str(files["segment-delta"]))) == 10
    # an index object removed from the store (gc replaced it) no longer answers
    gone = indexes.pop(0)
    for key in packed.backend.list(INDEX_PREFIX):
        if key != INDEX_PREFIX + hash_bytes(encode_index(indexes[0])):
            packed.backend.delete(key)
    index = PackIndex(packed.backend, packed.layout)
    index.load_indexes()
    _check(index, _model(indexes), rng)
    assert all(index.get(d) is None for _, _, es in gone for d, _, _ in es)
    assert len(open_segment(str(files["segment-base"]))) == 10  # rewritten without it


def test_a_writers_own_index_is_found_before_and_after_it_is_merged(packed: ObjectStore, tmp_path: Path) -> None:
    data = random.Random(6).randbytes(3 << 20)
    stored = packed.put_bytes(data)
    packed.flush()
    assert packed.get_bytes(stored.digest) == data
    reader = open_store(tmp_path / "store", stat_cache=False)
    assert reader.get_bytes(stored.digest) == data
    assert os.path.exists(_cache_files(packed)["segment-delta"]) or os.path.exists(_cache_files(packed)["segment-base"])
    again = open_store(tmp_path / "store", stat_cache=False)
    again.put_bytes(data)
    again.flush()
    assert again.bytes_written == 0
