"""A full disk does not block the store: a log that fails for want of space removes what
it alone wrote (not what another writer reused meanwhile), says how much it needed and
how to make room, and the next log that fits succeeds; `gc --no-writers` reclaims
unreferenced data in one run when no one writes, and refuses when it sees a writer.
Tested on a size-limited local backend and on a small tmpfs."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from s3_server import FaultProxy, S3Target

from casstore.backend import LocalBackend
from casstore.cli import cli
from casstore.exceptions import RunStateError, StoreFullError
from casstore.maintenance.gc import collect_garbage
from casstore.maintenance.scan import scan_store
from casstore.maintenance.verify import verify_store
from casstore.objects import ChunkerParams, open_objects
from casstore.runs import RunStore

SMALL = ChunkerParams(min_size=16 << 10, avg_size=64 << 10, max_size=256 << 10)
MiB = 1 << 20


def used(root: str) -> int:
    total = 0
    for p in Path(root).rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:
            continue  # another thread's temp file, renamed into place since it was listed
    return total


class Quota(LocalBackend):
    """A local store limited to ``limit`` bytes of objects, as a full disk refuses writes;
    ``on_full`` runs when the first write is refused (another writer's doing, meanwhile)."""

    def __init__(self, root: str, limit: int) -> None:
        super().__init__(root)
        self.limit = limit
        self.on_full: Callable[[], None] | None = None

    def _write_tmp(self, final: str, data: bytes | memoryview) -> str:
        if used(self.root) + len(data) > self.limit:
            hook, self.on_full = self.on_full, None
            if hook:
                hook()
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._write_tmp(final, data)

    def free_bytes(self) -> int | None:
        return max(0, self.limit - used(self.root))


def quota_store(root: Path, limit: int) -> RunStore:
    return RunStore(open_objects(Quota(str(root), limit), chunker=SMALL))


def content(store: RunStore) -> dict[str, set[str]]:
    return scan_store(store.backend, store.objects.layout).content


def test_a_log_into_a_full_store_removes_what_it_wrote_and_the_next_log_fits(tmp_path: Path) -> None:
    rng = random.Random(1)
    store = quota_store(tmp_path / "s", 3 * MiB)
    h = store.create_run(store.get_or_create_experiment("full"))
    h.log_bytes("first.bin", rng.randbytes(MiB + 5))
    before, space = content(store), used(str(tmp_path / "s"))
    with pytest.raises(StoreFullError) as caught:
        h.log_bytes("second.bin", rng.randbytes(3 * MiB))
    msg = str(caught.value)
    assert "needs up to 3.0 MiB" in msg and "MiB are free" in msg and "casstore gc" in msg and "--no-writers" in msg
    assert caught.value.needed == 3 * MiB and caught.value.free is not None
    assert content(store) == before, "what the failed log wrote is gone"
    assert used(str(tmp_path / "s")) <= space + 4096  # (a directory or two may stay)
    h.log_bytes("third.bin", rng.randbytes(MiB))  # fits: nothing of the failed log blocks it
    h.end()
    view = store.get_run(h.run_id)
    assert set(view.artifacts) == {"first.bin", "third.bin"}
    assert verify_store(store).ok


def test_files_that_fail_together_leave_nothing(tmp_path: Path) -> None:
    rng = random.Random(2)
    store = quota_store(tmp_path / "s", 2 * MiB)
    files = []
    for i in range(10):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rng.randbytes(300_000))
        files.append((f"dir/f{i}.bin", str(p)))
    h = store.create_run("0")
    before = content(store)
    with pytest.raises(StoreFullError, match=r"logging 10 file\(s\) needs up to 2\.9 MiB"):
        h.log_files(files, workers=4)
    assert content(store) == before and not store.get_run(h.run_id).artifacts
    h.log_files(files[:4])
    assert len(store.get_run(h.run_id).artifacts) == 4


def test_what_another_writer_reused_meanwhile_stays(tmp_path: Path) -> None:
    """A writer that deduplicates against an object touches it (gc's protocol): the failed
    log's clean-up sees the touch and keeps that object, removing only the rest."""
    rng = random.Random(3)
    store = quota_store(tmp_path / "s", 2 * MiB)
    backend = store.backend
    assert isinstance(backend, Quota)
    reused: list[str] = []

    def another_writer_reuses_what_is_there() -> None:
        chunks = sorted(content(store)["chunks"])
        for d in chunks[: len(chunks) // 2]:
            key = store.objects.layout.chunk_key(d)
            assert backend.touch(key)
            reused.append(d)

    backend.on_full = another_writer_reuses_what_is_there
    h = store.create_run("0")
    with pytest.raises(StoreFullError):
        h.log_bytes("big.bin", rng.randbytes(3 * MiB))
    left = content(store)["chunks"]
    assert reused and left == set(reused)


def test_a_touch_always_moves_the_mtime_forward(tmp_path: Path) -> None:
    b = LocalBackend(str(tmp_path / "s"))
    b.put_blob("chunks/ab/x", b"data")
    seen = [b.info("chunks/ab/x").mtime]
    for _ in range(20):  # far faster than the file system clock ticks
        b.touch("chunks/ab/x")
        seen.append(b.info("chunks/ab/x").mtime)
    assert all(later > earlier for earlier, later in zip(seen, seen[1:]))


def test_gc_no_writers_reclaims_in_one_run_and_refuses_beside_a_writer(tmp_path: Path) -> None:
    rng = random.Random(4)
    root = tmp_path / "s"
    store = quota_store(root, 64 * MiB)
    keep = store.create_run("0")
    keep.log_bytes("keep.bin", rng.randbytes(MiB))
    keep.end()
    gone = store.create_run("0")
    gone.log_bytes("gone.bin", rng.randbytes(2 * MiB))
    gone.end()
    store.delete_run(gone.run_id)
    time.sleep(1.1)  # older than the slack of one second
    writing = store.create_run("0")
    writing.log_metric("loss", 1.0)  # a live writer: it holds its metric log
    with pytest.raises(RunStateError, match="a writer is active.*nothing was deleted"):
        collect_garbage(store.backend, no_writers=True)
    writing.end()  # ended: its log is gone
    r = collect_garbage(store.backend, no_writers=True)
    assert r.ok and r.deleted["chunks"] > 0 and r.deleted_bytes >= 2 * MiB and r.marked_total == 0
    assert verify_store(store).ok and store.artifact_bytes(keep.run_id, store.get_run(keep.run_id).artifacts["keep.bin"])
    r = CliRunner().invoke(cli, ["gc", "--no-writers", "--store", str(root)])
    assert r.exit_code == 0 and "deleted 0 objects" in r.stdout


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 8 MiB (a tmpfs; needs the privilege to mount one)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the size-limited backend tests cover the logic")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_on_a_full_tmpfs(tmpfs: Path, tmp_path: Path) -> None:
    rng = random.Random(5)
    root = tmpfs / "store"
    store = RunStore(open_objects(LocalBackend(str(root)), chunker=SMALL))
    a = store.create_run("0")
    a.log_bytes("a.bin", rng.randbytes(5 * MiB))
    a.end()
    before = content(store)
    b = store.create_run("0")
    big = tmp_path / "b.bin"
    big.write_bytes(rng.randbytes(5 * MiB))
    with pytest.raises(StoreFullError, match="no space is left on its device.*casstore gc"):
        b.log_file("b.bin", big)
    assert content(store) == before
    store.delete_run(a.run_id)
    time.sleep(1.1)
    r = CliRunner().invoke(cli, ["gc", "--no-writers", "--store", str(root)])
    assert r.exit_code == 0, r.output
    b.log_file("b.bin", big)  # the space is back
    b.end()
    assert verify_store(store).ok
    assert os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize > MiB


def test_recordings_of_what_a_log_creates_nest(tmp_path: Path) -> None:
    """A log records what it creates (to remove it if it fails) inside any recording its
    caller keeps: each sees every object created within it."""
    from casstore.backend.base import recording_creations

    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(6).randbytes(3 * MiB))
    store = quota_store(tmp_path / "s", 64 * MiB)
    h = store.create_run("0")
    with recording_creations() as outer:
        h.log_file("big.bin", big)
        with recording_creations() as inner:
            h.log_bytes("more.bin", random.Random(7).randbytes(MiB))
    made = content(store)
    keys = {store.objects.layout.key(kind, d) for kind, ds in made.items() for d in ds}
    assert {k for k, _m in outer} == keys and 0 < len(inner) < len(outer)


def test_a_full_s3_service_says_what_stays_and_how_to_reclaim_it(s3_env: S3Target, s3_proxy: FaultProxy) -> None:
    """On S3 a failed log's objects cannot be removed at once without risking a concurrent
    writer's deduplication (docs/reliability.md): the error says they stay and what frees
    them; a log again, once there is room, sends only what is missing, and gc frees the rest."""
    from casstore.objects import open_store
    from casstore.runs import RunStore

    url = s3_env.fresh_url()
    # loose chunks: what stays is counted per chunk (a pack that fails is one object, sent again whole)
    store = RunStore(open_store(url, {"endpoint_url": s3_proxy.endpoint_url}, layout="loose"))
    h = store.create_run(store.get_or_create_experiment("full"))
    data = random.Random(4).randbytes(3 * MiB)
    s3_proxy.full_after = 1
    with pytest.raises(StoreFullError) as caught:
        h.log_bytes("big.bin", data)
    msg = str(caught.value)
    assert f"the store {url} is full (the service is out of space)" in msg
    assert "XMinioStorageFull" in str(caught.value.__cause__)
    assert "stays in the store" in msg and "casstore gc --no-writers" in msg and "sends only what is missing" in msg
    left = content(store)["chunks"]
    assert left, "the chunks stored before the service filled up stay (for the next log or for gc)"
    s3_proxy.full_after = None
    s3_proxy.reset_counts()
    h.log_bytes("big.bin", data)
    assert s3_proxy.count("PUT", "chunks") <= len(content(store)["chunks"]) - len(left) + 1  # only what was missing
    assert store.artifact_bytes(h.run_id, store.get_run(h.run_id).artifacts["big.bin"]) == data
