"""Artifacts whose file names are as long as the file system allows (255 bytes) download:
the temp file each download writes first has a name of its own that must fit too. A name
past the limit is refused naming the file and saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from casstore.runs import open_run_store
from casstore.tracking.client import Client

LONGEST = "é" * 125 + "x.txt"  # 255 bytes in UTF-8: a name ext4, xfs and tmpfs take
TOO_LONG = "é" * 128  # 256 bytes


def test_a_file_named_at_the_file_systems_limit_downloads(tmp_path: Path) -> None:
    assert len(LONGEST.encode()) == 255
    store = open_run_store(tmp_path / "s")
    run = store.create_run("0")
    run.log_bytes(f"d/{LONGEST}", b"small")  # held in its record
    run.log_bytes(f"d/{LONGEST[:-5]}.bin", os.urandom(300_000))  # a stored file
    run.log_bytes("d/short.txt", b"short")
    run.end()
    client = Client(str(tmp_path / "s"))
    out = Path(client.download_artifacts(run.run_id, "d", str(tmp_path / "out")))
    assert (out / LONGEST).read_bytes() == b"small"
    assert (out / f"{LONGEST[:-5]}.bin").stat().st_size == 300_000
    assert sorted(p.name for p in out.iterdir()) == sorted([LONGEST, f"{LONGEST[:-5]}.bin", "short.txt"])  # no temp file left
    cli = [sys.executable, "-m", "casstore.cli", "--store", str(tmp_path / "s")]
    got = subprocess.run([*cli, "get", run.run_id, "-o", str(tmp_path / "out2")], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out2" / "d" / LONGEST).read_bytes() == b"small"


def test_a_name_past_the_limit_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    store = open_run_store(tmp_path / "s")
    run = store.create_run("0")
    run.log_bytes(f"d/{TOO_LONG}", b"x")
    run.end()
    cli = [sys.executable, "-m", "casstore.cli", "--store", str(tmp_path / "s")]
    got = subprocess.run([*cli, "get", run.run_id, "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert got.returncode == 1 and "File name too long" in got.stderr and "to a shorter name" in got.stderr
    alone = subprocess.run([*cli, "get", run.run_id, f"d/{TOO_LONG}", "-o", str(tmp_path / "short.bin")],
                           capture_output=True, text=True)
    assert alone.returncode == 0 and (tmp_path / "short.bin").read_bytes() == b"x"
