"""Stores of the packs layout: chunks in packs, an index beside them, every read verified.

A pack's bytes, its header and its index are checked against what the format says; a
flipped byte inside a pack or an index, and a truncated pack, are found and named and
nothing wrong is served; a writer killed (SIGKILL, a real process) while packing loses
nothing a record references, and storing the same files again sends only what is
missing; the same runs on S3 (moto and SeaweedFS) with their request counts.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from casstore.exceptions import CorruptRecordError, IntegrityError, ObjectNotFoundError, StoreConfigError
from casstore.objects import ObjectStore, open_store
from casstore.objects.passes import StoringPasses
from casstore.objects.codec import unpack_checked
from casstore.objects.config import StoreConfig
from casstore.objects.packs import INDEX_PREFIX, MAGIC, PACK_CHUNKER, PACK_TARGET, SPAN_MAX, coalesce, decode_index, parse_pack_tail, read_pack_header
from casstore.runs import RunStore


def _bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def packed(tmp_path: Path) -> ObjectStore:
    return open_store(tmp_path / "store", layout="packs", stat_cache=False)


def _keys(store: ObjectStore, prefix: str) -> list[str]:
    return sorted(store.backend.list(prefix))


def _raw_path(store: ObjectStore, key: str) -> Path:
    return Path(store.backend.root) / key  # type: ignore[attr-defined]


def test_a_packed_store_keeps_chunks_in_packs_named_by_their_bytes(packed: ObjectStore, tmp_path: Path) -> None:
    big, small = _bytes(5 << 20, 1), _bytes(40_000, 2)
    a, b = packed.put_bytes(big), packed.put_bytes(small)
    packed.flush()
    assert _keys(packed, "chunks/") == []  # no loose chunk
    packs = _keys(packed, "packs/")
    # two packs: the big file's, published before its recipe, and the small one's at the barrier
    assert len(packs) == 2
    entries = []
    for key in packs:
        data = _raw_path(packed, key).read_bytes()
        assert blake3(data).hexdigest() == key.rsplit("/", 1)[1]
        assert data.endswith(MAGIC)
        got = parse_pack_tail(data, len(data), key)
        assert not isinstance(got, int)
        for d, off, n in got:
            assert blake3(data[off : off + n]).hexdigest() == d
        entries += got
    assert b.digest in {d for d, _, _ in entries}
    assert sum(n for _, _, n in entries) == len(big) + len(small)
    # indexes are named by their BLAKE3 and self-checking; together they list every chunk
    listed = {}
    for key in _keys(packed, INDEX_PREFIX):
        raw = _raw_path(packed, key).read_bytes()
        assert blake3(raw).hexdigest() == key[len(INDEX_PREFIX) :]
        unpack_checked(raw, key, required=True)
        for p, size, es in decode_index(raw, key):
            assert size == (_raw_path(packed, f"packs/{p[:2]}/{p}")).stat().st_size
            listed.update({d: (p, off, n) for d, off, n in es})
    assert set(listed) == {d for d, _, _ in entries}
    # a new process (another ObjectStore) reads both, verified
    again = open_store(tmp_path / "store", stat_cache=False)
    assert again.get_bytes(a.digest) == big and again.get_bytes(b.digest) == small
    assert again.config.chunker == PACK_CHUNKER


def test_the_config_names_the_layout_and_older_casstore_refuses_it(packed: ObjectStore, tmp_path: Path) -> None:
    raw = _raw_path(packed, "casstore.json").read_bytes()
    assert b'"layout": "packs"' in raw
    # casstore before the packs layout knew exactly these settings and refused any other
    older_keys = {"format", "version", "hash", "chunker", "created"}
    import json

    assert set(json.loads(raw)) - older_keys == {"layout", "b3"}  # b3: the config's own check
    unknown = {k: v for k, v in json.loads(raw).items() if k != "b3"} | {"layout": "zip"}
    with pytest.raises(StoreConfigError, match="layout 'zip'"):
        StoreConfig.from_json(json.dumps(unknown).encode(), "casstore.json")
    # a loose store stays loose, and a packed one packed: a mismatch is refused, never mixed
    loose = open_store(tmp_path / "loose", stat_cache=False, layout="loose")
    assert b"layout" not in _raw_path(loose, "casstore.json").read_bytes()
    with pytest.raises(StoreConfigError, match="pack-store"):
        open_store(tmp_path / "loose", layout="packs")
    with pytest.raises(StoreConfigError, match="packed store stays packed"):
        open_store(tmp_path / "store", layout="loose")


def test_a_new_version_of_a_file_writes_only_its_new_chunks(packed: ObjectStore) -> None:
    v1 = bytearray(_bytes(24 << 20, 3))
    packed.put_bytes(v1)
    packed.flush()
    before = packed.bytes_written
    v1[10 << 20 : 11 << 20] = _bytes(1 << 20, 4)
    d2 = packed.put_bytes(v1)
    packed.flush()
    assert (packed.bytes_written - before) < 3 << 20  # 1 MiB changed, plus the chunks it touches
    assert packed.get_bytes(d2.digest) == bytes(v1)


def test_a_writer_touches_only_the_reused_packs_gc_has_marked_and_rewrites_the_chunks_of_one_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new version reuses chunks of many packs. It freshens none that gc has not marked
    (no request per pack), touches each marked one once, and writes anew the chunks of a
    marked pack that is gone (gc stopped after deleting it, its record and index left)."""
    from casstore.maintenance.gc import collect_garbage

    target = 1 << 20
    kept_data, dead_data = _bytes(4 * target, 21), _bytes(4 * target, 23)
    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    store.objects._packs.target = target  # type: ignore[union-attr]  # several packs per file
    run = store.create_run(store.get_or_create_experiment("marks"))
    run.log_bytes("kept.bin", kept_data)
    run.end()
    live_packs = _keys(store.objects, "packs/")
    store.objects.put_bytes(dead_data)  # stored, referenced by nothing: garbage
    store.objects.flush()
    dead_packs = sorted(set(_keys(store.objects, "packs/")) - set(live_packs))
    assert len(live_packs) >= 3 and len(dead_packs) >= 3
    for _ in range(2):  # the garbage recipe goes first (its chunks count as live while it is stored)
        time.sleep(0.01)
        collect_garbage(store.backend, grace=0, slack=0)
    report = collect_garbage(store.backend, grace=3600)
    assert report.marked.get("packs") == len(dead_packs)
    gone = dead_packs[1]
    _raw_path(store.objects, gone).unlink()  # as a gc stopped after its sweep leaves it

    writer = open_store(tmp_path / "store", stat_cache=False)
    touched: list[str] = []
    real_touch = writer.backend.touch

    def touch(key: str) -> bool:
        touched.append(key)
        return real_touch(key)

    monkeypatch.setattr(writer.backend, "touch", touch)
    both = bytearray(kept_data + dead_data)
    both[100:200] = _bytes(100, 22)
    stored = writer.put_bytes(both)
    writer.flush()
    assert sorted(k for k in touched if k.startswith("packs/")) == dead_packs  # each marked pack once
    assert writer.bytes_written < 3 * target  # the changed chunks and the gone pack's (a pack is target + a chunk)
    reader = open_store(tmp_path / "store", stat_cache=False)
    assert reader.get_bytes(stored.digest) == bytes(both)
    assert gone not in _keys(reader, "packs/")


def test_the_packs_a_writer_uploads_are_what_the_format_encodes_from_their_chunks(packed: ObjectStore) -> None:
    """The writer copies each chunk once into the open pack and sends those bytes: every pack
    of a put, those sealed while the file is cut and the last one at publish, is byte for
    byte ``encode_pack`` of its chunks, in order."""
    from casstore.objects.packs import encode_pack

    assert packed._packs is not None
    packed._packs.target = 1 << 20
    data = _bytes(5 << 20, 31)
    stored = packed.put_bytes(data)
    packed.flush()
    keys = _keys(packed, "packs/")
    assert len(keys) >= 4
    chunks: dict[str, bytes] = {}
    for key in keys:
        raw = _raw_path(packed, key).read_bytes()
        entries = parse_pack_tail(raw, len(raw), key)
        assert not isinstance(entries, int)
        again, again_entries = encode_pack([(d, raw[off : off + n]) for d, off, n in entries])
        assert again == raw and again_entries == entries
        chunks.update({d: raw[off : off + n] for d, off, n in entries})
    assert b"".join(chunks[d] for d, _ in packed.recipe(stored.digest).chunks) == data


def test_a_flipped_byte_inside_a_pack_is_found_and_named(packed: ObjectStore, tmp_path: Path) -> None:
    data = _bytes(3 << 20, 5)
    stored = packed.put_bytes(data)
    packed.flush()
    key = _keys(packed, "packs/")[0]
    path = _raw_path(packed, key)
    raw = bytearray(path.read_bytes())
    raw[1 << 20] ^= 0x01
    path.write_bytes(bytes(raw))
    reader = open_store(tmp_path / "store", stat_cache=False)
    with pytest.raises(IntegrityError, match=key) as info:
        reader.get_bytes(stored.digest)
    assert "chunk" in str(info.value)
    dest = tmp_path / "out.bin"
    with pytest.raises(IntegrityError):
        reader.get_file(stored.digest, dest)
    assert not dest.exists()  # nothing wrong served, not even a partial file
    assert os.listdir(tmp_path) == sorted(os.listdir(tmp_path))  # no temp file left either
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_a_flipped_byte_inside_an_index_is_named_and_the_packs_are_read_from_their_headers(
    packed: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _bytes(3 << 20, 6)
    stored = packed.put_bytes(data)
    packed.flush()
    (index_key,) = _keys(packed, INDEX_PREFIX)
    path = _raw_path(packed, index_key)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    path.write_bytes(bytes(raw))
    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(tmp_path / "another-machine"))  # the writer's cache is good
    with caplog.at_level(logging.WARNING, logger="casstore.objects.packs"):
        reader = open_store(tmp_path / "store", stat_cache=False)
        assert reader.get_bytes(stored.digest) == data  # from the pack's own header, verified
    assert index_key in caplog.text
    assert reader.packs is not None and index_key[len(INDEX_PREFIX) :] in reader.packs.damaged
    from casstore.maintenance.verify import verify_store

    report = verify_store(RunStore(reader))
    assert [(p.object, p.kind) for p in report.problems] == [(index_key, "corrupt")]


def test_a_damaged_index_that_still_hashes_to_its_name_cannot_serve_wrong_bytes(packed: ObjectStore, tmp_path: Path) -> None:
    """An index is never the source of truth: one that points a chunk at the wrong bytes
    (a buggy writer) leads to an integrity error, not to those bytes."""
    a = packed.put_bytes(_bytes(200_000, 7))
    b = packed.put_bytes(_bytes(200_000, 8))
    packed.flush()
    (index_key,) = _keys(packed, INDEX_PREFIX)
    packs = decode_index(_raw_path(packed, index_key).read_bytes(), index_key)
    from casstore.objects.packs import encode_index

    swapped = [(p, n, [(d, *next((o, m) for e, o, m in es if e != d)) for d, _, _ in es]) for p, n, es in packs]
    lying = encode_index(swapped)
    packed.backend.delete(index_key)
    packed.backend.put_blob(INDEX_PREFIX + blake3(lying).hexdigest(), lying)
    reader = open_store(tmp_path / "store", stat_cache=False)
    for stored in (a, b):
        with pytest.raises(IntegrityError):
            reader.get_bytes(stored.digest)


def test_a_truncated_pack_is_found_and_named(packed: ObjectStore, tmp_path: Path) -> None:
    data = _bytes(6 << 20, 9)
    stored = packed.put_bytes(data)
    packed.flush()
    key = _keys(packed, "packs/")[0]
    path = _raw_path(packed, key)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    reader = open_store(tmp_path / "store", stat_cache=False)
    with pytest.raises(IntegrityError, match=key):
        reader.get_bytes(stored.digest)
    # its header is gone with its tail: reading it says so, by name
    with pytest.raises(CorruptRecordError, match="truncated"):
        read_pack_header(reader.backend, key)


def test_a_pack_without_its_index_is_described_by_its_header(packed: ObjectStore, tmp_path: Path) -> None:
    """A writer killed between a pack and its index leaves a pack no index lists: readers
    and writers still find its chunks (the index is rebuilt from the packs)."""
    data = _bytes(2 << 20, 10)
    stored = packed.put_bytes(data)
    packed.flush()
    for key in _keys(packed, INDEX_PREFIX):
        packed.backend.delete(key)
    writer = open_store(tmp_path / "store", stat_cache=False)
    assert writer.get_bytes(stored.digest) == data
    writer.put_bytes(data)
    writer.flush()
    assert writer.bytes_written == 0


# ---- a writer killed while packing (real processes) -------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from casstore.objects import open_store
    from casstore.runs import RunStore
    store = RunStore(open_store(sys.argv[1], layout="packs", stat_cache=False))
    run = store.create_run(store.get_or_create_experiment("kill"))
    print(run.run_id, flush=True)
    for path in sys.argv[2:]:
        run.log_file(path.rsplit("/", 1)[1], path)
        print("bound", path, flush=True)
    run.end()
    print("ended", flush=True)
    """
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_writer_killed_while_packing_loses_nothing_referenced_and_resumes(tmp_path: Path, seed: int) -> None:
    _kill_and_resume(str(tmp_path / "store"), tmp_path, seed)


def test_a_writer_killed_while_packing_on_s3_loses_nothing_referenced_and_resumes(any_s3: str, tmp_path: Path) -> None:
    _kill_and_resume(any_s3, tmp_path, 4)


def _kill_and_resume(root: str, tmp_path: Path, seed: int) -> None:
    """A writer logging six files (one run) is SIGKILLed at a random moment: every file its
    run bound reads whole, and storing them all again sends exactly the chunks no published
    pack holds."""
    rng = random.Random(seed)
    files = []
    for i in range(6):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(_bytes(rng.randrange(1 << 20, 6 << 20), seed * 100 + i))
        files.append(p)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, root, *map(str, files)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    time.sleep(rng.uniform(0.05, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    store = RunStore(open_store(root, layout="packs", stat_cache=False))
    try:
        bound = store.get_run(run_id).artifacts
    except ObjectNotFoundError:
        bound = {}  # killed before the run's first record (its meta goes out with the first write)
    for path, entry in bound.items():
        assert store.artifact_bytes(run_id, entry) == (tmp_path / path).read_bytes()  # every bound file, whole
    # storing everything again sends only the chunks no published pack holds
    objects = store.objects
    assert objects.packs is not None
    objects.packs.load()
    missing = 0
    for p in files:
        data = p.read_bytes()
        for ch in objects.chunker.cut_buffer(data):
            d = blake3(ch).hexdigest()
            if objects.packs.get(d) is None:
                missing += len(ch)
    run = store.create_run(store.get_or_create_experiment("kill"))
    for p in files:
        run.log_file(p.name, p)
    run.end()
    assert objects.bytes_written == missing
    for p in files:
        entry = store.get_run(run.run_id).artifacts[p.name]
        assert store.artifact_bytes(run.run_id, entry) == p.read_bytes()


# ---- S3: moto and SeaweedFS --------------------------------------------------------------------------


@pytest.fixture(params=["moto_s3", "seaweed_s3"])
def any_s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    target = request.getfixturevalue(request.param)
    for k, v in target.env.items():
        monkeypatch.setenv(k, v)
    yield target.fresh_url("packs")


def _count_requests(store: ObjectStore) -> dict[str, int]:
    counts: dict[str, int] = {}

    def hook(request: object, **kwargs: object) -> None:
        headers = getattr(request, "headers", {})
        method = "COPY" if "x-amz-copy-source" in headers else str(getattr(request, "method", "?"))
        counts[method] = counts.get(method, 0) + 1

    fs = store.backend.fs  # type: ignore[attr-defined]
    fs.connect()
    fs.s3.meta.events.register("before-send.s3", hook)
    return counts


def test_a_new_remote_store_has_packs_and_an_explicit_choice_or_an_existing_store_wins(
    any_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casstore.objects.config import LOCAL_LAYOUT

    monkeypatch.delenv("CASSTORE_LAYOUT", raising=False)
    assert open_store(any_s3, stat_cache=False).config.content_layout == "packs"
    assert open_store(tmp_path / "local", stat_cache=False).config.content_layout == LOCAL_LAYOUT
    assert open_store(f"memory://default-{tmp_path.name}", stat_cache=False).config.content_layout == LOCAL_LAYOUT
    # asked for: the option, else CASSTORE_LAYOUT; the option wins over the variable
    loose_url, env_url = any_s3 + "-loose", any_s3 + "-env"
    loose = RunStore(open_store(loose_url, layout="loose", stat_cache=False))
    monkeypatch.setenv("CASSTORE_LAYOUT", "loose")
    assert open_store(env_url, stat_cache=False).config.content_layout == "loose"
    assert open_store(any_s3 + "-option", layout="packs", stat_cache=False).config.content_layout == "packs"
    monkeypatch.setenv("CASSTORE_LAYOUT", "packs")
    assert open_store(tmp_path / "local-env", stat_cache=False).config.content_layout == "packs"
    monkeypatch.setenv("CASSTORE_LAYOUT", "zip")
    with pytest.raises(StoreConfigError, match="'zip' is not one of loose, packs"):
        open_store(any_s3 + "-zip", stat_cache=False)
    # an existing store keeps its layout whatever the default or the variable: read and written
    monkeypatch.setenv("CASSTORE_LAYOUT", "packs")
    run = loose.create_run(loose.get_or_create_experiment("old"))
    first = run.log_bytes("a.bin", _bytes(300_000, 1))
    run.end()
    again = RunStore(open_store(loose_url, stat_cache=False))
    assert again.objects.config.content_layout == "loose"
    run = again.create_run(again.get_or_create_experiment("old"))
    second = run.log_bytes("b.bin", _bytes(300_000, 2))
    run.end()
    assert list(again.backend.list("packs/")) == [] and list(again.backend.list("chunks/"))
    assert again.objects.get_bytes(first.digest) == _bytes(300_000, 1)
    assert again.objects.get_bytes(second.digest) == _bytes(300_000, 2)


def test_s3_packed_store_logs_relogs_and_reads_in_few_requests(
    any_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    followed: list[bool] = []  # each pass that stored a new version by following the old recipe
    real_like = StoringPasses.store_like

    def store_like(self: StoringPasses, *a: Any) -> Any:
        result = real_like(self, *a)
        followed.append(result is not None)
        return result

    monkeypatch.setattr(StoringPasses, "store_like", store_like)
    src = tmp_path / "weights.bin"
    data = bytearray(_bytes(5 * PACK_TARGET // 2, 11))
    src.write_bytes(data)
    objects = open_store(any_s3, layout="packs", stat_cache=False)
    counts = _count_requests(objects)
    store = RunStore(objects)
    exp = store.get_or_create_experiment("s3")
    first = store.create_run(exp)
    asked: list[str] = []
    real_exists = objects.backend.exists
    objects.backend.exists = lambda key: asked.append(key) or real_exists(key)  # type: ignore[method-assign]
    counts.clear()
    entry = first.log_file("weights.bin", src)
    fresh = sum(counts.values())
    objects.backend.exists = real_exists  # type: ignore[method-assign]
    first.end()
    assert [k for k in asked if k.startswith("chunks/")] == []  # its writers pack every chunk
    # 3 packs, one index, one recipe, a few for the records and checks, and 3 to list the
    # binding in a batch record (a listing of the batches, the batch, its witness)
    assert len(list(objects.backend.list("packs/"))) == 3
    assert fresh <= 3 + 1 + 1 + 8 + 3, counts
    v1 = bytes(data)
    data[PACK_TARGET + (4 << 20) : PACK_TARGET + (5 << 20)] = _bytes(1 << 20, 12)
    src.write_bytes(data)
    second = store.create_run(exp)
    touched: list[str] = []
    real_touch = objects.backend.touch
    objects.backend.touch = lambda key: touched.append(key) or real_touch(key)  # type: ignore[method-assign]
    counts.clear()
    again = second.log_file("weights.bin", src)
    relog = dict(counts)
    second.end()
    # one new pack and its index, the recipe, the check of gc's marks (a listing of its
    # candidates records and one of the index objects), the freshening of the whole file's
    # recipe (a copy that finds none), records, the binding's batch listing; no pack is
    # copied onto itself to freshen it
    assert [k for k in touched if k.startswith("packs/")] == [] and relog.get("COPY", 0) <= 1, relog
    # found by the hint the first version left (one listing, one recipe read, a new hint),
    # and stored by checking the old chunks where they lie rather than cutting them
    assert followed == [True]
    assert sum(relog.values()) <= 1 + 1 + 1 + 2 + 1 + 8 + 3, relog
    reader = open_store(any_s3, stat_cache=False)
    counts = _count_requests(reader)
    dest = tmp_path / "out.bin"
    reader.get_file(again.digest, dest)
    assert dest.read_bytes() == bytes(data)
    # two listings (indexes, packs), the two index objects, the recipe, and one ranged read per
    # run of adjacent chunks of a pack (up to 16 MiB): the 1 MiB changed, in a new pack, splits one
    assert reader.packs is not None
    recipe = reader.recipe(again.digest)
    spans = coalesce([(d, n, reader.packs.get(d)) for d, n in recipe.chunks])
    assert len(spans) <= (5 * PACK_TARGET // 2) // SPAN_MAX + 4 < len(recipe.chunks) // 10
    assert counts.get("GET", 0) <= 2 + 2 + 1 + len(spans), counts  # index objects cached here are not read
    assert blake3(reader.get_bytes(entry.digest)).hexdigest() == entry.digest == blake3(v1).hexdigest()


# ---- garbage collection: live fraction, repacking, the grace protocol ---------------------------------


def _logged(tmp_path: Path, names: list[str], seed: int) -> list[Path]:
    out = []
    for i, name in enumerate(names):
        p = tmp_path / name
        p.write_bytes(_bytes(60_000, seed + i))  # one chunk each (at most the chunker's minimum)
        out.append(p)
    return out


def test_gc_repacks_a_mostly_dead_pack_and_a_writer_deduplicating_against_it_loses_nothing(tmp_path: Path) -> None:
    from casstore.maintenance.gc import collect_garbage

    a, b, c = _logged(tmp_path, ["a.bin", "b.bin", "c.bin"], 20)
    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    first = store.create_run(exp)
    entries = first.log_files([(p.name, str(p)) for p in (a, b, c)])
    first.end()
    (old_pack,) = _keys(store.objects, "packs/")  # one batch, one pack
    keeper = store.create_run(exp)
    keeper.bind_artifact("a.bin", entries[0].digest, entries[0].size)
    keeper.end()
    store.delete_run(first.run_id, "test")

    r1 = collect_garbage(store.backend, grace=0, slack=0)
    assert r1.repacked == 1 and r1.pack_live_fraction is not None and r1.pack_live_fraction < 0.5
    assert len(_keys(store.objects, "packs/")) == 2  # the old one stays until a later run
    # a writer deduplicates against b's chunk, in the pack gc has just marked: it freshens it
    writer = RunStore(open_store(tmp_path / "store", stat_cache=False))
    again = writer.create_run(writer.get_or_create_experiment("gc"))
    again.log_file("b.bin", b)
    again.end()
    assert writer.objects.bytes_written == 0  # deduplicated, not written again

    r2 = collect_garbage(store.backend, grace=0, slack=0)
    assert r2.packs_deleted == 0 and r2.packs_kept_fresh == 1
    assert old_pack in _keys(store.objects, "packs/")
    reader = RunStore(open_store(tmp_path / "store", stat_cache=False))
    for run_id, path in ((keeper.run_id, a), (again.run_id, b)):
        entry = reader.get_run(run_id).artifacts[path.name]
        assert reader.artifact_bytes(run_id, entry) == path.read_bytes()


def test_gc_deletes_a_repacked_pack_and_readers_find_its_chunks_in_the_new_one(tmp_path: Path) -> None:
    from casstore.maintenance.gc import collect_garbage
    from casstore.maintenance.verify import verify_store

    a, b, c = _logged(tmp_path, ["a.bin", "b.bin", "c.bin"], 30)
    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    first = store.create_run(exp)
    entries = first.log_files([(p.name, str(p)) for p in (a, b, c)])
    first.end()
    keeper = store.create_run(exp)
    keeper.bind_artifact("a.bin", entries[0].digest, entries[0].size)
    keeper.end()
    stale_reader = open_store(tmp_path / "store", stat_cache=False)
    assert stale_reader.get_bytes(entries[0].digest) == a.read_bytes()  # its index read now
    store.delete_run(first.run_id, "test")
    (old_pack,) = _keys(store.objects, "packs/")
    before = sum(store.backend.info(k).size for k in _keys(store.objects, "packs/"))
    assert collect_garbage(store.backend, grace=0, slack=0).repacked == 1
    time.sleep(0.01)
    r = collect_garbage(store.backend, grace=0, slack=0)
    assert r.packs_deleted == 1 and r.indexes_rewritten >= 1
    packs = _keys(store.objects, "packs/")
    assert old_pack not in packs and len(packs) == 1
    assert sum(store.backend.info(k).size for k in packs) < before / 2
    # a reader that had the old index finds the pack gone, reads the indexes again, and goes on
    assert stale_reader.get_bytes(entries[0].digest) == a.read_bytes()
    assert open_store(tmp_path / "store", stat_cache=False).get_bytes(entries[0].digest) == a.read_bytes()
    report = verify_store(RunStore(open_store(tmp_path / "store", stat_cache=False)))
    assert report.ok, [p.to_dict() for p in report.problems]


def test_a_verifier_opened_before_gc_repacked_finds_the_live_chunks_in_their_new_pack(tmp_path: Path) -> None:
    """A long-lived store object (a session, the UI) verifies a run after gc moved its
    chunks out of a pack and deleted the pack: the chunks are found where they are now,
    not reported missing."""
    from casstore.maintenance.gc import collect_garbage
    from casstore.maintenance.verify import verify_store

    a, b, c = _logged(tmp_path, ["a.bin", "b.bin", "c.bin"], 40)
    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    first = store.create_run(exp)
    entries = first.log_files([(p.name, str(p)) for p in (a, b, c)])
    first.end()
    keeper = store.create_run(exp)
    keeper.bind_artifact("a.bin", entries[0].digest, entries[0].size)
    keeper.end()
    verifier = RunStore(open_store(tmp_path / "store", stat_cache=False))
    assert verify_store(verifier, [keeper.run_id]).ok  # its index read now
    store.delete_run(first.run_id, "test")
    (old_pack,) = _keys(store.objects, "packs/")
    assert collect_garbage(store.backend, grace=0, slack=0).repacked == 1
    time.sleep(0.01)
    assert collect_garbage(store.backend, grace=0, slack=0).packs_deleted == 1
    assert old_pack not in _keys(store.objects, "packs/")
    for report in (verify_store(verifier, [keeper.run_id]), verify_store(verifier)):
        assert report.ok, [p.to_dict() for p in report.problems]
        assert report.checked["chunks"] >= 1


def test_a_verifier_that_described_an_unindexed_pack_forgets_it_once_gc_deleted_it(tmp_path: Path) -> None:
    """A pack no index lists (a writer killed before its index) is read from its header;
    once gc has deleted it, a verifier that described it does not report its chunks as
    missing."""
    from casstore.maintenance.gc import collect_garbage
    from casstore.maintenance.verify import verify_store
    from casstore.objects.digest import hash_bytes
    from casstore.objects.packs import encode_pack

    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    run = store.create_run(store.get_or_create_experiment("gc"))
    run.log_bytes("kept.bin", _bytes(50_000, 41))
    run.end()
    orphan = _bytes(30_000, 42)
    data, _ = encode_pack([(hash_bytes(orphan), orphan)])
    pack = hash_bytes(data)
    store.backend.put_blob(store.objects.layout.pack_key(pack), data)
    verifier = RunStore(open_store(tmp_path / "store", stat_cache=False))
    first = verify_store(verifier)  # describes the pack by its header
    assert first.ok and first.checked["chunks"] == 2
    collect_garbage(store.backend, grace=0, slack=0)
    time.sleep(0.01)
    assert collect_garbage(store.backend, grace=0, slack=0).packs_deleted == 1
    report = verify_store(verifier)
    assert report.ok, [p.to_dict() for p in report.problems]
    assert report.checked["chunks"] == 1
    # its index no longer names the deleted pack as a home of the chunk
    assert verifier.objects.packs is not None and pack not in verifier.objects.packs.packs


def test_gc_does_not_count_a_deleted_pack_that_an_index_still_lists_as_another_home(tmp_path: Path) -> None:
    """A gc killed between deleting packs and replacing the indexes that list them leaves an
    index naming a pack that is gone. The next gc must not take that pack as another home of
    a live chunk and delete the chunk's last pack."""
    from casstore.maintenance.gc import collect_garbage
    from casstore.maintenance.verify import verify_store
    from casstore.objects.digest import hash_bytes
    from casstore.objects.packs import encode_index, encode_pack

    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    objects, exp = store.objects, store.get_or_create_experiment("gc")
    x, y = _bytes(20_000, 50), _bytes(30_000, 51)  # one chunk each
    first = store.create_run(exp)
    entry = first.log_bytes("x.bin", x)  # x's chunk in a pack of its own, indexed
    first.end()
    (lingering,) = _keys(objects, "packs/")
    # a second pack holding x's chunk (and another), with its own index
    data, entries = encode_pack([(entry.digest, x), (hash_bytes(y), y)])
    second = hash_bytes(data)
    objects.backend.put_blob(objects.layout.pack_key(second), data)
    index = encode_index([(second, len(data), entries)])
    objects.backend.put_blob(INDEX_PREFIX + hash_bytes(index), index)
    store.delete_run(first.run_id, "test")
    time.sleep(0.01)
    assert collect_garbage(objects.backend, grace=0, slack=0).marked.get("packs") == 2  # both dead
    old = objects.backend.info(objects.layout.pack_key(second)).mtime
    # a writer that freshened the second pack before that mark publishes a run of x after it
    keeper = store.create_run(exp)
    keeper.bind_artifact("x.bin", entry.digest, entry.size)
    keeper.end()
    os.utime(_raw_path(objects, objects.layout.pack_key(second)), (old, old))
    # the killed gc: the first pack deleted, the index that lists it not replaced
    _raw_path(objects, lingering).unlink()
    time.sleep(0.01)
    r = collect_garbage(objects.backend, grace=0, slack=0)
    assert objects.layout.pack_key(second) in _keys(objects, "packs/"), r.to_dict()
    report = verify_store(RunStore(open_store(tmp_path / "store", stat_cache=False)), [keeper.run_id])
    assert report.ok, [p.to_dict() for p in report.problems]


# ---- converting a store of loose chunks ---------------------------------------------------------------

_CONVERT = textwrap.dedent(
    """
    import sys
    from casstore.backend import open_backend
    from casstore.maintenance import topacks
    topacks._BATCH_BYTES = 256 << 10  # publish often, so a kill leaves some of the work done
    print("start", flush=True)
    topacks.convert_to_packs(open_backend(sys.argv[1]))
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("seed", [1, 2])
def test_converting_a_store_killed_half_way_and_resumed_keeps_every_run(tmp_path: Path, seed: int) -> None:
    from casstore.maintenance.topacks import convert_to_packs
    from casstore.maintenance.verify import verify_store
    from casstore.objects import ChunkerParams

    small = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
    root = tmp_path / "store"
    store = RunStore(open_store(root, chunker=small, stat_cache=False, layout="loose"))
    exp = store.get_or_create_experiment("convert")
    expected: dict[str, dict[str, bytes]] = {}
    for r in range(4):
        run = store.create_run(exp)
        files = {f"f{i}.bin": _bytes(300_000 + 7_000 * i, seed * 50 + r * 10 + i) for i in range(3)}
        for name, data in files.items():
            run.log_bytes(name, data)
        run.end()
        expected[run.run_id] = files
    loose_before = len(_keys(store.objects, "chunks/"))
    assert loose_before > 500

    proc = subprocess.Popen([sys.executable, "-c", _CONVERT, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(random.Random(seed).uniform(0.1, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    def check_runs() -> None:
        reader = RunStore(open_store(root, stat_cache=False))
        for run_id, files in expected.items():
            view = reader.get_run(run_id)
            for name, data in files.items():
                assert reader.artifact_bytes(run_id, view.artifacts[name]) == data

    check_runs()  # whole at the point it was killed
    report = convert_to_packs(open_store(root, stat_cache=False).backend)
    assert report.damaged == []
    packed = open_store(root, stat_cache=False)
    assert packed.config.content_layout == "packs" and packed.config.chunker == small
    assert _keys(packed, "chunks/") == []
    check_runs()
    assert verify_store(RunStore(packed)).ok
    # converting again finds nothing to do
    again = convert_to_packs(packed.backend)
    assert again.packed_chunks == 0 and again.loose_deleted == 0 and not again.config_switched


def test_converting_names_a_damaged_loose_chunk_and_leaves_it(tmp_path: Path) -> None:
    from casstore.maintenance.topacks import convert_to_packs

    store = open_store(tmp_path / "store", stat_cache=False, layout="loose")
    good, bad = store.put_bytes(_bytes(50_000, 1)), store.put_bytes(_bytes(50_000, 2))
    key = store.layout.chunk_key(bad.digest)
    path = _raw_path(store, key)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 1
    path.write_bytes(bytes(raw))
    report = convert_to_packs(store.backend)
    assert report.damaged == [key]
    packed = open_store(tmp_path / "store", stat_cache=False)
    assert packed.get_bytes(good.digest) == _bytes(50_000, 1)
    with pytest.raises(IntegrityError, match=key):
        packed.get_bytes(bad.digest)  # still there, still found damaged: nothing wrong served


def test_gc_on_s3_repacks_and_deletes_packs_and_keeps_what_a_writer_reuses(any_s3: str, tmp_path: Path) -> None:
    """On S3 (whole-second times): a dead pack is marked, then deleted by a later run; a
    pack a writer reused after it was marked is kept; every live file reads whole."""
    from casstore.maintenance.gc import collect_garbage

    a, b, c = _logged(tmp_path, ["a.bin", "b.bin", "c.bin"], 40)
    store = RunStore(open_store(any_s3, layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    dead = store.create_run(exp)
    dead.log_files([(c.name, str(c))])  # a pack of its own, all dead once the run is deleted
    dead.end()
    first = store.create_run(exp)
    first.log_files([(p.name, str(p)) for p in (a, b)])
    first.end()
    store.delete_run(dead.run_id, "test")
    store.delete_run(first.run_id, "test")
    time.sleep(1.1)  # S3 keeps whole seconds: the mark must come after the packs' times
    r1 = collect_garbage(store.backend, grace=0, slack=0)
    assert r1.marked.get("packs") == 2
    time.sleep(1.1)
    writer = RunStore(open_store(any_s3, stat_cache=False))
    kept = writer.create_run(writer.get_or_create_experiment("gc"))
    kept.log_file("a.bin", a)  # deduplicated against a pack gc has marked: freshens it
    kept.end()
    assert writer.objects.bytes_written == 0
    r2 = collect_garbage(store.backend, grace=0, slack=0)
    assert r2.packs_deleted == 1 and r2.packs_kept_fresh == 1
    reader = RunStore(open_store(any_s3, stat_cache=False))
    entry = reader.get_run(kept.run_id).artifacts["a.bin"]
    assert reader.artifact_bytes(kept.run_id, entry) == a.read_bytes()
    assert len(list(reader.backend.list("packs/"))) == 1


def test_gc_replaces_only_the_indexes_that_list_a_deleted_pack(packed: ObjectStore, tmp_path: Path) -> None:
    """An index naming a deleted pack is replaced by one of its other packs (new first); an
    index gc's listing did not know (a writer's, published meanwhile) is left alone."""
    from casstore.maintenance.packgc import load_packs, rewrite_indexes

    first = packed.put_bytes(_bytes(100_000, 50))
    second = packed.put_bytes(_bytes(100_000, 51))
    packed.flush()  # one pack, one index, both chunks
    (shared,) = _keys(packed, INDEX_PREFIX)
    third = packed.put_bytes(_bytes(100_000, 52))
    packed.flush()  # a second pack and its own index
    index, stale = load_packs(packed.backend, packed.layout)
    assert len(index.packs) == 2 and stale == set()
    doomed = next(p for p in index.packs if {d for d, _, _ in index.entries(p)} == {first.digest, second.digest})
    other_index = next(k for k in _keys(packed, INDEX_PREFIX) if k != shared)
    packed.backend.delete(packed.layout.pack_key(doomed))
    assert rewrite_indexes(packed.backend, index, {doomed}) == 1
    assert _keys(packed, INDEX_PREFIX) == [other_index]  # the shared one held only the doomed pack
    reader = open_store(tmp_path / "store", stat_cache=False)
    assert reader.get_bytes(third.digest) == _bytes(100_000, 52)


def test_du_counts_the_chunks_in_packs(packed: ObjectStore) -> None:
    from casstore.maintenance.du import disk_usage

    runs = RunStore(packed)
    run = runs.create_run(runs.get_or_create_experiment("du"))
    run.log_bytes("a.bin", _bytes(3 << 20, 60))
    run.log_bytes("b.bin", _bytes(100_000, 61))
    run.end()
    report = disk_usage(runs).to_dict()
    assert report["store"]["stored_bytes"] == (3 << 20) + 100_000
    assert report["store"]["unreferenced_bytes"] == 0


def test_verify_finds_a_flipped_byte_inside_a_pack(packed: ObjectStore) -> None:
    from casstore.maintenance.verify import verify_store

    runs = RunStore(packed)
    run = runs.create_run(runs.get_or_create_experiment("verify"))
    run.log_bytes("a.bin", _bytes(2 << 20, 70))
    run.end()
    assert verify_store(runs).ok
    key = _keys(packed, "packs/")[0]
    path = _raw_path(packed, key)
    raw = bytearray(path.read_bytes())
    raw[(1 << 20) + 17] ^= 0x80
    path.write_bytes(bytes(raw))
    for deep in (False, True):
        report = verify_store(RunStore(open_store(_raw_path(packed, ""), stat_cache=False)), deep=deep)
        assert not report.ok
        assert {p.kind for p in report.problems} == {"corrupt"}
        assert any(key in p.detail for p in report.problems)  # the pack is named
        assert any(a.get("run") == run.run_id for p in report.problems for a in p.affects)


def test_verify_of_a_truncated_pack_names_the_chunks_it_lost_and_checks_the_rest(packed: ObjectStore) -> None:
    """verify reads a pack's chunks in runs of adjacent ones: a pack cut short in the middle
    of a run loses the chunks past the cut (named, with the run that uses them), and the
    chunks before it are still checked and found good."""
    from casstore.maintenance.verify import verify_store

    runs = RunStore(packed)
    run = runs.create_run(runs.get_or_create_experiment("verify"))
    run.log_bytes("a.bin", _bytes(6 << 20, 71))
    run.end()
    (key,) = _keys(packed, "packs/")
    entries = packed.packs.entries(key.rsplit("/", 1)[1]) if packed.packs is not None else []
    assert len(entries) > 4
    path = _raw_path(packed, key)
    cut = entries[len(entries) // 2][1] + 10  # inside a chunk, half way through the pack
    path.write_bytes(path.read_bytes()[:cut])
    report = verify_store(RunStore(open_store(_raw_path(packed, ""), stat_cache=False)))
    lost = {d for d, off, n in entries if off + n > cut}
    named = {p.object for p in report.problems if p.kind in ("corrupt", "missing") and p.object.startswith("chunks/")}
    assert named == {packed.layout.chunk_key(d) for d in lost}
    assert all(any(a.get("run") == run.run_id for a in p.affects) for p in report.problems if p.object in named)
    assert report.checked["chunks"] == len(entries)


def test_stores_opened_under_different_endpoints_talk_to_their_own(moto_s3: object, seaweed_s3: object,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """s3fs caches file systems by their options, not by the environment: a store opened after
    AWS_ENDPOINT_URL changed must not reuse a client of the old endpoint."""
    from casstore.backend import open_backend

    seen = []
    for target in (moto_s3, seaweed_s3):
        for k, v in target.env.items():  # type: ignore[attr-defined]
            monkeypatch.setenv(k, v)
        backend: Any = open_backend(target.fresh_url("endpoint"))  # type: ignore[attr-defined]
        seen.append(backend.fs.s3.meta.endpoint_url)
        backend.put_if_absent("k", target.server.encode())  # type: ignore[attr-defined]
        assert backend.get("k") == target.server.encode()  # type: ignore[attr-defined]
    assert seen == [moto_s3.endpoint_url, seaweed_s3.endpoint_url]  # type: ignore[attr-defined]


def test_gc_folds_the_small_index_objects_and_every_reader_still_finds_every_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer publishes an index object per run that logs a file, so a team's store holds
    one per run, and a new machine reads them all, a GET each: gc folds them into few. A
    reader whose cache merged the old ones and a reader with no cache both read every file
    afterwards, and a writer stores nothing again."""
    from casstore.maintenance import packgc
    from casstore.maintenance.gc import collect_garbage
    from casstore.maintenance.verify import verify_store

    files = _logged(tmp_path, [f"f{i}.bin" for i in range(6)], 40)
    writer = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    exp = writer.get_or_create_experiment("fold")
    entries = []
    for p in files:
        h = writer.create_run(exp)
        entries.append(h.log_file(p.name, p))
        h.end()
    before = _keys(writer.objects, INDEX_PREFIX)
    assert len(before) >= len(files)
    warm = open_store(tmp_path / "store", stat_cache=False)
    assert warm.get_bytes(entries[0].digest) == files[0].read_bytes()  # its cache merged the small ones

    r = collect_garbage(writer.backend, grace=0)
    assert (r.indexes_folded, r.indexes_written) == (len(before), 1)
    (after,) = _keys(writer.objects, INDEX_PREFIX)
    assert len(decode_index(writer.backend.get(after), after)) == len(before)  # every pack, listed once
    assert collect_garbage(writer.backend, grace=0).indexes_folded == 0  # one object: nothing to fold

    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(tmp_path / "a-new-machine"))
    cold = open_store(tmp_path / "store", stat_cache=False)
    for reader in (warm, cold):
        assert [reader.get_bytes(e.digest) for e in entries] == [p.read_bytes() for p in files]
    assert len(cold.packs.indexes) == 1  # type: ignore[union-attr]
    again = writer.create_run(exp)
    packs = _keys(writer.objects, "packs/")
    again.log_file(files[0].name, files[0])
    again.end()
    assert _keys(writer.objects, "packs/") == packs
    assert verify_store(writer).ok
    assert packgc.FOLD_ENTRIES > 1000


def test_a_deleted_runs_pack_is_reclaimed_by_the_third_gc_run(tmp_path: Path) -> None:
    """The first run marks the file, the second deletes it and marks the pack only it used
    (its chunks are named by no recipe left), the third deletes the pack: a nightly gc gives
    the space back on the third night. A pack another live file still uses stays."""
    from casstore.maintenance.gc import collect_garbage

    gone_file, kept_file = tmp_path / "gone.bin", tmp_path / "kept.bin"
    for seed, p in enumerate((gone_file, kept_file)):
        p.write_bytes(_bytes(700_000, 60 + seed))  # a few chunks: a file with a recipe
    store = RunStore(open_store(tmp_path / "store", layout="packs", stat_cache=False))
    exp = store.get_or_create_experiment("gc")
    runs = []
    for p in (gone_file, kept_file):
        h = store.create_run(exp)
        h.log_file(p.name, p)
        h.end()
        runs.append(h.run_id)
    packs = _keys(store.objects, "packs/")
    assert len(packs) == 2
    store.delete_run(runs[0], "test")
    reports = []
    for _ in range(3):
        time.sleep(0.01)
        reports.append(collect_garbage(store.backend, grace=0, slack=0))
    first, second, third = reports
    assert first.marked["files"] == 1 and first.marked.get("packs", 0) == 0
    assert second.deleted["files"] == 1 and second.marked.get("packs") == 1
    assert third.packs_deleted == 1 and third.deleted_total == 1
    (left,) = _keys(store.objects, "packs/")
    assert left in packs
    view = store.get_run(runs[1])
    assert store.artifact_bytes(runs[1], view.artifacts["kept.bin"]) == kept_file.read_bytes()
