"""How the local backend writes: large objects with O_DIRECT where the file system allows it
(ordinary writes elsewhere), create-if-absent with renameat2 where it can (a link elsewhere);
either way the bytes, lengths and outcomes are exact and no temporary file is left."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from casstore.backend import local as local_mod
from casstore.backend.local import DIRECT_MIN, LocalBackend
from casstore.exceptions import StoreUnavailableError
from casstore.objects import open_store

def _direct_supported(d: Path) -> bool:
    if not getattr(os, "O_DIRECT", 0):
        return False
    p = d / "probe"
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    p.unlink()
    return True


@pytest.mark.parametrize("size", [DIRECT_MIN, DIRECT_MIN + 1, 3 * DIRECT_MIN - 4095, (4 << 20) + 123])
def test_large_objects_round_trip_with_their_exact_length(tmp_path: Path, size: int) -> None:
    backend = LocalBackend(tmp_path / "store")
    data = os.urandom(size)
    assert backend.put_blob("chunks/ab/cd/x", memoryview(data)[: size])
    path = tmp_path / "store" / "chunks" / "ab" / "cd" / "x"
    assert path.stat().st_size == size
    assert backend.get("chunks/ab/cd/x") == data
    assert backend.get_range("chunks/ab/cd/x", 5, 17) == data[5:17]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_direct_writes_are_used_where_supported(tmp_path: Path) -> None:
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    backend = LocalBackend(tmp_path / "store")
    backend.put_blob("chunks/00/00/big", os.urandom(DIRECT_MIN + 10))
    assert backend._direct, "the backend gave up direct writes on a file system that supports them"


@pytest.mark.parametrize("refused_at", ["open", "write"])
def test_a_file_system_that_refuses_o_direct_gets_ordinary_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_at: str
) -> None:
    """Some file systems refuse O_DIRECT when the file is opened, others on the first write
    (EINVAL either way): the object is then written through the page cache, and so are the
    next ones."""
    real_open, real_write = os.open, os.write
    direct_fds: set[int] = set()

    def open_(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECT:
            if refused_at == "open":
                raise OSError(22, "Invalid argument")
            fd = real_open(path, flags, *args)
            direct_fds.add(fd)
            return fd
        fd = real_open(path, flags, *args)
        direct_fds.discard(fd)  # a number reused after a direct file was closed
        return fd

    def write(fd, data):  # type: ignore[no-untyped-def]
        if fd in direct_fds:
            raise OSError(22, "Invalid argument")
        return real_write(fd, data)

    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("no O_DIRECT on this platform")
    monkeypatch.setattr(local_mod.os, "open", open_)
    monkeypatch.setattr(local_mod.os, "write", write)
    objects = open_store(tmp_path / "store")
    data = os.urandom(3 << 20)
    digest, size = objects.put_bytes(data)
    objects.flush()
    assert objects.backend._direct is False  # type: ignore[attr-defined]
    assert objects.get_bytes(digest) == data and size == len(data)
    assert not [p for p in (tmp_path / "store").rglob(".tmp-*")], "a temporary file was left"


@pytest.mark.parametrize("off", ["0", "off"])
def test_casstore_direct_io_0_turns_direct_writes_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    monkeypatch.setenv("CASSTORE_DIRECT_IO", off)
    opened_direct = []
    real_open = os.open

    def spy(path, flags, *args):  # type: ignore[no-untyped-def]
        if flags & getattr(os, "O_DIRECT", 0):
            opened_direct.append(path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(local_mod.os, "open", spy)
    objects = open_store(tmp_path / "store")
    data = os.urandom(3 << 20)
    digest, _ = objects.put_bytes(data)
    assert objects.get_bytes(digest) == data
    assert opened_direct == []


def test_a_failed_direct_write_leaves_no_object_and_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path / "store")
    if not backend._direct:
        pytest.skip("no O_DIRECT here")

    real_write = os.write
    writes = []

    def full_at_the_last_block(fd: int, data: memoryview) -> int:
        """The whole blocks are written directly; the disk fills up at the last part block."""
        writes.append(len(data))
        if len(writes) > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(local_mod.os, "write", full_at_the_last_block)
    with pytest.raises(Exception, match="no space left"):
        backend.put_blob("chunks/ab/cd/y", os.urandom(DIRECT_MIN * 2 + 100))
    assert writes == [DIRECT_MIN * 2, 100]
    d = tmp_path / "store" / "chunks" / "ab" / "cd"
    assert list(d.iterdir()) == []


def _renameat2_refused(*args: object) -> int:
    """A file system without RENAME_NOREPLACE: renameat2 fails with EINVAL."""
    import ctypes
    import errno

    ctypes.set_errno(errno.EINVAL)
    return -1


@pytest.mark.parametrize("noreplace", ["renameat2", "refused"])
def test_create_if_absent_publishes_once_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noreplace: str
) -> None:
    if noreplace == "refused":
        monkeypatch.setattr(local_mod, "_RENAMEAT2", _renameat2_refused)
    backend = LocalBackend(tmp_path / "store")
    if noreplace == "renameat2" and not backend._noreplace:
        pytest.skip("no renameat2 here")
    assert backend.put_if_absent("runs/r/artifacts/a", b"first") is True
    assert backend.put_if_absent("runs/r/artifacts/a", b"second") is False
    assert backend.get("runs/r/artifacts/a") == b"first"
    assert backend._noreplace is (noreplace == "renameat2")
    assert backend.put_if_absent("runs/r/artifacts/b", b"third") is True  # the fallback keeps working
    assert sorted(p.name for p in (tmp_path / "store" / "runs" / "r" / "artifacts").iterdir()) == ["a", "b"]


def test_a_temporary_name_left_by_a_killed_writer_does_not_block_a_write(tmp_path: Path) -> None:
    """Temporary names come from a per-process prefix and a counter; a leftover file that
    happens to hold the next name (a writer killed mid-write, a reused pid) is stepped around."""
    backend = LocalBackend(tmp_path / "store")
    d = tmp_path / "store" / "chunks" / "ab"
    d.mkdir(parents=True)
    names = local_mod._TMP_NAMES
    upcoming = f"{names.prefix}{next(names.counter) + 1}"  # the name the next write will try
    (d / upcoming).write_bytes(b"left over")
    assert backend.put_blob("chunks/ab/x", b"content")
    assert backend.put_if_absent("chunks/ab/y", b"record")
    assert backend.get("chunks/ab/x") == b"content" and backend.get("chunks/ab/y") == b"record"
    assert (d / upcoming).read_bytes() == b"left over", "another writer's temporary file was touched"
    assert sorted(p.name for p in d.iterdir()) == sorted(["x", "y", upcoming])


def test_a_forked_child_names_its_temporary_files_apart_from_its_parent(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its prefix and exits at once
        os.close(read_end)
        os.write(write_end, local_mod._TMP_NAMES.prefix.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        child_prefix = r.read().decode()
    os.waitpid(pid, 0)
    assert child_prefix.startswith(local_mod.TMP_PREFIX)
    assert child_prefix != local_mod._TMP_NAMES.prefix


def test_prefetch_never_fails_and_leaves_objects_as_they_are(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    backend.put_blob("chunks/ab/x", b"bytes")
    backend.prefetch(["chunks/ab/x", "chunks/ab/missing", "chunks/zz/y"])  # a missing one is reported when read
    assert backend.get("chunks/ab/x") == b"bytes"
    assert sorted(p.name for p in (tmp_path / "store" / "chunks" / "ab").iterdir()) == ["x"]


def test_a_local_read_of_many_chunks_asks_for_each_ahead_of_reading_it(tmp_path: Path) -> None:
    """Cold chunks are read ahead (posix_fadvise WILLNEED) a window in advance: each is
    prefetched before it is read, never more than the window ahead, in order (chunks of
    their own: a loose store)."""
    from casstore.objects import reading as reading_mod

    objects = open_store(tmp_path / "s", layout="loose")
    data = random.Random(12).randbytes(12 << 20)  # fixed bytes: a fixed number of chunks (random ones gave 8 once)
    digest = objects.put_bytes(data).digest
    chunks = objects.recipe(digest).chunks
    assert len(chunks) > reading_mod._PREFETCH // 2
    events: list[tuple[str, str]] = []
    real_prefetch, real_get_into = objects.backend.prefetch, objects.backend.get_into

    def prefetch(keys: list[str]) -> None:
        events.extend(("prefetch", k) for k in keys)
        real_prefetch(keys)

    def get_into(key: str, buf: bytearray) -> bytes | bytearray:
        events.append(("get", key))
        return real_get_into(key, buf)

    objects.backend.prefetch = prefetch  # type: ignore[method-assign]
    objects.backend.get_into = get_into  # type: ignore[method-assign]
    assert b"".join(objects.read_chunks(chunks)) == data
    keys = [objects.layout.chunk_key(d) for d, _ in chunks]
    fetched = [k for e, k in events if e == "prefetch"]
    assert fetched == keys, "every chunk is prefetched once, in order"
    for i, k in enumerate(keys):
        read_at = events.index(("get", k))
        assert events.index(("prefetch", k)) < read_at, f"chunk {i} was read before it was asked for"
        ahead = sum(1 for e, _ in events[:read_at] if e == "prefetch") - i
        assert ahead <= reading_mod._PREFETCH


@pytest.mark.parametrize("written", [3, local_mod.FSYNC_MAX, local_mod.FSYNC_MAX + 1, 40])
def test_a_barrier_syncs_its_own_few_files_and_the_file_system_for_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int
) -> None:
    """A barrier over a few new objects flushes those files and the directories on their
    paths (not whatever else waits on the file system, such as a model file just saved);
    over more, one syncfs of the file system."""
    synced: list[str] = []
    real_fsync = os.fsync
    whole: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(local_mod.os, "fsync", fsync)
    if local_mod._SYNCFS is not None:
        real_syncfs = local_mod._SYNCFS
        monkeypatch.setattr(local_mod, "_SYNCFS", lambda fd: whole.append(fd) or real_syncfs(fd))
    root = tmp_path / "store"
    backend = LocalBackend(root)
    keys = [f"chunks/{i:02x}/obj{i}" for i in range(written)]
    for k in keys:
        backend.put_blob(k, b"data")
    backend.flush()
    if written <= local_mod.FSYNC_MAX or local_mod._SYNCFS is None:
        assert not whole
        assert {str(root / k) for k in keys} <= set(synced)
        assert {str(root / "chunks"), str(root)} <= set(synced)  # new directories reach the disk too
        assert all(str(root / os.path.dirname(k)) in synced for k in keys)
    else:
        assert len(whole) == 1 and not synced
    synced.clear()
    backend.flush()  # nothing written since: nothing to do
    assert not synced and len(whole) <= 1


def test_a_barrier_waits_for_every_fsync_it_makes_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fsync calls of a barrier are made together (one journal commit for all that
    wait at once), and the barrier returns only once each has returned; one that fails
    fails the barrier, and the next barrier syncs those files again."""
    import threading
    import time as time_mod

    real_fsync = os.fsync
    lock = threading.Lock()
    running, most, done = [0], [0], []
    fail = [True]

    def slow_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time_mod.sleep(0.05)
        with lock:
            running[0] -= 1
        if fail[0] and path.endswith("obj3"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)
        done.append(path)

    monkeypatch.setattr(local_mod.os, "fsync", slow_fsync)
    root = tmp_path / "store"
    backend = LocalBackend(root)
    keys = [f"chunks/{i:02x}/obj{i}" for i in range(6)]
    for k in keys:
        backend.put_blob(k, b"data")
    with pytest.raises(StoreUnavailableError, match="durability barrier failed"):
        backend.flush()
    assert running[0] == 0, "no fsync still running once the barrier has returned"
    fail[0] = False
    done.clear()
    backend.flush()
    assert running[0] == 0
    assert {str(root / k) for k in keys} <= set(done), "the files of the failed barrier are synced by the next"
    assert most[0] > 1, "the calls were made together"


@pytest.mark.skipif(local_mod._SYNCFS is None, reason="no syncfs on this system")
def test_a_barrier_whose_syncfs_fails_syncs_every_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed syncfs is not taken for a flush: the barrier falls back to sync()."""
    synced: list[str] = []
    monkeypatch.setattr(local_mod, "_SYNCFS", lambda fd: -1)
    monkeypatch.setattr(local_mod.os, "sync", lambda: synced.append("sync"))
    backend = LocalBackend(tmp_path / "store")
    for i in range(local_mod.FSYNC_MAX + 1):
        backend.put_blob(f"chunks/{i:02x}/obj{i}", b"data")
    backend.flush()
    assert synced == ["sync"]


def test_a_barrier_on_a_store_that_is_gone_says_so(tmp_path: Path) -> None:
    root = tmp_path / "store"
    backend = LocalBackend(root)
    for i in range(local_mod.FSYNC_MAX + 1):
        backend.put_blob(f"chunks/{i:02x}/obj{i}", b"data")
    shutil.rmtree(root)
    with pytest.raises(StoreUnavailableError, match="durability barrier failed"):
        backend.flush()


def test_a_read_into_a_buffer_never_gives_bytes_it_did_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is shorter when read than its size said (it shrank between the two)
    gives the bytes read, not the rest of the buffer's old memory; the store's length
    check then refuses the chunk."""
    backend = LocalBackend(tmp_path / "store")
    backend.put_blob("chunks/ab/x", b"0123456789")
    real_fstat = os.fstat

    def fstat_before_it_shrank(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        fields = list(st)
        fields[6] = 16  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(local_mod.os, "fstat", fstat_before_it_shrank)
    buf = bytearray(b"S" * 16)
    got = backend.get_into("chunks/ab/x", buf)
    assert bytes(got) == b"0123456789"
    assert got is not buf


def test_a_read_into_a_buffer_of_the_object_size_fills_that_buffer(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    data = random.Random(3).randbytes(3 << 20)
    backend.put_blob("chunks/ab/x", data)
    buf = bytearray(len(data))
    assert backend.get_into("chunks/ab/x", buf) is buf
    assert buf == data


@pytest.mark.parametrize("n", [0, 1, 4095, 1 << 20])
def test_an_unfilled_buffer_has_the_size_asked_and_is_writable(n: int) -> None:
    from casstore._buffers import unfilled

    buf = unfilled(n)
    assert type(buf) is bytearray and len(buf) == n
    buf[:] = b"\x01" * n
    assert buf.count(1) == n
    with pytest.raises(ValueError):
        unfilled(-1)


def test_a_barrier_at_interpreter_exit_syncs_its_files_one_by_one(tmp_path: Path) -> None:
    """At exit (a run left open is ended then) no new threads may be started: the barrier
    makes its calls one after another instead of failing."""
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "from casstore.backend.local import LocalBackend\n"
        "backend = LocalBackend(sys.argv[1])\n"
        "def end():\n"
        "    for i in range(5):\n"
        "        backend.put_blob(f'chunks/{i:02x}/obj{i}', b'data')\n"
        "    backend.flush()\n"
        "    print('flushed', flush=True)\n"
        "atexit.register(end)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "flushed", out.stderr
