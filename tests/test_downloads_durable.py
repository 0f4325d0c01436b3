"""A file casstore reports written to a user's disk survives a power loss.

Downloads (`download_artifacts`, `casstore get`), a model loaded with ``dst_path`` and
predictions written to a file go through one helper: a temp file beside the destination,
``fsync`` of it, a rename into place, then ``fsync`` of the directory (and of the parent of
each directory the write created). Without the first ``fsync`` a power loss can leave an
empty or partial file under the final name (the rename reached the disk, the data did
not); without the directory's, the file can vanish. A power loss cannot be simulated in a
test; the order of the calls the kernel is asked for is what these tests check.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from casstore.exceptions import LocalFileError
from casstore.objects import open_store
from casstore.runs import RunStore

Event = tuple[str, str, str]


@pytest.fixture
def syscalls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    """Every ``fsync`` (with the path of its descriptor) and ``rename``/``replace`` made."""
    events: list[Event] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), ""))
        real_fsync(fd)

    def replace(src: str, dst: str, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

    def rename(src: str, dst: str, **kw: object) -> None:
        real_rename(src, dst, **kw)  # type: ignore[arg-type]
        events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.delenv("CASSTORE_DURABLE", raising=False)
    yield events


def _assert_durable(events: list[Event], dest: Path, made: Path | None = None) -> None:
    """``dest`` was renamed into place from a temp file that was synced first, and its
    directory (and ``made``'s parent, for a directory the write created) synced after."""
    dest = Path(os.path.realpath(dest))
    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(dest)]
    assert renames, f"{dest} was not renamed into place: {events}"
    i = renames[-1]
    tmp = events[i][1]
    assert os.path.dirname(tmp) == str(dest.parent), "the temp file is not beside the destination"
    assert ("fsync", tmp, "") in events[:i], f"{dest}'s data was not synced before the rename: {events}"
    after = [e[1] for e in events[i + 1:] if e[0] == "fsync"]
    assert str(dest.parent) in after, f"{dest.parent} was not synced after the rename: {events}"
    if made is not None:
        made = Path(os.path.realpath(made))
        assert str(made.parent) in [e[1] for e in events if e[0] == "fsync"], \
            f"{made.parent} (holding the new directory {made.name}) was not synced: {events}"


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    h = store.create_run(store.get_or_create_experiment("durable"))
    files = {"model.bin": os.urandom(200_000), "conf/a.yaml": b"a: 1\n", "conf/deep/b.yaml": b"b: 2\n"}
    for path, data in files.items():
        h.log_bytes(path, data)
    h.end()
    return root, h.run_id, files


def test_download_artifacts_syncs_each_file_and_its_directories(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path, syscalls: list[Event]) -> None:
    from casstore.tracking.client import MlflowClient

    root, run_id, files = logged
    dst = tmp_path / "out"
    local = MlflowClient(str(root)).download_artifacts(run_id, "", str(dst))
    for path, data in files.items():
        assert (Path(local) / path).read_bytes() == data
        _assert_durable(syscalls, Path(local) / path)
    _assert_durable(syscalls, dst / "conf/deep/b.yaml", made=dst / "conf/deep")
    _assert_durable(syscalls, dst / "conf/a.yaml", made=dst / "conf")


@pytest.mark.parametrize("durable", [True, False])
def test_a_large_download_starts_its_write_back_as_it_is_written_and_is_synced_before_its_rename(
        tmp_path: Path, syscalls: list[Event], monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    """The write-back of each step of a large file is started as soon as it is written (the
    disk works while the rest is read and verified), in order and covering the file; the
    ``fsync`` before the rename still comes after the last. Unsynced, none is started."""
    from casstore import _files
    from casstore.tracking.client import MlflowClient

    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    h = store.create_run(store.get_or_create_experiment("durable"))
    data = os.urandom(3 << 20)  # a few chunks of about 1 MiB
    h.log_bytes("big.bin", data)
    h.end()
    monkeypatch.setattr(_files, "WRITEBACK_STEP", 256 << 10)
    started: list[tuple[str, int, int]] = []
    real = _files.start_writeback

    def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        assert os.path.getsize(path) >= offset + nbytes, "write-back asked for bytes not written yet"
        started.append((path, offset, nbytes))
        syscalls.append(("writeback", path, f"{offset}+{nbytes}"))
        real(fd, offset, nbytes)

    monkeypatch.setattr(_files, "start_writeback", start_writeback)
    if not durable:
        monkeypatch.setenv("CASSTORE_DURABLE", "0")
    local = MlflowClient(str(root)).download_artifacts(run_id=h.run_id, path="", dst_path=str(tmp_path / "out"))
    assert (Path(local) / "big.bin").read_bytes() == data
    if not durable:
        assert started == []
        return
    _assert_durable(syscalls, Path(local) / "big.bin")
    assert len({path for path, _, _ in started}) == 1 and len(started) >= 2
    assert [offset for _, offset, _ in started] == list(itertools.accumulate([n for _, _, n in started[:-1]], initial=0))
    assert all(n >= 256 << 10 for _, _, n in started)
    tail = len(data) - sum(n for _, _, n in started)
    assert 0 <= tail < (256 << 10), "the write-back was not started for all but the last step of the file"
    sync = syscalls.index(("fsync", started[0][0], ""))
    assert max(i for i, e in enumerate(syscalls) if e[0] == "writeback") < sync


def test_a_download_of_many_files_by_several_threads_syncs_each_directory_after_its_files(
        tmp_path: Path, syscalls: list[Event]) -> None:
    from casstore.tracking.client import MlflowClient

    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    h = store.create_run(store.get_or_create_experiment("many"))
    files = {f"{d}/f{i:02d}.txt": os.urandom(100 + i) for d in ("a", "b/c") for i in range(10)}
    h.log_files([(p, _write(tmp_path / "src" / p, data)) for p, data in files.items()])
    h.end()
    syscalls.clear()
    dst = Path(MlflowClient(str(root)).download_artifacts(h.run_id, "", str(tmp_path / "out")))
    for p, data in files.items():
        assert (dst / p).read_bytes() == data
        _assert_durable(syscalls, dst / p)
    dir_syncs = [e[1] for e in syscalls if e[0] == "fsync" and os.path.isdir(e[1])]
    assert dir_syncs.count(str(dst / "a")) == 1  # once for its ten files, after the last of them


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_casstore_get_syncs_the_file_and_its_directory(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path, syscalls: list[Event],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from casstore.cli import cli

    root, run_id, files = logged
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["--store", str(root), "get", run_id, "model.bin", "-o", "new/model.bin"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new/model.bin").read_bytes() == files["model.bin"]
    _assert_durable(syscalls, tmp_path / "new/model.bin", made=tmp_path / "new")
    r = CliRunner().invoke(cli, ["--store", str(root), "get", run_id, "conf", "-o", "confs"])
    assert r.exit_code == 0, r.output
    _assert_durable(syscalls, tmp_path / "confs/deep/b.yaml", made=tmp_path / "confs")


def test_a_model_loaded_into_dst_path_is_synced(tmp_path: Path, syscalls: list[Event]) -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    import casstore
    import casstore.sklearn

    assert sklearn
    casstore.set_tracking_uri(str(tmp_path / "store"))
    with casstore.start_run():
        info = casstore.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="m")
    syscalls.clear()
    dst = tmp_path / "loaded"
    casstore.sklearn.load_model(info.model_uri, dst_path=str(dst))
    written = [Path(e[2]) for e in syscalls if e[0] == "rename" and e[2].startswith(str(dst))]
    assert written, syscalls
    for f in written:
        _assert_durable(syscalls, f)
    # and a local model directory copied into dst_path
    syscalls.clear()
    casstore.sklearn.save_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), str(tmp_path / "saved"))
    casstore.sklearn.load_model(str(tmp_path / "saved"), dst_path=str(tmp_path / "copied"))
    written = [Path(e[2]) for e in syscalls if e[0] == "rename" and e[2].startswith(str(tmp_path / "copied"))]
    assert len(written) >= 2, syscalls
    for f in written:
        _assert_durable(syscalls, f)


def test_predictions_written_to_a_file_are_synced(tmp_path: Path, syscalls: list[Event]) -> None:
    from casstore.serving.batch import write_predictions

    out = tmp_path / "preds.json"
    out.write_bytes(b"the previous predictions")
    write_predictions(b'{"predictions": [1]}', str(out))
    assert out.read_bytes() == b'{"predictions": [1]}\n'
    _assert_durable(syscalls, out)


def test_a_failed_sync_reports_the_file_and_leaves_the_old_one(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``fsync`` that fails (EIO: the disk lost the data) is an error naming the file,
    the destination keeps what it held, and no temp file is left."""
    from casstore.tracking.client import MlflowClient

    root, run_id, _ = logged
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "model.bin").write_bytes(b"old")

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    monkeypatch.delenv("CASSTORE_DURABLE", raising=False)
    with pytest.raises(LocalFileError, match=r"model\.bin.*Input/output error"):
        MlflowClient(str(root)).download_artifacts(run_id, "model.bin", str(dst))
    assert (dst / "model.bin").read_bytes() == b"old"
    assert sorted(p.name for p in dst.iterdir()) == ["model.bin"]


def test_a_download_onto_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path: Path) -> None:
    """A real 8 MiB file system (a tmpfs) too small for the artifact: `casstore get --force`
    fails with an error naming the file and the lack of space, the file it would have
    replaced keeps its content, and no temp file is left to fill the disk."""
    import subprocess
    import sys
    import uuid

    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the failing-fsync test covers the logic")
    try:
        root = tmp_path / "store"
        store = RunStore(open_store(str(root), create=True))
        h = store.create_run(store.get_or_create_experiment("full"))
        h.log_bytes("big.bin", os.urandom(12 << 20))
        h.end()
        (mnt / "big.bin").write_bytes(b"the previous file")
        r = subprocess.run([sys.executable, "-m", "casstore.cli", "--store", str(root), "get", h.run_id, "big.bin",
                            "-o", str(mnt / "big.bin"), "--force"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert str(mnt / "big.bin") in r.stderr and "No space left on device" in r.stderr
        assert (mnt / "big.bin").read_bytes() == b"the previous file"
        assert sorted(p.name for p in mnt.iterdir()) == ["big.bin"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_saved_model_directory_is_synced(tmp_path: Path, syscalls: list[Event]) -> None:
    """`save_model` writes its directory in place: every file and directory in it, and the
    directory that holds its name, is synced before it returns."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    import casstore.sklearn

    target = tmp_path / "models" / "saved"
    (tmp_path / "models").mkdir()
    casstore.sklearn.save_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), str(target))
    synced = {e[1] for e in syscalls if e[0] == "fsync"}
    files = [p for p in target.rglob("*")]
    assert len(files) >= 3
    for p in [*files, target, target.parent]:
        assert str(p) in synced, f"{p} was not synced: {sorted(synced)}"


def test_many_synced_files_are_written_by_more_threads_than_unsynced_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads writing synced files mostly wait for their ``fsync``: a synced download of
    many files gets at least ``SYNCING_WORKERS`` of them; an unsynced one (or a private
    directory's) the store's I/O workers; a few files, one."""
    from casstore._files import SYNCING_WORKERS, writer_count

    monkeypatch.delenv("CASSTORE_DURABLE", raising=False)
    assert writer_count(8, 4) == 1
    assert writer_count(9, 4) == SYNCING_WORKERS > 4
    assert writer_count(9, 32) == 32
    assert writer_count(9, 4, durable=False) == 4
    monkeypatch.setenv("CASSTORE_DURABLE", "0")
    assert writer_count(2000, 4) == 4
