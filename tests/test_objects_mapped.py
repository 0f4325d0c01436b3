"""Hashing a stored file again in place (memory maps under a read lease): the digest is
the file's, a writer never meets a mapped file, and where no lease can be had the file
is read instead."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import casstore.objects.store as store_mod
from casstore.exceptions import LocalFileError
from casstore.objects import open_store
from casstore.objects.mapped import hash_mapped, leases_supported

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

    def hash_while_a_writer_comes(fd: int, hasher: object) -> int:
        writers.append(_WriterArrives(path, hasher))
        return hash_mapped(fd, writers[-1], first=4 << 20)

    monkeypatch.setattr(store_mod, "hash_mapped", hash_while_a_writer_comes)
    with pytest.raises(LocalFileError, match="changed while it was being stored"):
        objects.put_file(path)
    w = writers[0]
    assert w.writer is not None and w.writer.wait(30) == 0
    assert w.writer_was_held
    assert path.stat().st_size == 0
