"""Artifacts whose names differ only in letter case or Unicode normalization, downloaded
onto a file system that takes them as one name (macOS's default volumes, Windows; here a
FUSE mount that folds names, tests/casefold_fs.py).

A run may hold `Model.pkl` and `model.pkl`, or `café.txt` written in NFC and in NFD (one
logged on Linux, one on a Mac). Written one after the other onto such a file system, the
second replaces the first, and the download reported both. casstore writes the first,
finds that the second's name now leads to it, and stops with an error naming both
artifacts and what to do, the first file kept whole; on a file system that keeps them
apart (Linux), both are written as before.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from casefold_fs import mounted
from click.testing import CliRunner

from casstore.cli import cli
from casstore.exceptions import LocalFileError
from casstore.objects import open_store
from casstore.runs import RunStore

NFC = unicodedata.normalize("NFC", "café.txt")
NFD = unicodedata.normalize("NFD", "café.txt")


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "store"
    store = RunStore(open_store(str(root), create=True))
    h = store.create_run(store.get_or_create_experiment("names"))
    for path, data in {"Model.pkl": b"upper", "model.pkl": b"lower", f"notes/{NFC}": b"nfc", f"notes/{NFD}": b"nfd",
                       "other.txt": b"other"}.items():
        h.log_bytes(path, data)
    h.end()
    return root, h.run_id


def test_download_onto_a_folding_file_system_refuses_the_second_name(run: tuple[Path, str], tmp_path: Path) -> None:
    from casstore.tracking.client import MlflowClient

    root, run_id = run
    with mounted(tmp_path) as mnt:
        dst = mnt / "out"
        with pytest.raises(LocalFileError) as e:
            MlflowClient(str(root)).download_artifacts(run_id, "", str(dst))
        msg = str(e.value)
        assert "'Model.pkl'" in msg and "'model.pkl'" in msg and "letter case or Unicode normalization" in msg
        assert "separately" in msg
        # the first of each pair is whole; nothing replaced it
        assert (dst / "Model.pkl").read_bytes() == b"upper"
        assert (dst / "other.txt").read_bytes() == b"other"


def test_casstore_get_onto_a_folding_file_system_says_which_artifacts_collide(
        run: tuple[Path, str], tmp_path: Path) -> None:
    root, run_id = run
    with mounted(tmp_path) as mnt:
        r = CliRunner().invoke(cli, ["--store", str(root), "get", run_id, "notes", "-o", str(mnt / "notes")])
        assert r.exit_code == 1, r.output
        assert f"notes/{NFC}" in r.output and f"notes/{NFD}" in r.output and "Traceback" not in r.output
        first, second = sorted([NFC, NFD])  # written in the order of the artifact paths
        content = {NFC: b"nfc", NFD: b"nfd"}
        assert [p.name for p in (mnt / "notes").iterdir()] == [first]
        assert (mnt / "notes" / first).read_bytes() == content[first]
        # asked again, with --force: the file that holds the first is not taken for the second's
        r = CliRunner().invoke(cli, ["--store", str(root), "get", run_id, "notes", "-o", str(mnt / "notes"), "--force"])
        assert r.exit_code == 1 and f"notes/{second}" in r.output, r.output
        assert (mnt / "notes" / first).read_bytes() == content[first]
        # the other one downloaded on its own, to a name of its own, works
        r = CliRunner().invoke(cli, ["--store", str(root), "get", run_id, f"notes/{second}", "-o", str(mnt / "2.txt")])
        assert r.exit_code == 0, r.output
        assert (mnt / "2.txt").read_bytes() == content[second]


def test_a_file_system_that_keeps_the_names_apart_gets_every_file(run: tuple[Path, str], tmp_path: Path) -> None:
    from casstore.tracking.client import MlflowClient

    root, run_id = run
    dst = Path(MlflowClient(str(root)).download_artifacts(run_id, "", str(tmp_path / "plain")))
    assert (dst / "Model.pkl").read_bytes() == b"upper" and (dst / "model.pkl").read_bytes() == b"lower"
    assert (dst / "notes" / NFC).read_bytes() == b"nfc" and (dst / "notes" / NFD).read_bytes() == b"nfd"
    assert len(os.listdir(dst / "notes")) == 2
