"""A file whose name is not UTF-8 (bytes written by a system using another encoding, which
Linux keeps as they are) in a logged directory: a clear error naming it, before anything
is stored or bound, never a raw UnicodeEncodeError from deep inside the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from casstore.tracking.client import Client
from casstore.exceptions import UnsafePathError
from casstore.runs import open_run_store


def _dir_with_a_latin1_name(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    with open(os.fsencode(src) + b"/caf\xe9.txt", "wb") as f:  # 'café.txt' in Latin-1
        f.write(b"results")
    return src


def test_logging_a_directory_holding_a_name_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    src = _dir_with_a_latin1_name(tmp_path)
    store = open_run_store(tmp_path / "s")
    run = store.create_run("0")
    with pytest.raises(UnsafePathError, match=r"caf.*not valid UTF-8.*b'd/caf\\xe9\.txt'.*rename the file"):
        Client(str(tmp_path / "s")).log_artifacts(run.run_id, str(src), "d")
    assert store.get_run(run.run_id).artifacts == {}  # nothing bound: the call is refused whole
    (src / os.fsdecode(b"caf\xe9.txt")).rename(src / "café.txt")  # renamed as the error says: logged
    Client(str(tmp_path / "s")).log_artifacts(run.run_id, str(src), "d")
    assert sorted(store.get_run(run.run_id).artifacts) == ["d/café.txt", "d/ok.txt"]


def test_the_log_command_refuses_it_in_one_line_and_makes_no_run(tmp_path: Path) -> None:
    src = _dir_with_a_latin1_name(tmp_path)
    cli = [sys.executable, "-m", "casstore.cli", "--store", str(tmp_path / "s")]
    out = subprocess.run([*cli, "log", str(src)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("casstore: error: artifact path") and "not valid UTF-8" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "s").exists()  # refused before the store, or a run, was made for it
