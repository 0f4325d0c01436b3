"""`casstore get` never replaces a user's file without being asked.

Its default destination is the artifact's name in the current directory, where a file of
that name is often the user's own newer work (`model.pkl`, `config.yaml`). A file that
exists with other content is refused, for a file and for a directory download alike, and
nothing at all is written then; `--force` replaces. A file that already holds the
artifact's content is left as it is, so getting the same thing twice succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from casstore.objects import open_store
from casstore.runs import RunStore


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    h = store.create_run(store.get_or_create_experiment("get"))
    files = {"model.pkl": os.urandom(300_000), "conf/a.yaml": b"a: 1\n", "conf/b.yaml": b"b: 2\n"}
    for path, data in files.items():
        h.log_bytes(path, data)
    h.end()
    return root, h.run_id, files


def _get(root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casstore.cli", "--store", str(root), "get", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_an_existing_file_with_other_content_is_refused_then_replaced_with_force(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path) -> None:
    root, run_id, files = logged
    work = tmp_path / "work"
    work.mkdir()
    mine = work / "model.pkl"
    mine.write_bytes(b"my newer model, not in any store")
    r = _get(root, work, run_id, "model.pkl")  # the default destination: ./model.pkl
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert str(mine) in r.stderr and "--force" in r.stderr and "nothing was written" in r.stderr
    assert mine.read_bytes() == b"my newer model, not in any store"
    assert [p.name for p in work.iterdir()] == ["model.pkl"]  # no temp file left either
    r = _get(root, work, run_id, "model.pkl", "--force")
    assert r.returncode == 0, r.stderr
    assert mine.read_bytes() == files["model.pkl"]


def test_a_directory_download_writes_nothing_when_one_file_is_in_the_way(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path) -> None:
    root, run_id, files = logged
    dest = tmp_path / "out"
    (dest / "conf").mkdir(parents=True)
    (dest / "conf" / "b.yaml").write_bytes(b"b: edited by hand\n")
    r = _get(root, tmp_path, run_id, "-o", str(dest))
    assert r.returncode == 1 and str(dest / "conf" / "b.yaml") in r.stderr
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["conf", "conf/b.yaml"]
    assert (dest / "conf" / "b.yaml").read_bytes() == b"b: edited by hand\n"


def test_getting_the_same_artifacts_again_succeeds_and_leaves_them_as_they_are(
        logged: tuple[Path, str, dict[str, bytes]], tmp_path: Path) -> None:
    root, run_id, files = logged
    dest = tmp_path / "out"
    assert _get(root, tmp_path, run_id, "-o", str(dest)).returncode == 0
    before = {p: p.stat().st_ino for p in dest.rglob("*") if p.is_file()}
    r = _get(root, tmp_path, run_id, "-o", str(dest))
    assert r.returncode == 0, r.stderr
    assert {p: p.stat().st_ino for p in dest.rglob("*") if p.is_file()} == before
    assert {str(p.relative_to(dest)): p.read_bytes() for p in before} == files
