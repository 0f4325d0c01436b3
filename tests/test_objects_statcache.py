"""The stat cache: a large local file this machine hashed, unchanged since, is not read again.

What a user relies on: re-logging an unchanged large file is immediate; a file that was
changed in any way (even with its modification time put back) is hashed again; a
digest from the cache only ever says "the store has this already", so a store that lacks
the content (new, collected, damaged) gets it stored from the file's bytes; a cache that
cannot be used costs speed, never a failed put.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from blake3 import blake3
from tracking_helpers import tracking  # noqa: F401  (fixture)

import casstore
from casstore.objects import ObjectStore, open_store
from casstore.objects import statcache
from casstore.objects.statcache import MIN_SIZE, StatCache, default_stat_cache

SIZE = MIN_SIZE + 123_457  # a few chunks of the default chunker, above the cache's minimum


def _write(path: Path, seed: bytes, size: int = SIZE) -> str:
    data = blake3(seed).digest(length=size)
    path.write_bytes(data)
    return blake3(data).hexdigest()


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (the tests' files are a moment old; the real
    settling time is tested on its own below)."""
    monkeypatch.setattr(statcache, "SETTLE_NS", 0)


@pytest.fixture
def cache(tmp_path: Path) -> StatCache:
    c = StatCache(str(tmp_path / "cache" / "stat.sqlite3"))
    yield c
    c.close()


def _no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, any read of a file for hashing or storing fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was read again")

    monkeypatch.setattr(ObjectStore, "_put_regular", refuse)


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, cache: StatCache, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    objects = open_store(tmp_path / "store", stat_cache=cache)
    assert objects.put_file(src).digest == digest
    assert cache.lookup(os.stat(src)) == digest
    _no_hashing(monkeypatch)
    seen: list[int] = []
    again = objects.put_file(src, progress=seen.append)
    assert again == (digest, SIZE)
    assert sum(seen) == SIZE
    assert objects.get_bytes(digest) == src.read_bytes()


def test_a_file_changed_with_its_times_put_back_is_hashed_again(tmp_path: Path, cache: StatCache, settled: None) -> None:
    src = tmp_path / "model.bin"
    first = _write(src, b"one")
    objects = open_store(tmp_path / "store", stat_cache=cache)
    assert objects.put_file(src).digest == first
    st = os.stat(src)
    with open(src, "r+b") as f:  # same size, one byte different, mtime restored
        f.seek(SIZE // 2)
        byte = f.read(1)
        f.seek(SIZE // 2)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = os.stat(src)
    assert (changed.st_size, changed.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert cache.lookup(changed) is None  # the change time tells
    second = objects.put_file(src).digest
    assert second == blake3(src.read_bytes()).hexdigest() != first
    assert objects.get_bytes(second) == src.read_bytes()


def test_a_file_replaced_under_its_name_is_hashed_again(tmp_path: Path, cache: StatCache, settled: None) -> None:
    src = tmp_path / "model.bin"
    objects = open_store(tmp_path / "store", stat_cache=cache)
    _write(src, b"one")
    objects.put_file(src)
    tmp = tmp_path / "model.bin.tmp"
    second = _write(tmp, b"two")
    os.replace(tmp, src)
    assert objects.put_file(src).digest == second


def test_a_file_written_just_now_is_not_recorded(tmp_path: Path, cache: StatCache) -> None:
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    objects = open_store(tmp_path / "store", stat_cache=cache)
    assert objects.put_file(src).digest == digest
    # it may still be written in the clock tick it was hashed in
    assert cache.lookup(os.stat(src)) is None


def test_small_files_are_not_recorded(tmp_path: Path, cache: StatCache, settled: None) -> None:
    src = tmp_path / "small.bin"
    _write(src, b"small", MIN_SIZE - 1)
    open_store(tmp_path / "store", stat_cache=cache).put_file(src)
    assert cache.lookup(os.stat(src)) is None


@pytest.mark.parametrize("lost", ["a new store", "a chunk", "the recipe"])
def test_a_store_without_the_content_gets_it_from_the_file(tmp_path: Path, cache: StatCache, settled: None, lost: str) -> None:
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    objects = open_store(tmp_path / "store", stat_cache=cache)
    objects.put_file(src)
    if lost == "a new store":
        objects = open_store(tmp_path / "other", stat_cache=cache)
    else:
        key = objects.layout.recipe_key(digest)
        if lost == "a chunk":
            key = objects.layout.chunk_key(objects.chunk_digests(digest)[1])
        objects.backend.delete(key)
    before = objects.chunks_written
    assert objects.put_file(src) == (digest, SIZE)
    assert objects.chunks_written > before or lost == "the recipe"
    assert objects.get_bytes(digest) == src.read_bytes()


def test_a_wrong_record_never_names_new_content(tmp_path: Path, cache: StatCache, settled: None) -> None:
    """Even a record that lies (here forged) cannot make the store name the file's bytes by
    another digest: a digest from the cache only ever finds content already stored."""
    src = tmp_path / "model.bin"
    real = _write(src, b"one")
    forged = "ab" * 32
    assert cache.record(os.stat(src), forged, started_ns=2**62)
    objects = open_store(tmp_path / "store", stat_cache=cache)
    assert objects.put_file(src).digest == real
    assert not objects.has_file(forged)
    assert cache.lookup(os.stat(src)) == real  # hashed again, and the record corrected


def test_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSTORE_STAT_CACHE", "0")
    assert default_stat_cache() is None
    assert open_store(tmp_path / "a").stat_cache is None
    monkeypatch.delenv("CASSTORE_STAT_CACHE")
    assert open_store(tmp_path / "b").stat_cache is not None
    assert open_store(tmp_path / "c", stat_cache=False).stat_cache is None


def test_where_it_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSTORE_CACHE_DIR", str(tmp_path / "mine"))
    assert statcache.cache_dir() == str(tmp_path / "mine")
    monkeypatch.delenv("CASSTORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert statcache.cache_dir() == str(tmp_path / "xdg" / "casstore")
    cache = default_stat_cache()
    assert cache is not None and cache.path == str(tmp_path / "xdg" / "casstore" / statcache.FILE_NAME)


@pytest.mark.parametrize("broken", ["a directory at its name", "garbage at its name", "an unwritable parent"])
def test_a_cache_that_cannot_be_used_costs_speed_not_a_put(
    tmp_path: Path, settled: None, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    where = tmp_path / "cache" / "stat.sqlite3"
    if broken == "a directory at its name":
        where.mkdir(parents=True)
    elif broken == "garbage at its name":
        where.parent.mkdir()
        where.write_bytes(b"this is not a database" * 100)
    else:
        where.parent.parent.joinpath("cache").write_bytes(b"a file where the directory should be")
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    objects = open_store(tmp_path / "store", stat_cache=StatCache(str(where)))
    with caplog.at_level(logging.WARNING, logger="casstore.objects.statcache"):
        assert objects.put_file(src).digest == digest
        assert objects.put_file(src).digest == digest
    assert "cannot be used" in caplog.text and "every file is hashed" in caplog.text
    assert caplog.text.count("cannot be used") == 1  # said once, not on every file


def test_another_process_finds_what_this_one_hashed(tmp_path: Path, settled: None) -> None:
    """One cache per user, shared by processes (the tests' own, see conftest)."""
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    objects = open_store(tmp_path / "store")
    assert objects.stat_cache is not None
    objects.put_file(src)
    child = textwrap.dedent(
        """
        import os, sys
        from casstore.objects.statcache import default_stat_cache
        print(default_stat_cache().lookup(os.stat(sys.argv[1])))
        """
    )
    out = subprocess.run([sys.executable, "-c", child, str(src)], capture_output=True, text=True, check=True, env=os.environ.copy())
    assert out.stdout.strip() == digest


def test_rows_unused_for_long_are_dropped(tmp_path: Path, cache: StatCache, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    assert cache.record(os.stat(src), digest, started_ns=2**62)
    cache.close()
    later = statcache.time.time_ns() + (statcache.KEEP_DAYS + 1) * 86_400 * 10**9
    monkeypatch.setattr(statcache.time, "time_ns", lambda: later)
    assert StatCache(cache.path).lookup(os.stat(src)) is None


def test_logging_an_unchanged_file_in_a_new_run(tracking: str, tmp_path: Path, settled: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's case: the same large file (a dataset, a base model) logged in run after run."""
    src = tmp_path / "data.bin"
    digest = _write(src, b"data")
    with casstore.start_run():
        casstore.log_artifact(str(src))
    _no_hashing(monkeypatch)
    with casstore.start_run() as run:
        casstore.log_artifact(str(src))
    [entry] = casstore.MlflowClient().list_artifacts(run.info.run_id)
    assert (entry.path, entry.digest, entry.file_size) == ("data.bin", digest, SIZE)


def _put_in_child(store: str, src: str, cache_path: str, out: "multiprocessing.Queue[object]") -> None:
    cache = _FORKED[cache_path]
    try:
        out.put((cache.lookup(os.stat(src)), open_store(store, stat_cache=cache).put_file(src).digest))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put(repr(e))


_FORKED: dict[str, StatCache] = {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_uses_its_own_connection(tmp_path: Path, cache: StatCache, settled: None) -> None:
    """A worker forked from a process that used the cache (a data loader, a pool) uses it too."""
    import multiprocessing

    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    open_store(tmp_path / "store", stat_cache=cache).put_file(src)
    assert cache.lookup(os.stat(src)) == digest  # the parent's connection is open
    _FORKED[cache.path] = cache
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_put_in_child, args=(str(tmp_path / "store"), str(src), cache.path, out))
    child.start()
    got = out.get(timeout=60)
    child.join(60)
    assert got == (digest, digest) and child.exitcode == 0
    assert cache.lookup(os.stat(src)) == digest  # and the parent's still works


def test_a_database_locked_by_another_process_is_a_miss_then_a_new_try(tmp_path: Path, cache: StatCache, settled: None) -> None:
    """Many training processes starting at once: one that finds the database locked hashes
    its file and uses the cache on its next one, with no warning."""
    import sqlite3

    src = tmp_path / "model.bin"
    digest = _write(src, b"one")
    os.makedirs(os.path.dirname(cache.path))
    holder = sqlite3.connect(cache.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what a writer in another process holds
    try:
        assert cache.lookup(os.stat(src)) is None
        assert not cache._broken
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    objects = open_store(tmp_path / "store", stat_cache=cache)
    assert objects.put_file(src).digest == digest
    assert cache.lookup(os.stat(src)) == digest
