"""The objects layer: exact round trips, BLAKE3 names, deduplication, verified reads."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casstore.backend import FsspecBackend
from casstore.exceptions import CorruptRecordError, IntegrityError, LocalFileError, ObjectNotFoundError
from casstore.objects import EMPTY_DIGEST, Chunker, ChunkerParams, ObjectStore, open_objects, open_store
from casstore.objects.codec import pack
from casstore.testing import strategies as cst
from layouts import LAYOUTS, chunk_site

# hypothesis examples share a module-scoped store: content addressing makes that safe
SHARED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# a few KiB per chunk: megabyte files still make hundreds of chunks, quickly
MID_CHUNKER = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def stored_keys(objects: ObjectStore, prefix: str) -> set[str]:
    return set(objects.backend.list(prefix))


def leftovers(directory: Path) -> list[str]:
    """Files a download may have left behind in ``directory``."""
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module", params=[(kind, layout) for kind in ("local", "memory", "fsspec") for layout in LAYOUTS],
                ids=lambda p: "-".join(p))
def shared_objects(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """One store per backend kind and content layout, small chunks; fsspec (concurrency 8)
    takes the batched paths."""
    kind, layout = request.param
    if kind == "local":
        objects = open_store(tmp_path_factory.mktemp("local") / "store", chunker=cst.SMALL_CHUNKER, layout=layout)
    elif kind == "memory":
        objects = open_store(f"memory://objects-{os.getpid()}-{id(request)}", chunker=cst.SMALL_CHUNKER, layout=layout)
    else:
        backend = FsspecBackend(fsspec.filesystem("file"), str(tmp_path_factory.mktemp("fsspec") / "store"))
        objects = open_objects(backend, chunker=cst.SMALL_CHUNKER, layout=layout)
    yield objects
    if kind == "memory":
        for key in list(objects.backend.list()):
            objects.backend.delete(key)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


@pytest.fixture
def objects(tmp_path: Path, store_layout: str) -> ObjectStore:
    return open_store(tmp_path / "store", chunker=MID_CHUNKER)


# ---- round trips and names --------------------------------------------------------------


@SHARED
@given(data=cst.file_contents())
def test_any_bytes_round_trip_through_every_put_and_get(shared_objects: ObjectStore, scratch: Path, data: bytes) -> None:
    expected = blake3(data).hexdigest()  # what `b3sum` prints for the file
    src = scratch / f"src-{expected}"
    src.write_bytes(data)

    assert shared_objects.put_bytes(data) == (expected, len(data))
    assert shared_objects.put_file(src) == (expected, len(data))
    assert shared_objects.put_stream(io.BytesIO(data)) == (expected, len(data))

    assert shared_objects.get_bytes(expected) == data
    assert b"".join(shared_objects.iter_file(expected)) == data
    dest = scratch / "out" / f"dest-{expected}"
    shared_objects.get_file(expected, dest)
    assert dest.read_bytes() == data
    with shared_objects.open(expected) as f:
        head = f.read(100)
        assert head + f.read() == data
    shared_objects.verify_file(expected)


@SHARED
@given(data=cst.file_contents(), params=cst.small_chunker_params())
def test_chunks_cover_the_file_in_order_for_any_chunker(tmp_path: Path, data: bytes, params: ChunkerParams) -> None:
    objects = open_store(f"memory://chunker-{blake3(repr(params).encode() + data).hexdigest()}", chunker=params)
    try:
        digest, size = objects.put_bytes(data)
        recipe = objects.recipe(digest)
        assert recipe.size == size == len(data)
        pos = 0
        for chunk_digest, length in recipe.chunks:
            piece = data[pos : pos + length]
            assert blake3(piece).hexdigest() == chunk_digest
            assert length <= params.max_size
            pos += length
        assert pos == len(data)
        # every chunk but the last respects the minimum
        assert all(n >= params.min_size for _, n in recipe.chunks[:-1])
    finally:
        for key in list(objects.backend.list()):
            objects.backend.delete(key)


@settings(max_examples=60, deadline=None)
@given(data=cst.file_contents(max_size=24 * 1024), pieces=st.lists(st.integers(1, 6000), min_size=1, max_size=40))
def test_cutting_block_by_block_gives_the_chunks_of_the_whole(data: bytes, pieces: list[int]) -> None:
    chunker = Chunker(cst.SMALL_CHUNKER)
    expected = [bytes(ch) for ch in chunker.cut_buffer(data)]
    got: list[bytes] = []
    tail, pos, i = b"", 0, 0
    while True:
        step = pieces[i % len(pieces)]
        i += 1
        block = tail + data[pos : pos + step]
        pos += step
        final = pos >= len(data)
        cut, used = chunker.cut_block(memoryview(block), final)
        got.extend(bytes(ch) for ch in cut)
        assert b"".join(bytes(ch) for ch in cut) == block[:used]
        tail = block[used:]
        if final:
            break
    assert tail == b""
    assert got == expected


def test_a_file_of_many_read_blocks_has_the_chunks_of_the_whole(objects: ObjectStore, tmp_path: Path) -> None:
    data = random_bytes(20 << 20, 8)  # several read blocks, so chunks straddle block edges
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    digest, size = objects.put_file(src)
    assert (digest, size) == (blake3(data).hexdigest(), len(data))
    whole = [(blake3(ch).hexdigest(), len(ch)) for ch in Chunker(MID_CHUNKER).cut_buffer(data)]
    assert list(objects.recipe(digest).chunks) == whole
    assert objects.get_bytes(digest) == data


def test_the_empty_file_has_the_empty_digest(objects: ObjectStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert objects.put_file(empty) == (EMPTY_DIGEST, 0)
    assert EMPTY_DIGEST == blake3(b"").hexdigest()
    assert objects.recipe(EMPTY_DIGEST).chunks == ()
    objects.get_file(EMPTY_DIGEST, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b""


def test_progress_reports_every_byte(objects: ObjectStore, tmp_path: Path) -> None:
    data = random_bytes(300_000, 1)
    src = tmp_path / "f"
    src.write_bytes(data)
    seen: list[int] = []
    digest, _ = objects.put_file(src, progress=seen.append)
    assert sum(seen) == len(data)
    seen.clear()
    objects.put_file(src, progress=seen.append)  # already stored: reported at once
    assert sum(seen) == len(data)
    seen.clear()
    objects.get_file(digest, tmp_path / "out", progress=seen.append)
    assert sum(seen) == len(data)


# ---- deduplication ------------------------------------------------------------------------


@SHARED
@given(data=cst.file_contents())
def test_storing_again_adds_no_object(shared_objects: ObjectStore, scratch: Path, data: bytes) -> None:
    shared_objects.put_bytes(data)
    chunks, files = stored_keys(shared_objects, "chunks/"), stored_keys(shared_objects, "files/")
    written = shared_objects.chunks_written
    src = scratch / f"again-{blake3(data).hexdigest()}"
    src.write_bytes(data)
    shared_objects.put_bytes(data)
    shared_objects.put_file(src)
    shared_objects.put_stream(io.BytesIO(data))
    assert stored_keys(shared_objects, "chunks/") == chunks
    assert stored_keys(shared_objects, "files/") == files
    assert shared_objects.chunks_written == written


def test_identical_content_in_two_files_is_stored_once(objects: ObjectStore) -> None:
    common = random_bytes(1 << 20, 2)
    objects.put_bytes(random_bytes(100_000, 3) + common)
    before = objects.bytes_written
    objects.put_bytes(random_bytes(100_000, 4) + common)
    assert objects.bytes_written - before < 250_000  # the new head and a chunk or two at the seam


@pytest.mark.parametrize(
    "edit",
    ["insert 17 bytes in the middle", "overwrite 1000 bytes in the middle", "append 64 KiB", "prepend 100 bytes",
     "delete 5000 bytes in the middle"],
)
def test_a_small_edit_leaves_most_chunks_shared(objects: ObjectStore, edit: str) -> None:
    v1 = random_bytes(4 << 20, 5)
    mid = len(v1) // 2
    v2 = {
        "insert 17 bytes in the middle": v1[:mid] + b"x" * 17 + v1[mid:],
        "overwrite 1000 bytes in the middle": v1[:mid] + bytes(1000) + v1[mid + 1000 :],
        "append 64 KiB": v1 + random_bytes(64 << 10, 6),
        "prepend 100 bytes": b"p" * 100 + v1,
        "delete 5000 bytes in the middle": v1[:mid] + v1[mid + 5000 :],
    }[edit]
    d1, _ = objects.put_bytes(v1)
    written = objects.bytes_written
    d2, _ = objects.put_bytes(v2)
    new_bytes = objects.bytes_written - written
    old_chunks = set(objects.chunk_digests(d1))
    v2_chunks = objects.chunk_digests(d2)
    shared = sum(1 for c in v2_chunks if c in old_chunks)
    assert shared / len(v2_chunks) > 0.97, f"{edit}: only {shared} of {len(v2_chunks)} chunks shared"
    assert new_bytes < 4 * MID_CHUNKER.max_size + (64 << 10), f"{edit}: {new_bytes} new bytes stored"
    assert objects.get_bytes(d2) == v2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    where=st.floats(0.05, 0.95),
    inserted=st.binary(min_size=1, max_size=64),
)
def test_inserting_a_few_bytes_anywhere_leaves_most_chunks_shared(
    objects: ObjectStore, seed: int, where: float, inserted: bytes
) -> None:
    """Content-defined chunking: an insertion changes the chunks around it, not the rest."""
    v1 = random_bytes(2 << 20, seed)
    at = int(len(v1) * where)
    v2 = v1[:at] + inserted + v1[at:]
    d1, _ = objects.put_bytes(v1)
    d2, _ = objects.put_bytes(v2)
    old_chunks = set(objects.chunk_digests(d1))
    v2_chunks = objects.chunk_digests(d2)
    changed = sum(1 for c in v2_chunks if c not in old_chunks)
    assert changed / len(v2_chunks) < 0.05, f"{changed} of {len(v2_chunks)} chunks changed by {len(inserted)} bytes at {at}"
    assert objects.get_bytes(d2) == v2


# ---- verification on read -----------------------------------------------------------------


@pytest.fixture(scope="module", params=LAYOUTS)
def corruptible(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[ObjectStore, str, bytes, Path]:
    root = tmp_path_factory.mktemp("corrupt") / "store"
    objects = open_store(root, chunker=cst.SMALL_CHUNKER, layout=request.param)
    data = random_bytes(20_000, 7)
    digest, _ = objects.put_bytes(data)
    return objects, digest, data, root


def _object_path(root: Path, key: str) -> Path:
    return root.joinpath(*key.split("/"))


def _assert_every_read_fails(objects: ObjectStore, digest: str, dest_dir: Path, error: type[Exception]) -> Exception:
    dest_dir.mkdir(parents=True, exist_ok=True)
    before = leftovers(dest_dir)
    with pytest.raises(error) as caught:
        objects.get_bytes(digest)
    with pytest.raises(error):
        objects.get_file(digest, dest_dir / "model.bin")
    assert leftovers(dest_dir) == before, "a failed download left a file behind"
    with pytest.raises(error), objects.open(digest) as f:
        f.read()
    with pytest.raises(error):
        objects.verify_file(digest)
    return caught.value


def _assert_reading_the_chunks_fails(objects: ObjectStore, digest: str, error: type[Exception]) -> None:
    """``read_chunks`` (which trusts the recipe, not the whole) still checks every chunk."""
    with pytest.raises(error):
        for _ in objects.read_chunks(objects.recipe(digest).chunks):
            pass


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 10_000), offset=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_any_flipped_byte_in_a_chunk_is_detected(
    corruptible: tuple[ObjectStore, str, bytes, Path], tmp_path: Path, which: int, offset: int, mask: int
) -> None:
    objects, digest, data, root = corruptible
    chunks = objects.recipe(digest).chunks
    chunk, length = chunks[which % len(chunks)]
    site = chunk_site(objects, root, chunk)
    original = site.read()
    assert len(original) == length
    pos = offset % length
    damaged = bytearray(original)
    damaged[pos] ^= mask
    site.write(bytes(damaged))
    try:
        err = _assert_every_read_fails(objects, digest, tmp_path / f"dl-{which}-{offset}-{mask}", IntegrityError)
        _assert_reading_the_chunks_fails(objects, digest, IntegrityError)
        assert isinstance(err, IntegrityError)
        assert chunk in err.obj
        assert err.expected == chunk
        assert err.actual == blake3(bytes(damaged)).hexdigest()
        assert chunk in str(err) and err.actual in str(err)
    finally:
        site.write(original)
    assert objects.get_bytes(digest) == data


@pytest.mark.parametrize("damage", ["truncate", "extend", "empty", "delete"])
def test_a_damaged_or_missing_chunk_is_detected(
    corruptible: tuple[ObjectStore, str, bytes, Path], tmp_path: Path, damage: str
) -> None:
    """In a pack, a chunk's bytes cut short, grown by a byte inside or removed shift what
    its byte range holds; the pack deleted takes every chunk in it (the first the file
    reads is the one named)."""
    objects, digest, data, root = corruptible
    chunks = [c for c, _ in objects.recipe(digest).chunks]
    site = chunk_site(objects, root, chunks[1])
    whole = site.path.read_bytes()
    original = site.read()
    named = chunks[1]
    if damage == "delete":
        site.path.unlink()
        named = next(c for c in chunks if chunk_site(objects, root, c).key == site.key) if site.packed else named
    else:
        grown = original[:1] + b"\0" + original[1:] if site.packed else original + b"\0"
        site.write({"truncate": original[:-1], "extend": grown, "empty": b""}[damage])
    try:
        error = ObjectNotFoundError if damage == "delete" else IntegrityError
        err = _assert_every_read_fails(objects, digest, tmp_path / "dl", error)
        _assert_reading_the_chunks_fails(objects, digest, error)
        assert named in str(err)
    finally:
        site.path.write_bytes(whole)
    assert objects.get_bytes(digest) == data


def _tampered_recipes(objects: ObjectStore, digest: str) -> dict[str, tuple[bytes, type[Exception]]]:
    chunks = [list(c) for c in objects.recipe(digest).chunks]
    size = sum(n for _, n in chunks)
    other_digest, other_size = objects.put_bytes(b"another file entirely, of a different size")
    other = [list(c) for c in objects.recipe(other_digest).chunks]
    return {
        "garbage": (b"\x00\xffnot msgpack", CorruptRecordError),
        "not a recipe": (pack({"v": 1, "hello": "world"}), CorruptRecordError),
        "newer version": (pack({"v": 99, "size": size, "chunks": chunks}), CorruptRecordError),
        "version zero": (pack({"v": 0, "size": size, "chunks": chunks}), CorruptRecordError),
        "negative version": (pack({"v": -2, "size": size, "chunks": chunks}), CorruptRecordError),
        "sizes do not add up": (pack({"v": 1, "size": size + 1, "chunks": chunks}), CorruptRecordError),
        "path instead of digest": (pack({"v": 1, "size": 3, "chunks": [["../../../etc/passwd", 3]]}), CorruptRecordError),
        "chunks swapped": (pack({"v": 1, "size": size, "chunks": [chunks[1], chunks[0], *chunks[2:]]}), IntegrityError),
        "last chunk dropped": (pack({"v": 1, "size": size - chunks[-1][1], "chunks": chunks[:-1]}), IntegrityError),
        "another file's chunks": (pack({"v": 1, "size": other_size, "chunks": other}), IntegrityError),
        "wrong chunk length": (
            pack({"v": 1, "size": size + 1, "chunks": [[chunks[0][0], chunks[0][1] + 1], *chunks[1:]]}),
            IntegrityError,
        ),
    }


@pytest.mark.parametrize(
    "tamper",
    ["garbage", "not a recipe", "newer version", "sizes do not add up", "path instead of digest", "chunks swapped",
     "last chunk dropped", "another file's chunks", "wrong chunk length"],
)
def test_a_tampered_recipe_is_detected(
    corruptible: tuple[ObjectStore, str, bytes, Path], tmp_path: Path, tamper: str
) -> None:
    objects, digest, data, root = corruptible
    path = _object_path(root, objects.layout.recipe_key(digest))
    original = path.read_bytes()
    forged, error = _tampered_recipes(objects, digest)[tamper]
    path.write_bytes(forged)
    try:
        err = _assert_every_read_fails(objects, digest, tmp_path / "dl", error)
        named = [digest] + [c for c, _ in objects.recipe(digest).chunks] if error is IntegrityError else [digest]
        assert any(name in str(err) for name in named), f"the error does not name the object: {err}"
    finally:
        path.write_bytes(original)
    assert objects.get_bytes(digest) == data


# ---- pinned recipes and reading chunks ---------------------------------------------------


@settings(SHARED, max_examples=15)
@given(data=st.binary(max_size=200_000))
def test_read_chunks_gives_the_chunks_in_order(shared_objects: ObjectStore, data: bytes) -> None:
    digest, _ = shared_objects.put_bytes(data)
    assert b"".join(shared_objects.read_chunks(shared_objects.recipe(digest).chunks)) == data


def test_a_recipe_pin_is_the_digest_of_the_recipe_checked_against_the_file(
    corruptible: tuple[ObjectStore, str, bytes, Path], tmp_path: Path
) -> None:
    objects, digest, data, root = corruptible
    local = tmp_path / "f"
    local.write_bytes(data)
    pin = objects.recipe_pin(digest, local)
    assert pin == blake3(_object_path(root, objects.layout.recipe_key(digest)).read_bytes()).hexdigest()
    assert objects.recipe(digest, pin=pin) == objects.recipe(digest)
    for other in (data[:-1], data + b"\0", data[:100] + bytes([data[100] ^ 1]) + data[101:]):
        local.write_bytes(other)
        with pytest.raises(IntegrityError, match=objects.layout.recipe_key(digest)):
            objects.recipe_pin(digest, local)


@pytest.mark.parametrize(
    "tamper",
    ["garbage", "not a recipe", "newer version", "sizes do not add up", "path instead of digest", "chunks swapped",
     "last chunk dropped", "another file's chunks", "wrong chunk length"],
)
def test_a_recipe_that_is_not_its_pin_is_refused_before_it_is_decoded(
    corruptible: tuple[ObjectStore, str, bytes, Path], tamper: str
) -> None:
    objects, digest, data, root = corruptible
    path = _object_path(root, objects.layout.recipe_key(digest))
    original = path.read_bytes()
    pin = blake3(original).hexdigest()
    forged, _ = _tampered_recipes(objects, digest)[tamper]
    path.write_bytes(forged)
    try:
        with pytest.raises(IntegrityError) as caught:
            objects.recipe(digest, pin=pin)
        assert caught.value.expected == pin and caught.value.actual == blake3(forged).hexdigest()
        assert objects.layout.recipe_key(digest) in caught.value.obj
    finally:
        path.write_bytes(original)


def test_a_self_checking_record_refuses_any_changed_byte() -> None:
    from casstore.exceptions import CorruptRecordError
    from casstore.objects.codec import pack_checked, unpack_checked

    rec = {"v": 1, "points": [["loss", 1.0, 3, 1700000000000]], "key": "lr"}
    data = pack_checked(rec)
    assert unpack_checked(data, "segment") == rec
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        try:
            got = unpack_checked(bytes(bad), "segment")
        except CorruptRecordError:
            continue
        # a flip may only go unnoticed if it removed the check field itself (an old record's shape)
        assert got != rec and "b3" not in got, f"byte {i} flipped was served as a value"
    assert unpack_checked(pack(rec), "old record") == rec, "a record written before checks existed still reads"
    with pytest.raises(CorruptRecordError, match="no 'b3' check field"):
        unpack_checked(pack(rec), "segment", required=True)
