"""Store format versions: where content objects go, and which are written.

Version 2 (new stores): ``<kind>/ab/<digest>``, and a file that is exactly one chunk is
stored as that chunk alone, with no recipe. Version 1 (existing stores): ``<kind>/ab/cd/
<digest>`` and a recipe for every file, so older casstore can still read what is written.
Either version reads a one-chunk file with or without a recipe.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from blake3 import blake3

from casstore.backend import LocalBackend, MemoryBackend
from casstore.exceptions import InvalidInputError, ObjectNotFoundError
from casstore.objects import EMPTY_DIGEST, ChunkerParams, ContentLayout, ObjectStore, Recipe, StoreConfig, open_store
from casstore.objects.config import CONFIG_KEY, FORMAT_VERSION
from casstore.runs import RunStore

SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


def random_bytes(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def open_version(url: str, version: int) -> ObjectStore:
    """A store of the given format version (an older version: as an older casstore made it)."""
    if version < FORMAT_VERSION:
        backend = LocalBackend(url) if "://" not in url else MemoryBackend(url)
        backend.put_if_absent(CONFIG_KEY, StoreConfig(version=version, chunker=SMALL).to_json())
    return open_store(url, chunker=SMALL)


def on_disk(root: Path) -> set[str]:
    """Every content object under ``root``, as a key."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.name != CONFIG_KEY and not p.name.startswith(".")}


def test_the_layout_of_each_version() -> None:
    d = blake3(b"x").hexdigest()
    assert ContentLayout(2).chunk_key(d) == f"chunks/{d[:2]}/{d}"
    assert ContentLayout(2).recipe_key(d) == f"files/{d[:2]}/{d}"
    assert ContentLayout(2).model_key(d) == f"models/{d[:2]}/{d}"
    assert ContentLayout(1).chunk_key(d) == f"chunks/{d[:2]}/{d[2:4]}/{d}"
    assert ContentLayout(1).recipe_key(d) == f"files/{d[:2]}/{d[2:4]}/{d}"
    for version in (1, 2):
        layout = ContentLayout(version)
        for kind in ("chunks", "files", "models"):
            assert layout.parse(layout.key(kind, d)) == (kind, d)
        other = ContentLayout(3 - version)
        assert layout.parse(other.chunk_key(d)) is None, "an object at the other version's depth"
    assert ContentLayout(2).parse(f"chunks/zz/{d}") is None
    assert ContentLayout(2).parse(f"runs/{d[:2]}/{d}") is None
    assert ContentLayout(2).parse("chunks/ab/not-a-digest") is None


# ---- version 2 --------------------------------------------------------------------------------


def test_a_new_store_uses_the_one_level_fan_out(tmp_path: Path) -> None:
    objects = open_store(tmp_path / "s", chunker=SMALL)
    assert objects.config.version == FORMAT_VERSION == 6 and objects.layout == ContentLayout(6)
    assert objects.layout.levels == 1 and not objects.layout.recipe_for_one_chunk
    big = objects.put_bytes(random_bytes(60_000, 1))
    keys = on_disk(tmp_path / "s")
    chunks = objects.chunk_digests(big.digest)
    assert len(chunks) > 3
    assert keys == {f"chunks/{c[:2]}/{c}" for c in chunks} | {f"files/{big.digest[:2]}/{big.digest}"}
    assert sorted(os.listdir(tmp_path / "s")) == ["casstore.json", "chunks", "files"]


@pytest.mark.parametrize("size", [1, 1024, 4096, 5000])  # up to the minimum, and above it but one chunk
def test_a_small_file_is_one_object_and_storing_it_again_writes_nothing(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "s"
    objects = open_store(root, chunker=SMALL)
    data = random_bytes(size, size)
    assert len(list(objects.chunker.cut_buffer(data))) == 1
    digest = blake3(data).hexdigest()
    assert objects.put_bytes(data) == (digest, size)
    assert on_disk(root) == {f"chunks/{digest[:2]}/{digest}"}, "a one-chunk file is its chunk, with no recipe"
    assert objects.chunks_written == 1

    path = root / "chunks" / digest[:2] / digest
    inode = path.stat().st_ino
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert objects.put_bytes(data).digest == digest
    assert objects.put_file(src).digest == digest
    assert objects.put_stream(io.BytesIO(data)).digest == digest  # a stream is cut: its chunk is freshened
    assert on_disk(root) == {f"chunks/{digest[:2]}/{digest}"}
    # a put of bytes or of a file finds the chunk that is the file and stops there
    def no_write(final: str, data: bytes) -> str:
        raise AssertionError(f"{final} was written again")

    monkeypatch.setattr(objects.backend, "_write_tmp", no_write)
    assert objects.put_bytes(data).digest == digest and objects.put_file(src).digest == digest
    assert objects.chunks_written == 1 and path.stat().st_ino == inode, "the stored chunk was written again"
    assert not [p for p in root.rglob(".tmp-*")]
    assert objects.get_bytes(digest) == data


def test_a_file_of_several_chunks_still_has_a_recipe(tmp_path: Path) -> None:
    objects = open_store(tmp_path / "s", chunker=SMALL)
    data = random_bytes(12_000, 5)  # between the chunker's minimum and maximum, cut in several
    assert len(list(objects.chunker.cut_buffer(data))) > 1
    for stored in (objects.put_bytes(data), objects.put_stream(io.BytesIO(data))):
        assert objects.backend.exists(f"files/{stored.digest[:2]}/{stored.digest}")
        assert len(objects.recipe(stored.digest).chunks) > 1
        assert objects.get_bytes(stored.digest) == data


def test_the_empty_file_keeps_its_recipe(tmp_path: Path) -> None:
    objects = open_store(tmp_path / "s", chunker=SMALL)
    assert objects.put_bytes(b"").digest == EMPTY_DIGEST
    assert on_disk(tmp_path / "s") == {f"files/{EMPTY_DIGEST[:2]}/{EMPTY_DIGEST}"}
    assert objects.recipe(EMPTY_DIGEST) == Recipe(0, ())
    assert objects.get_bytes(EMPTY_DIGEST) == b""


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_file_stored_as_its_chunk_reads_through_every_call(tmp_path: Path, version: int, kind: str) -> None:
    """Either version reads a file that has no recipe but a chunk of its digest."""
    url = str(tmp_path / "s") if kind == "local" else f"memory://layout-{version}-{time.time_ns()}"
    objects = open_version(url, version)
    data = random_bytes(3000, 9)
    digest = blake3(data).hexdigest()
    objects.backend.put_blob(objects.layout.chunk_key(digest), data)  # the chunk alone, no recipe
    assert not objects.backend.exists(objects.layout.recipe_key(digest))
    assert objects.recipe(digest) == Recipe(3000, ((digest, 3000),))
    assert objects.has_file(digest)
    assert objects.missing_files([digest, "0" * 64]) == ["0" * 64]
    assert objects.chunk_digests(digest) == [digest]
    assert objects.get_bytes(digest) == data
    assert b"".join(objects.iter_file(digest)) == data
    with objects.open(digest) as f:
        assert f.read() == data
    objects.get_file(digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    objects.verify_file(digest)
    before = objects.backend.info(objects.layout.chunk_key(digest)).mtime
    time.sleep(0.02)
    assert objects.touch_file(digest)
    assert objects.backend.info(objects.layout.chunk_key(digest)).mtime > before, "touch_file freshens the chunk"
    assert not objects.touch_file("0" * 64) and not objects.has_file("0" * 64)
    with pytest.raises(ObjectNotFoundError):
        objects.recipe("0" * 64)


def test_a_version_2_store_reads_a_one_chunk_file_that_has_a_recipe(tmp_path: Path) -> None:
    objects = open_store(tmp_path / "s", chunker=SMALL)
    data = random_bytes(2000, 3)
    digest = objects.put_bytes(data).digest
    objects.backend.put_blob(objects.layout.recipe_key(digest), Recipe(2000, ((digest, 2000),)).encode())
    assert objects.recipe(digest) == Recipe(2000, ((digest, 2000),))
    assert objects.get_bytes(digest) == data and objects.has_file(digest)
    # the chunk is the file even where a recipe exists: storing it again writes nothing
    written = objects.chunks_written
    objects.put_bytes(data)
    assert objects.chunks_written == written


def test_a_damaged_chunk_that_is_a_file_fails_every_read(tmp_path: Path) -> None:
    from casstore.exceptions import IntegrityError

    objects = open_store(tmp_path / "s", chunker=SMALL)
    data = random_bytes(3000, 4)
    digest = objects.put_bytes(data).digest
    path = tmp_path / "s" / "chunks" / digest[:2] / digest
    path.write_bytes(b"X" + data[1:])
    for read in (objects.get_bytes, objects.verify_file, lambda d: objects.get_file(d, tmp_path / "x.bin")):
        with pytest.raises(IntegrityError, match=digest):
            read(digest)
    assert not (tmp_path / "x.bin").exists()
    path.write_bytes(data[:-1])
    with pytest.raises(IntegrityError, match=digest):
        objects.get_bytes(digest)


# ---- version 1 --------------------------------------------------------------------------------


def test_a_version_1_store_keeps_its_layout_and_a_recipe_for_every_file(tmp_path: Path) -> None:
    root = tmp_path / "s"
    objects = open_version(str(root), 1)
    assert objects.config.version == 1 and objects.layout.recipe_for_one_chunk
    small, big = random_bytes(3000, 1), random_bytes(40_000, 2)
    d_small = objects.put_bytes(small).digest
    d_big = objects.put_bytes(big).digest
    chunks = objects.chunk_digests(d_big)
    assert on_disk(root) == (
        {f"chunks/{c[:2]}/{c[2:4]}/{c}" for c in chunks + [d_small]}
        | {f"files/{d[:2]}/{d[2:4]}/{d}" for d in (d_small, d_big)}
    )
    assert objects.get_bytes(d_small) == small and objects.get_bytes(d_big) == big
    written = objects.chunks_written
    objects.put_bytes(small)
    objects.put_stream(io.BytesIO(big))
    assert objects.chunks_written == written
    # a one-chunk file whose recipe is lost: storing it again restores the recipe (older
    # casstore needs it), and writes no chunk
    (root / "files" / d_small[:2] / d_small[2:4] / d_small).unlink()
    assert objects.get_bytes(d_small) == small  # readable meanwhile: the chunk is the file
    objects.put_bytes(small)
    assert (root / "files" / d_small[:2] / d_small[2:4] / d_small).exists()
    assert objects.chunks_written == written
    assert open_store(root).config.version == 1


def test_runs_on_a_version_1_store_read_back(tmp_path: Path) -> None:
    root = tmp_path / "s"
    open_version(str(root), 1)
    store = RunStore(open_store(root))
    h = store.create_run(store.get_or_create_experiment("v1"))
    entry = h.log_bytes("notes.txt", b"hello v1\n")
    model = h.add_model("m", {"v": 1, "kind": "model", "files": {"notes.txt": {"digest": entry.digest, "size": 9}}})
    h.end()
    assert (root / "models" / model[:2] / model[2:4] / model).is_file()
    assert (root / "files" / entry.digest[:2] / entry.digest[2:4] / entry.digest).is_file()
    view = store.get_run(h.run_id)
    assert store.objects.get_bytes(view.artifacts["notes.txt"].digest) == b"hello v1\n"
    assert store.load_model_entry(model)["files"]["notes.txt"]["digest"] == entry.digest


# ---- runs on a version-2 store ------------------------------------------------------------------


def test_logging_small_files_creates_one_object_each(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = RunStore(open_version(str(root), 2))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i:02d}.txt").write_bytes(f"file number {i}\n".encode() * 10)
    h = store.create_run(store.get_or_create_experiment("small"))
    entries = h.log_files([(f"d/{p.name}", str(p)) for p in sorted(src.iterdir())])
    assert not (root / "files").exists(), "no recipe for a file of one chunk"
    assert {p.name for p in (root / "chunks").rglob("*") if p.is_file()} == {e.digest for e in entries}
    # binding stored content by digest works for a file stored as its chunk
    again = h.bind_artifact("copy.txt", entries[0].digest, entries[0].size)
    with pytest.raises(InvalidInputError, match=f"has {entries[0].size} bytes, not 3"):
        h.bind_artifact("wrong.txt", entries[0].digest, 3)
    h.end()
    view = store.get_run(h.run_id)
    assert view.artifacts["copy.txt"].digest == again.digest
    for e in entries:
        assert store.objects.get_bytes(view.artifacts[e.path].digest) == (src / e.path[2:]).read_bytes()
