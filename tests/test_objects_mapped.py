"""Hashing a stored file again in place (memory maps under a read lease): the digest is
the file's, a writer never meets a mapped file, and where no lease can be had the file
is read instead."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import casstore.objects.passes as passes_mod
import casstore.objects.store as store_mod
from casstore.exceptions import LocalFileError
from casstore.objects import ObjectStore, open_store
from casstore.objects.store import Stored
from casstore.objects.chunking import ChunkerParams
from casstore.objects import mapped as mapped_mod
from casstore.objects.mapped import FileLease, hash_leased, leases_supported

PAGE = os.sysconf("SC_PAGE_SIZE")


def _lease_granted(path: Path) -> bool:
    """Whether this file system grants this process a read lease on ``path``."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def leased_dir(tmp_path: Path) -> Path:
    """A directory on a file system that grants read leases (Linux, most local file
    systems); elsewhere the mapped path is never taken, which the other tests cover."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    if not (leases_supported() and _lease_granted(probe)):
        pytest.skip("this platform or file system grants no read leases; files are read instead")
    return tmp_path


def hash_mapped(fd: int, hasher: object, **windows: int) -> int:
    """Hash ``fd`` through maps under a lease of its own, given up at the end."""
    with FileLease(fd) as lease:
        return hash_leased(lease, hasher, **windows)  # type: ignore[arg-type]


def _digest_mapped(path: Path, **windows: int) -> tuple[str, int]:
    """BLAKE3 of ``path`` as the re-store computes it: mapped as far as allowed, the rest read."""
    h = blake3()
    fd = os.open(path, os.O_RDONLY)
    try:
        done = hash_mapped(fd, h, **windows)
        os.lseek(fd, done, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 16):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest(), done


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # the file is rewritten each time
@given(size=st.integers(0, 5 * PAGE + 17), seed=st.integers(0, 2**32 - 1))
def test_mapped_digest_is_the_files(leased_dir: Path, size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    path = leased_dir / "f.bin"
    path.write_bytes(data)
    digest, done = _digest_mapped(path, first=PAGE, window=2 * PAGE)
    assert digest == blake3(data).hexdigest()
    assert done == size  # all of it in place: nobody was writing


def test_no_lease_while_the_file_is_open_for_writing(leased_dir: Path) -> None:
    path = leased_dir / "f.bin"
    path.write_bytes(os.urandom(3 * PAGE))
    with open(path, "r+b"):
        digest, done = _digest_mapped(path)
    assert done == 0
    assert digest == blake3(path.read_bytes()).hexdigest()


def test_no_lease_when_the_program_handles_both_signals(leased_dir: Path) -> None:
    path = leased_dir / "f.bin"
    path.write_bytes(os.urandom(3 * PAGE))
    old = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGURG, signal.SIGWINCH)}
    try:
        digest, done = _digest_mapped(path)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert done == 0
    assert digest == blake3(path.read_bytes()).hexdigest()


def test_maps_can_be_turned_off(leased_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = leased_dir / "f.bin"
    path.write_bytes(os.urandom(3 * PAGE))
    monkeypatch.setenv("CASSTORE_MAP_FILES", "0")
    digest, done = _digest_mapped(path)
    assert done == 0
    assert digest == blake3(path.read_bytes()).hexdigest()


_TRUNCATE = "import sys; open(sys.argv[1], 'r+b').truncate(0)"


class _WriterArrives:
    """A hasher that, on its first window, starts a real process truncating the file and
    returns only once the kernel holds that process back for the lease."""

    def __init__(self, path: Path, inner: object | None = None) -> None:
        self.path = path
        self.inner = inner if inner is not None else blake3()
        self.writer: subprocess.Popen[bytes] | None = None
        self.writer_was_held = False

    def update(self, data: object) -> None:
        self.inner.update(data)  # type: ignore[attr-defined]
        if self.writer is not None:
            return
        self.writer = subprocess.Popen([sys.executable, "-c", _TRUNCATE, str(self.path)])
        deadline = time.monotonic() + 30
        while self.writer.poll() is None and time.monotonic() < deadline:
            if _break_pending(self.path):
                break
            time.sleep(0.01)
        self.writer_was_held = self.writer.poll() is None


def _break_pending(path: Path) -> bool:
    """Whether some process waits for a lease on ``path`` to be given up (/proc/locks
    marks such a lease BREAKING)."""
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return any("LEASE" in line and "BREAKING" in line and f":{ino} " in line for line in f)


def test_a_writer_waits_for_the_window_then_the_rest_is_read(leased_dir: Path) -> None:
    path = leased_dir / "f.bin"
    data = os.urandom(6 * PAGE)
    path.write_bytes(data)
    hasher = _WriterArrives(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        done = hash_mapped(fd, hasher, first=PAGE, window=2 * PAGE)
    finally:
        os.close(fd)
    assert hasher.writer is not None
    assert hasher.writer.wait(30) == 0
    # the truncate waited while the file was mapped; mapping stopped after that window
    assert hasher.writer_was_held
    assert done == PAGE
    assert path.stat().st_size == 0


def test_a_file_truncated_during_a_restore_is_refused_not_a_crash(leased_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = leased_dir / "model.bin"
    path.write_bytes(os.urandom(12 << 20))  # past one read block: the hash-first path
    objects = open_store(leased_dir / "store")
    objects.put_file(path)
    writers: list[_WriterArrives] = []

    def hash_while_a_writer_comes(lease: FileLease, hasher: object) -> int:
        writers.append(_WriterArrives(path, hasher))
        return hash_leased(lease, writers[-1], first=4 << 20)

    monkeypatch.setattr(store_mod, "hash_leased", hash_while_a_writer_comes)
    with pytest.raises(LocalFileError, match="changed while it was being stored"):
        objects.put_file(path)
    w = writers[0]
    assert w.writer is not None and w.writer.wait(30) == 0
    assert w.writer_was_held
    assert path.stat().st_size == 0


# ---- the storing pass over maps: a new version of a stored file -------------------------

SMALL = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)  # some 600 chunks a file


@pytest.fixture
def patient(leased_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``leased_dir``, and no window counts as slow: on a busy machine a window of the
    hashing or storing pass may take long, which would hand the file to the reading pass
    (that rule is the same as for the hashing pass, tested above)."""
    monkeypatch.setattr(mapped_mod, "SLOW", 600.0)
    return leased_dir
BIG = 9 << 20  # past one read block, so the first chunk is looked up and the file hashed first


def _versions(seed: int, edits: int) -> tuple[bytes, bytes]:
    """A file and a new version of it: the same first bytes, ``edits`` regions rewritten."""
    rng = random.Random(seed)
    old = rng.randbytes(BIG)
    new = bytearray(old)
    for _ in range(edits):
        at = rng.randrange(64 << 10, BIG - 4096)
        new[at : at + rng.randrange(1, 4096)] = rng.randbytes(rng.randrange(1, 4096))  # sizes may differ
    return old, bytes(new)


def _count_read_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time a file is stored by reading it (the storing pass
    over a stream, fed a file rather than bytes)."""
    passes: list[int] = []
    real = passes_mod.StoringPasses.store_stream

    def counted(self: object, stream: object, *a: object) -> object:
        if isinstance(stream, io.BufferedReader):  # a file read, not put_bytes' bytes
            passes.append(1)
        return real(self, stream, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(passes_mod.StoringPasses, "store_stream", counted)
    return passes


def _forget_hints(objects: ObjectStore) -> None:
    """Delete the store's similarity hints: a new version is then stored as a new file
    whose first chunk is stored (the pass over maps that cuts every chunk)."""
    for key in list(objects.backend.list("hints/")):
        objects.backend.delete(key)


def _store_both(
    root: Path, old: bytes, new: bytes, name: str, hints: bool = False, layout: str = "loose"
) -> tuple[ObjectStore, Stored]:
    """Store ``old``, then ``new`` from a file; return the store and what put_file returned.
    Without ``hints``, the store forgets that ``new`` may be a version of ``old``."""
    objects = open_store(root / name, chunker=SMALL, layout=layout)
    objects.put_bytes(old)
    if not hints:
        _forget_hints(objects)
    path = root / f"{name}.bin"
    path.write_bytes(new)
    return objects, objects.put_file(path)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4), window=st.sampled_from([3, 5, 16]))
def test_a_new_version_stored_through_maps_is_stored_as_by_reads(
    patient: Path, monkeypatch: pytest.MonkeyPatch, seed: int, edits: int, window: int
) -> None:
    old, new = _versions(seed, edits)
    # many windows (of at least two maximum chunks and a page), cut at their edges
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", window * (64 << 10))
    read_passes = _count_read_passes(monkeypatch)
    root = patient / uuid.uuid4().hex  # a new pair of stores for each example
    mapped_store, mapped = _store_both(root, old, new, "mapped")
    assert read_passes == []  # cut where it lies, under the lease
    with monkeypatch.context() as within:  # this example only
        within.setenv("CASSTORE_MAP_FILES", "0")
        read_store, read = _store_both(root, old, new, "read")
    assert read_passes == [1]
    assert mapped == read and mapped.digest == blake3(new).hexdigest()
    assert mapped_store.recipe(mapped.digest) == read_store.recipe(read.digest)
    assert mapped_store.chunks_written == read_store.chunks_written
    assert mapped_store.get_bytes(mapped.digest) == new


def test_a_mapped_storing_pass_that_stops_is_finished_by_reading(patient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _versions(7, 3)
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", 256 << 10)
    objects = open_store(patient / "store", chunker=SMALL)
    objects.put_bytes(old)
    _forget_hints(objects)
    path = patient / "new.bin"
    path.write_bytes(new)
    windows: list[int] = []
    real_cut = objects.chunker.cut_block

    def cut(block: memoryview, final: bool) -> tuple[list[memoryview], int]:
        windows.append(len(block))
        return real_cut(block, final)

    real_intact = FileLease.intact
    monkeypatch.setattr(objects.chunker, "cut_block", cut)
    # the lease is lost after the mapped pass's first window (as if a writer came)
    monkeypatch.setattr(FileLease, "intact", lambda self: real_intact(self) and not windows)
    stored = objects.put_file(path)
    assert windows[0] <= 256 << 10 and windows[1] > 256 << 10  # one mapped window, then a read block
    assert stored.digest == blake3(new).hexdigest() and stored.size == len(new)
    assert objects.get_bytes(stored.digest) == new


def test_a_writer_during_the_mapped_storing_pass_waits_one_window(patient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _versions(11, 2)
    objects = open_store(patient / "store", chunker=SMALL)
    objects.put_bytes(old)
    _forget_hints(objects)
    path = patient / "new.bin"
    path.write_bytes(new)
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", 256 << 10)
    arrives = _WriterArrives(path)
    windows = []
    real_cut = objects.chunker.cut_block

    def cut_while_a_writer_comes(block: memoryview, final: bool) -> tuple[list[memoryview], int]:
        windows.append(len(block))
        if len(windows) == 2:
            arrives.update(b"")  # the truncating process starts, and the kernel holds it
        return real_cut(block, final)

    monkeypatch.setattr(objects.chunker, "cut_block", cut_while_a_writer_comes)
    with pytest.raises(LocalFileError, match="changed while it was being stored"):
        objects.put_file(path)
    assert arrives.writer is not None and arrives.writer.wait(30) == 0
    assert arrives.writer_was_held
    assert path.stat().st_size == 0
    # the mapped pass stopped after that window (its windows are the small ones); the
    # reading pass saw the file change
    assert len([n for n in windows if 0 < n <= 256 << 10]) == 2
    assert objects.put_bytes(old).digest == blake3(old).hexdigest()  # the store still works


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(BIG, BIG + (1 << 20)), window=st.sampled_from([3, 5, 16]))
def test_a_new_file_stored_through_maps_is_stored_as_by_reads(
    patient: Path, monkeypatch: pytest.MonkeyPatch, seed: int, size: int, window: int
) -> None:
    data = random.Random(seed).randbytes(size)
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", window * (64 << 10))
    read_passes = _count_read_passes(monkeypatch)
    root = patient / uuid.uuid4().hex
    path = root / "new.bin"
    root.mkdir()
    path.write_bytes(data)
    mapped_store = open_store(root / "mapped", chunker=SMALL)
    mapped = mapped_store.put_file(path)
    assert read_passes == []  # cut and hashed where it lies, under the lease
    with monkeypatch.context() as within:
        within.setenv("CASSTORE_MAP_FILES", "0")
        read_store = open_store(root / "read", chunker=SMALL)
        read = read_store.put_file(path)
    assert read_passes == [1]
    assert mapped == read and mapped.digest == blake3(data).hexdigest()
    assert mapped_store.recipe(mapped.digest) == read_store.recipe(read.digest)
    assert mapped_store.chunks_written == read_store.chunks_written
    assert mapped_store.get_bytes(mapped.digest) == data


def test_chunks_as_large_as_a_window_are_cut_window_after_window(patient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose largest chunk is 16 MiB (the most allowed, as large as a mapped window)
    stores a file with no cut point but that size (zeros) in the mapped pass, each window
    going on from where the last one stopped, never cutting the same window again."""
    objects = open_store(patient / "store", chunker=ChunkerParams(min_size=1 << 20, avg_size=4 << 20, max_size=16 << 20))
    read_passes = _count_read_passes(monkeypatch)
    blocks: list[int] = []
    real_cut = objects.chunker.cut_block

    def cut(block: memoryview, final: bool) -> tuple[list[memoryview], int]:
        blocks.append(len(block))
        assert len(blocks) <= 4, "the mapped pass cut the same window again"
        return real_cut(block, final)

    monkeypatch.setattr(objects.chunker, "cut_block", cut)
    data = bytes(40 << 20)
    path = patient / "zeros.bin"
    path.write_bytes(data)
    stored = objects.put_file(path)
    assert read_passes == []
    assert stored.digest == blake3(data).hexdigest()
    assert [n for _, n in objects.recipe(stored.digest).chunks] == [16 << 20, 16 << 20, 8 << 20]
    assert objects.get_bytes(stored.digest) == data


def test_a_progress_callback_never_runs_under_a_lease(patient: Path) -> None:
    """A callback may open the file for writing (here: it does); under this process's own
    lease that open would wait for the lease to time out (45 s). With a callback, files
    are stored by reading them, and a file the callback changed is refused."""
    old, new = _versions(5, 2)
    objects = open_store(patient / "store", chunker=SMALL)
    objects.put_bytes(old)
    for name, data in (("new.bin", new), ("fresh.bin", random.Random(9).randbytes(BIG))):
        path = patient / name
        path.write_bytes(data)
        struck: list[float] = []

        def strike(_n: int) -> None:
            if not struck:
                start = time.monotonic()
                with open(path, "r+b") as w:
                    w.write(b"changed")
                struck.append(time.monotonic() - start)

        with pytest.raises(LocalFileError, match="changed while it was being stored"):
            objects.put_file(path, progress=strike)
        assert struck and struck[0] < 5, f"the callback's open waited {struck[0]:.1f} s for a lease"


# ---- a new version stored by following the recipe of the version before --------------


def _like_passes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """A list that grows by one each time a file is stored by following a similar file's
    recipe: whether that pass went to the end (or stopped, leaving the file to another)."""
    passes: list[bool] = []
    real = passes_mod.StoringPasses.store_like

    def counted(self: passes_mod.StoringPasses, *a: object) -> object:
        result = real(self, *a)  # type: ignore[arg-type]
        passes.append(result is not None)
        return result

    monkeypatch.setattr(passes_mod.StoringPasses, "store_like", counted)
    return passes


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4), kind=st.sampled_from(["resized", "same size", "appended"]),
       window=st.sampled_from([3, 5, 16]))
@pytest.mark.parametrize("layout", ["loose", "packs"])
def test_a_new_version_that_follows_the_recipe_before_is_stored_as_by_reads(
    patient: Path, monkeypatch: pytest.MonkeyPatch, layout: str, seed: int, edits: int, kind: str, window: int
) -> None:
    """Chunks laid where the version before had them and checked by their hash give the
    recipe cutting gives: for an edit that keeps the size (the whole is hashed first, as
    it may be stored), one that does not (one pass, the whole hashed beside it), and
    bytes appended (the last chunk before, cut by the end of the file, is cut again). In
    both layouts: a packs store (the default on S3) follows recipes too."""
    old, new = _versions(seed, edits)
    rng = random.Random(seed)
    if kind == "same size":
        edited = bytearray(old)
        for _ in range(edits):
            at = rng.randrange(64 << 10, BIG - 4096)
            edited[at : at + 100] = rng.randbytes(100)
        new = bytes(edited)
    elif kind == "appended":
        new = old + rng.randbytes(rng.randrange(1, 200_000))
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", window * (64 << 10))
    read_passes = _count_read_passes(monkeypatch)
    like_passes = _like_passes(monkeypatch)
    root = patient / uuid.uuid4().hex
    like_store, like = _store_both(root, old, new, "like", hints=True, layout=layout)
    assert like_passes == [True] and read_passes == []
    with monkeypatch.context() as within:
        within.setenv("CASSTORE_MAP_FILES", "0")
        read_store, read = _store_both(root, old, new, "read", hints=True, layout=layout)
    assert like_passes == [True] and read_passes == [1]
    assert like == read and like.digest == blake3(new).hexdigest()
    assert like_store.recipe(like.digest) == read_store.recipe(read.digest)
    assert like_store.chunks_written == read_store.chunks_written
    assert like_store.get_bytes(like.digest) == new
    # and the new version is a hint for the next one
    first = like_store.recipe(like.digest).chunks[0][0]
    assert (len(new), like.digest) in like_store._hints(first, len(new))


def test_a_hint_to_a_file_that_shares_only_its_first_chunk_costs_time_not_correctness(
    patient: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    old = rng.randbytes(BIG)
    new = old[: 64 << 10] + rng.randbytes(BIG + 5000)  # the same first chunk, nothing after
    like_passes = _like_passes(monkeypatch)
    like_store, like = _store_both(patient, old, new, "like", hints=True)
    plain_store, plain = _store_both(patient, old, new, "plain")
    assert like_passes == [True]
    assert like == plain and like.digest == blake3(new).hexdigest()
    assert like_store.recipe(like.digest) == plain_store.recipe(plain.digest)
    assert like_store.get_bytes(like.digest) == new


def test_a_hint_whose_file_is_gone_is_passed_over(patient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _versions(21, 2)
    objects = open_store(patient / "store", chunker=SMALL)
    gone = objects.put_bytes(old)
    objects.backend.delete(objects.layout.recipe_key(gone.digest))  # as if gc took the file, not its hint
    like_passes = _like_passes(monkeypatch)
    path = patient / "new.bin"
    path.write_bytes(new)
    stored = objects.put_file(path)
    assert like_passes == []  # no recipe to follow: the file is cut as a new one
    assert stored.digest == blake3(new).hexdigest() and objects.get_bytes(stored.digest) == new


@pytest.mark.parametrize("layout", ["loose", "packs"])
def test_a_pass_that_follows_a_recipe_and_loses_its_lease_is_finished_by_reading(
    patient: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    old, new = _versions(13, 2)
    new += b"longer"  # a new size: one pass, the whole hashed beside it
    monkeypatch.setattr(passes_mod, "_MAP_WINDOW", 256 << 10)
    objects = open_store(patient / "store", chunker=SMALL, layout=layout)
    objects.put_bytes(old)
    path = patient / "new.bin"
    path.write_bytes(new)
    like_passes = _like_passes(monkeypatch)
    read_passes = _count_read_passes(monkeypatch)
    maps: list[int] = []
    real_map = FileLease.map

    def counted_map(self: FileLease, offset: int, length: int, ahead: int = 0) -> object:
        maps.append(offset)
        return real_map(self, offset, length, ahead)

    real_intact = FileLease.intact
    monkeypatch.setattr(FileLease, "map", counted_map)
    # the lease is lost once the pass has mapped its second window (as if a writer came)
    monkeypatch.setattr(FileLease, "intact", lambda self: real_intact(self) and len(maps) < 2)
    stored = objects.put_file(path)
    assert like_passes == [False] and read_passes == [1]
    assert stored.digest == blake3(new).hexdigest() and objects.get_bytes(stored.digest) == new
    assert objects.recipe(stored.digest) == objects._passes.store_stream(io.BytesIO(new), None)[1]


def test_a_slow_check_of_gcs_marks_does_not_stop_a_pass_that_follows_a_recipe(
    leased_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a packs store, following a recipe reuses chunks, so the put checks gc's marks: on a
    remote store, round trips. They are made before the pass's first window, so however long
    they take (here longer than a window may), the pass goes on rather than handing the
    file to a pass that cuts it whole."""
    from casstore.objects.layout import CANDIDATES_PREFIX

    old, new = _versions(21, 2)
    new += b"longer"  # a new size: one pass that follows the recipe
    objects = open_store(leased_dir / "store", chunker=SMALL, layout="packs")
    objects.put_bytes(old)
    path = leased_dir / "new.bin"
    path.write_bytes(new)
    real_list = objects.backend.list

    def slow_list(prefix: str = "") -> Any:
        if prefix == CANDIDATES_PREFIX:
            time.sleep(2 * mapped_mod.SLOW)
        return real_list(prefix)

    monkeypatch.setattr(objects.backend, "list", slow_list)
    objects._packs._checked_at = None  # type: ignore[union-attr]  # as at the start of a put a second after the last
    like_passes = _like_passes(monkeypatch)
    stored = objects.put_file(path)
    assert like_passes == [True]
    assert stored.digest == blake3(new).hexdigest() and objects.get_bytes(stored.digest) == new
